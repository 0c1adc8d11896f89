"""The merchant-presented QR sale in the engine's tables, on virtual time (pos/core/sale.py).

The pay of a QR sale asks for a code (SendPay.qr, no customer code); its "in process" answer carries
the code: the slip is printed (ShowQr), the customer is told to scan it, and the sale waits on the
queries and the notification with the code sale's deadline and cancel rules. A pay answered without
a code gave the customer nothing to scan: whatever it created is cancelled at once.
"""

from __future__ import annotations

from dataclasses import replace

from pos.core.engine import Finished, Notified, Record, SendCancel, SendPay, SendQuery, Show, ShowQr, StartSale
from pos.core.outcomes import Cause, Failed, QueryOutcome, Succeeded, Unknown
from pos.core.records import QR_SALE_MARK, SaleState
from pos.core.sale import SALE_TRANSITIONS
from tests.engine_harness import T0, Harness, sale_record

URL = "http://127.0.0.1:8080/sandbox/cashier/2027011511121280010016000000000007"
IN_PROCESS = Unknown("gateway answered U", "PAYMENT_IN_PROCESS", cause=Cause.CUSTOMER_CONFIRMING,
                     gateway_id="2027011511121280010016000000000007", qr=URL)
PAID_Q = Succeeded(query=QueryOutcome.PAID, gateway_id="2027011511121280010016000000000007")
PENDING_Q = Succeeded(query=QueryOutcome.PENDING)
CLOSED_Q = Succeeded(query=QueryOutcome.CLOSED, code="SUCCESS")   # the query itself succeeded


def start_qr(h: Harness) -> list:
    record = replace(sale_record(1, now=h.now), code_masked=QR_SALE_MARK)
    return h.feed(StartSale(record, "", h.now))


def waiting(h: Harness) -> list:
    start_qr(h)
    out = h.answer(IN_PROCESS, after=0.3)
    assert h.state() is SaleState.QUERYING
    return out


def test_the_qr_pay_asks_for_a_code_and_carries_no_customer_code() -> None:
    h = Harness()
    out = start_qr(h)
    assert isinstance(out[0], Record) and out[0].sales[0].state is SaleState.PAYING   # committed first
    pay = h.of(SendPay, out)[0]
    assert pay.qr and pay.identity_code == ""
    assert out[0].sales[0].is_qr and out[0].sales[0].code_last4 == ""


def test_the_code_prints_the_slip_and_tells_the_customer_to_scan() -> None:
    h = Harness(query_first_delay=2.0)
    out = waiting(h)
    assert h.of(ShowQr, out) == [ShowQr(1, URL, h.records[1].amount, h.records[1].merchant_trans_id)]
    assert [s.key for s in h.of(Show, out)] == ["scan_qr"]
    assert h.records[1].result_code == "PAYMENT_IN_PROCESS"
    assert h.records[1].acquirement_id == "2027011511121280010016000000000007"
    assert h.of(SendQuery, out) == [] and h.engine.next_wakeup() == h.now + 2.0   # the code sale's schedule


def test_a_code_sale_in_process_is_not_a_qr_sale() -> None:
    # The same answer to a customer-presented pay is the usual "checking": no slip.
    h = Harness()
    h.start()
    out = h.answer(replace(IN_PROCESS, qr=""))
    assert h.state() is SaleState.QUERYING and h.of(ShowQr, out) == []
    assert [s.key for s in h.of(Show, out)] == ["confirm_in_app"]


def test_the_query_that_finds_it_paid_ends_paid() -> None:
    h = Harness()
    waiting(h)
    h.advance()
    h.answer(PENDING_Q)
    assert h.state() is SaleState.QUERYING
    h.advance()
    out = h.answer(PAID_Q)
    assert h.state() is SaleState.PAID and h.of(Finished, out) == [Finished("sale", 1, "PAID")]


def test_the_notification_settles_it_before_any_query() -> None:
    h = Harness(query_first_delay=30.0)
    waiting(h)
    h.now += 4.0
    out = h.feed(Notified(1, PAID_Q, h.now))
    assert isinstance(out[0], Record) and h.state() is SaleState.PAID
    assert h.sent(SendQuery) == []


def test_the_customer_cancelling_in_the_wallet_is_declined() -> None:
    h = Harness()
    waiting(h)
    h.advance()
    h.answer(CLOSED_Q)
    assert h.state() is SaleState.DECLINED and h.sent(SendCancel) == []


def test_a_query_that_names_why_it_closed_shows_the_cause() -> None:
    # inquiryPayment FAIL with paymentResultCode ORDER_IS_CLOSED (the order code expired): the
    # code is the sale's result, and the QR sale's own text says the QR code expired.
    h = Harness()
    waiting(h)
    h.advance()
    expired = replace(CLOSED_Q, result_code="ORDER_IS_CLOSED", result_message="the order code expired")
    out = h.answer(expired)
    assert h.state() is SaleState.DECLINED
    assert (h.records[1].result_code, h.records[1].result_message) == ("ORDER_IS_CLOSED", "the order code expired")
    shown = h.of(Show, out)
    assert [s.key for s in shown] == ["qr.code.ORDER_IS_CLOSED"] and shown[0].params["code"] == "ORDER_IS_CLOSED"
    assert h.of(Finished, out) == [Finished("sale", 1, "DECLINED")]


def test_a_code_sale_closed_by_a_query_shows_the_code_s_general_text() -> None:
    h = Harness()
    h.start()
    h.answer(Unknown("gateway answered U", "USER_PAYING"))
    h.advance()
    out = h.answer(replace(CLOSED_Q, result_code="RISK_REJECT"))
    assert h.state() is SaleState.DECLINED and h.records[1].result_code == "RISK_REJECT"
    assert [s.key for s in h.of(Show, out)] == ["code.RISK_REJECT"]


def test_a_query_closed_without_a_code_stays_the_generic_decline() -> None:
    # The query's own SUCCESS must never be shown as the sale's cause ("Done").
    h = Harness()
    waiting(h)
    h.advance()
    out = h.answer(CLOSED_Q)
    assert [s.key for s in h.of(Show, out)] == ["declined"] and h.records[1].result_code == "SUCCESS"


def test_nobody_scans_until_the_deadline_then_it_is_cancelled() -> None:
    h = Harness(query_first_delay=2.0, query_interval_min=5.0, query_interval_max=7.0, query_deadline=30.0)
    waiting(h)
    since = h.records[1].querying_since
    assert since is not None
    while h.state() is SaleState.QUERYING:
        h.advance()
        if h.inflight and isinstance(h.inflight[0], SendQuery):
            h.answer(PENDING_Q)
    # The last query on (or just past) the deadline, as for a code sale; then the cancel leaves.
    assert h.state() is SaleState.CANCELLING and since + 30.0 <= h.now < since + 37.0
    assert isinstance(h.inflight[0], SendCancel)
    h.answer(Succeeded(gateway_id="x"))
    assert h.state() is SaleState.CANCELLED


def test_the_cashier_cancel_key_cancels_the_open_code() -> None:
    h = Harness(query_first_delay=5.0)
    waiting(h)
    out = h.abort()
    assert h.state() is SaleState.CANCELLING and h.of(SendCancel, out)
    h.answer(Succeeded())
    assert h.state() is SaleState.CANCELLED


def test_a_pay_without_a_code_is_cancelled_at_once() -> None:
    for answer in (Unknown("timeout", no_answer=True), Unknown("gateway answered U", "UNKNOWN_EXCEPTION")):
        h = Harness()
        start_qr(h)
        out = h.answer(answer)
        assert h.state() is SaleState.CANCELLING and h.of(ShowQr, out) == []
        assert h.of(SendCancel, out), "the cancel leaves at once"
        h.answer(Succeeded())
        assert h.state() is SaleState.CANCELLED


def test_a_declined_qr_pay_is_declined_and_a_timed_out_code_pay_still_queries() -> None:
    h = Harness()
    start_qr(h)
    h.answer(Failed("CURRENCY_NOT_SUPPORT", "no"))
    assert h.state() is SaleState.DECLINED
    code_sale = Harness()
    code_sale.start()
    code_sale.answer(Unknown("timeout", no_answer=True))
    assert code_sale.state() is SaleState.QUERYING   # the QR rule is the QR sale's only


def test_the_qr_rows_are_in_the_table() -> None:
    rows = [r for r in SALE_TRANSITIONS if r["trigger"] == "pay_unknown"]
    assert [r["dest"] for r in rows] == [SaleState.CANCELLING.value, SaleState.QUERYING.value]
    assert T0 > 0


def test_after_a_restart_a_qr_pay_without_a_recorded_answer_is_cancelled() -> None:
    # Its answer (and so its code) was never recorded: no slip was printed, nobody can have paid.
    h = Harness()
    rec = replace(sale_record(1, now=h.now), code_masked=QR_SALE_MARK, state=SaleState.PAYING, pay_sent_at=h.now)
    out = h.recover([rec])
    assert h.state() is SaleState.CANCELLING and h.of(SendCancel, out)
    # A QR sale that was already waiting for the customer keeps waiting (queries, notification).
    h2 = Harness()
    waiting_rec = replace(rec, state=SaleState.QUERYING, querying_since=h2.now)
    h2.recover([waiting_rec])
    assert h2.state() is SaleState.QUERYING and h2.engine.next_wakeup() is not None
