"""Every transition of the sale and refund machines, on virtual time (pos/core/sale.py, pos/core/refund.py)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pos.config import PaymentSection
from pos.core.engine import (
    REFUND_TRANSITIONS,
    SALE_TRANSITIONS,
    Alarm,
    Engine,
    Finished,
    PrintReceipt,
    Record,
    SendCancel,
    SendPay,
    SendQuery,
    SendRefund,
    SendReverse,
    Show,
)
from pos.core.money import Money
from pos.core.outcomes import Cause, Failed, QueryOutcome, Succeeded, Unknown
from pos.core.records import RefundState, SaleState
from pos.core.rules import check_refund
from tests.engine_harness import CODE, T0, Harness, refund_record, sale_record

ACQ = "2027011511121280010016000000000001"
# Query answers as the gateway protocol hands them over: with its reading in `query`.
PAID_Q = Succeeded(query=QueryOutcome.PAID, gateway_id=ACQ)
PENDING_Q = Succeeded(query=QueryOutcome.PENDING)
CLOSED_Q = Succeeded(query=QueryOutcome.CLOSED)
NOT_FOUND = Failed("ORDER_NOT_EXIST", query=QueryOutcome.NOT_FOUND)
U = Unknown("timeout")


def querying(h: Harness) -> None:
    h.start()
    h.answer(U, after=0.5)
    assert h.state() is SaleState.QUERYING


def test_pay_success_records_before_sending_and_prints() -> None:
    h = Harness()
    out = h.start()
    assert isinstance(out[0], Record) and out[0].sales[0].state is SaleState.PAYING
    pay = h.of(SendPay, out)[0]
    assert pay.identity_code == CODE and CODE not in repr(pay) and CODE not in repr(out[0])
    assert out[0].sales[0].pay_sent_at == T0
    out = h.answer(Succeeded(gateway_id=ACQ))
    assert h.state() is SaleState.PAID and h.records[1].acquirement_id == ACQ
    assert [c.key for c in h.of(Show, out)] == ["paid"]
    assert h.of(PrintReceipt, out) == [PrintReceipt(1)]
    assert h.of(Finished, out) == [Finished("sale", 1, "PAID")]
    assert h.engine.next_wakeup() is None and h.engine.active_sale() is None


def test_pay_failed_is_declined_with_the_code_message() -> None:
    h = Harness()
    h.start()
    out = h.answer(Failed("USER_BALANCE_NOT_ENOUGH", "no money"))
    assert h.state() is SaleState.DECLINED
    show = h.of(Show, out)[0]
    assert show.key == "code.USER_BALANCE_NOT_ENOUGH" and show.params["fallback"] == "declined"
    assert h.sent(SendQuery) == [] and h.sent(SendCancel) == []


@pytest.mark.parametrize("result", [Unknown("timeout"), Unknown("gateway answered U", "SYSTEM_ERROR"),
                                    Unknown("answer signature did not verify")])
def test_pay_unknown_queries_after_the_first_delay(result: Unknown) -> None:
    # A system error or a timeout: the neutral "checking" (issue 17: it said "confirm in your app")
    h = Harness(query_first_delay=2.0)
    h.start()
    out = h.answer(result)
    assert h.state() is SaleState.QUERYING and [c.key for c in h.of(Show, out)] == ["checking"]
    assert h.of(SendQuery, out) == []           # not at once
    assert h.engine.next_wakeup() == T0 + 2.0
    out = h.advance()
    assert len(h.of(SendQuery, out)) == 1 and h.now == T0 + 2.0


def test_query_paid_is_paid() -> None:
    h = Harness()
    querying(h)
    h.advance()
    out = h.answer(PAID_Q)
    assert h.state() is SaleState.PAID and h.records[1].acquirement_id == ACQ
    assert h.of(PrintReceipt, out)


def test_query_closed_is_declined() -> None:
    h = Harness()
    querying(h)
    h.advance()
    h.answer(CLOSED_Q)
    assert h.state() is SaleState.DECLINED


def test_query_schedule_until_the_deadline_then_cancel() -> None:
    h = Harness(query_first_delay=2.0, query_interval_min=5.0, query_interval_max=7.0, query_deadline=60.0)
    querying(h)
    since = h.records[1].querying_since
    times = []
    while h.state() is SaleState.QUERYING:
        h.advance()
        if h.inflight and isinstance(h.inflight[0], SendQuery):
            times.append(h.now)
            h.answer(PENDING_Q)
    gaps = [b - a for a, b in pairwise(times)]
    assert times[0] == since + 2.0
    assert all(5.0 <= g <= 7.0 for g in gaps[:-1])            # seed 003: 5-7 s apart
    # The last one on the deadline, or (issue 17) never closer than 5 s to the one before:
    # then just past it.
    assert 5.0 <= gaps[-1] <= 7.0 and since + 60.0 <= times[-1] < since + 65.0
    assert h.state() is SaleState.CANCELLING and isinstance(h.inflight[0], SendCancel)


def test_query_unknown_answers_keep_polling() -> None:
    h = Harness()
    querying(h)
    for result in (Unknown("timeout"), Failed("SYSTEM_ERROR", query=QueryOutcome.UNKNOWN), Unknown("bad signature")):
        h.advance()
        h.answer(result)
        assert h.state() is SaleState.QUERYING
    h.advance()
    h.answer(PAID_Q)
    assert h.state() is SaleState.PAID


def test_not_found_twice_more_then_cancel() -> None:
    h = Harness(not_found_retries=2)
    querying(h)
    for _ in range(3):
        h.advance()
        h.answer(NOT_FOUND)
    assert len(h.sent(SendQuery)) == 3            # the first plus "another two times"
    assert h.state() is SaleState.CANCELLING


def test_not_found_then_found_resets_the_count() -> None:
    h = Harness(not_found_retries=2)
    querying(h)
    for result in (NOT_FOUND, NOT_FOUND, PENDING_Q, NOT_FOUND, NOT_FOUND):
        h.advance()
        h.answer(result)
    assert h.state() is SaleState.QUERYING
    h.advance()
    h.answer(PAID_Q)
    assert h.state() is SaleState.PAID


def cancelling(h: Harness) -> None:
    querying(h)
    h.abort()
    assert h.state() is SaleState.CANCELLING


def test_cancel_success_is_cancelled() -> None:
    h = Harness()
    cancelling(h)
    out = h.answer(Succeeded())
    assert h.state() is SaleState.CANCELLED and [c.key for c in h.of(Show, out)] == ["cancelled"]


def test_cancel_failed_is_manual_review_with_an_alarm() -> None:
    h = Harness()
    cancelling(h)
    out = h.answer(Failed("CANCEL_NOT_ALLOWED"))
    assert h.state() is SaleState.MANUAL_REVIEW
    assert [c.key for c in h.of(Show, out)] == ["manual_review"] and h.of(Alarm, out)
    assert h.of(Finished, out) == [Finished("sale", 1, "MANUAL_REVIEW")]
    assert h.engine.active_sale() is None       # the terminal takes the next customer


def test_cancel_unknown_retried_then_manual_review() -> None:
    h = Harness(cancel_retries=3, cancel_interval=5.0)
    cancelling(h)
    times = [h.now]
    h.answer(U)
    while h.state() is SaleState.CANCELLING:
        h.advance()
        times.append(h.now)
        h.answer(U)
    assert len(h.sent(SendCancel)) == 1 + 3      # seed 003: retry "another three to five times"
    assert [b - a for a, b in pairwise(times)] == [5.0, 5.0, 5.0]
    assert h.state() is SaleState.MANUAL_REVIEW


def test_cancel_unknown_then_success() -> None:
    h = Harness()
    cancelling(h)
    h.answer(U)
    h.advance()
    h.answer(Succeeded())
    assert h.state() is SaleState.CANCELLED


def test_abort_while_a_query_is_out_waits_for_it_and_ignores_it() -> None:
    h = Harness()
    querying(h)
    h.advance()                         # the query is out
    h.abort()
    assert h.state() is SaleState.CANCELLING and h.sent(SendCancel) == []
    out = h.answer(PAID_Q)              # the abort stands: the cancel decides
    assert h.state() is SaleState.CANCELLING and len(h.of(SendCancel, out)) == 1


def test_abort_while_the_pay_is_out_cancels_after_it() -> None:
    h = Harness()
    h.start()
    h.abort()
    assert h.state() is SaleState.CANCELLING and h.sent(SendCancel) == []
    out = h.answer(Succeeded(gateway_id=ACQ))
    assert h.state() is SaleState.CANCELLING and h.records[1].acquirement_id == ACQ
    assert len(h.of(SendCancel, out)) == 1
    h.answer(Succeeded())
    assert h.state() is SaleState.CANCELLED


def test_abort_after_the_end_does_nothing() -> None:
    h = Harness()
    h.start()
    h.answer(Succeeded())
    assert h.abort() == []


def test_admit_refuses_a_second_sale_and_an_old_scan() -> None:
    h = Harness(scan_max_age=30.0)
    assert h.engine.admit_sale(scanned_at=T0 - 30.0, now=T0) is None
    old = h.engine.admit_sale(scanned_at=T0 - 31.0, now=T0)
    assert old is not None and old.reason == "scan_too_old" and "scanned 31 s ago" in old.message
    h.start()
    busy = h.engine.admit_sale(scanned_at=T0, now=T0)
    assert busy is not None and busy.reason == "busy" and "is still open (PAYING)" in busy.message


def test_recovery_never_pays_again() -> None:
    h = Harness()
    sales = [sale_record(1, state=SaleState.CREATED), sale_record(2, state=SaleState.PAYING, pay_sent_at=T0),
             sale_record(3, state=SaleState.QUERYING, pay_sent_at=T0, querying_since=T0),
             sale_record(4, state=SaleState.CANCELLING, pay_sent_at=T0, cancel_attempts=2),
             sale_record(5, state=SaleState.MANUAL_REVIEW, pay_sent_at=T0)]
    h.now = T0 + 10
    out = h.recover(sales)
    assert h.state(1) is SaleState.CANCELLED    # pay never left: closed without a request
    assert h.state(2) is SaleState.QUERYING
    # sale 2's pay left long before the restart: queried at once (first_query_after has passed)
    assert {c.sale_id for c in h.of(SendQuery, out)} == {2, 3, 5}
    assert [c.sale_id for c in h.of(SendCancel, out)] == [4]
    h.advance()
    assert [c.sale_id for c in h.sent(SendQuery)].count(2) == 1
    assert h.sent(SendPay) == []


def test_recovered_query_past_the_deadline_queries_once_then_cancels() -> None:
    h = Harness(query_deadline=60.0)
    h.now = T0 + 3600
    h.recover([sale_record(1, state=SaleState.QUERYING, pay_sent_at=T0, querying_since=T0)])
    h.answer(PENDING_Q)
    assert h.state() is SaleState.CANCELLING


def manual_review(h: Harness) -> None:
    cancelling(h)
    h.answer(Failed("CANCEL_NOT_ALLOWED"))


@pytest.mark.parametrize("answer,state", [(PAID_Q, SaleState.PAID_LATE), (CLOSED_Q, SaleState.CANCELLED)])
def test_background_corrector_resolves_manual_review(answer: Succeeded, state: SaleState) -> None:
    h = Harness(background_interval=300.0, late_success="manager")
    manual_review(h)
    entered = h.now
    h.advance()
    assert h.now == entered + 300.0 and isinstance(h.inflight[0], SendQuery)
    h.answer(PENDING_Q)
    assert h.state() is SaleState.MANUAL_REVIEW
    h.advance()
    out = h.answer(answer)
    assert h.state() is state and h.records[1].resolved_by_corrector
    assert h.of(Alarm, out)


def test_a_sale_keeps_the_acquirement_id_an_unknown_answer_named() -> None:
    """Issue 17: a MANUAL_REVIEW sale kept no acquirementId although the U answers carried one."""
    h = Harness()
    h.start()
    h.answer(Unknown("gateway answered U", "USER_PAYING", cause=Cause.CUSTOMER_CONFIRMING, gateway_id=ACQ))
    h.abort()
    h.answer(Failed("CANCEL_NOT_ALLOWED"))
    assert h.state() is SaleState.MANUAL_REVIEW and h.records[1].acquirement_id == ACQ


def test_a_cancel_too_late_is_reversed_by_a_full_refund_committed_first() -> None:
    """Issue 17: CANCEL_EXPIRED, then the payment is found SUCCESS: the money goes back."""
    h = Harness(background_interval=300.0)
    cancelling(h)
    h.answer(Failed("CANCEL_EXPIRED", cause=Cause.TOO_LATE_TO_CANCEL))
    assert h.state() is SaleState.MANUAL_REVIEW
    h.advance()
    h.answer(PENDING_Q)        # keeps querying until the payment's fate is known
    assert h.state() is SaleState.MANUAL_REVIEW
    h.advance()
    out = h.answer(PAID_Q)
    assert h.state() is SaleState.REVERSING
    record, send = out[0], h.of(SendReverse, out)
    # Write before you send: the merchantRefundId is on record before the refund leaves.
    assert isinstance(record, Record) and record.sales[0].state is SaleState.REVERSING
    mrid = record.sales[0].reversal_id
    assert mrid == "POS01-20270115-TEST01-000001-V"
    assert send == [SendReverse(1, send[0].seq, h.now, PAID_Q.gateway_id, mrid, Money(1250, "USD"))]
    assert any("refunding it in full" in a.text for a in h.of(Alarm, out))
    assert h.of(Show, out)[0].key == "reversing"
    # U: the same merchantRefundId again; then S: REVERSED, with Alipay's refundId kept.
    h.answer(Unknown("timeout"))
    h.advance()
    assert h.sent(SendReverse)[-1].merchant_refund_id == mrid and len(h.sent(SendReverse)) == 2
    out = h.answer(Succeeded(refund_gateway_id="20270115RF01"))
    assert h.state() is SaleState.REVERSED and h.records[1].reversal_gateway_id == "20270115RF01"
    assert h.of(PrintReceipt, out) == [PrintReceipt(1)]
    assert [s.key for s in h.of(Show, out)] == ["reversed"]


def test_a_reversal_keeps_retrying_in_the_background_after_its_retries() -> None:
    h = Harness(background_interval=300.0, refund_retries=1, refund_interval=5.0)
    manual_review(h)
    h.advance()
    h.answer(PAID_Q)
    h.answer(Unknown("timeout"))
    h.advance()
    h.answer(Unknown("timeout"))   # the count is spent: the background corrector goes on
    assert h.state() is SaleState.REVERSING
    before = h.now
    h.advance()
    assert h.now == before + 300.0 and len(h.sent(SendReverse)) == 3
    assert len({c.merchant_refund_id for c in h.sent(SendReverse)}) == 1


def test_a_declined_reversal_leaves_the_sale_on_the_managers_list() -> None:
    """The customer is still charged and has no goods: PAID_LATE, not PAID."""
    h = Harness()
    manual_review(h)
    h.advance()
    h.answer(PAID_Q)
    out = h.answer(Failed("REFUND_NOT_ALLOWED"))
    assert h.state() is SaleState.PAID_LATE
    assert any("still charged" in a.text for a in h.of(Alarm, out))
    assert h.engine.next_wakeup() is None or not h.inflight
    # The manager asks again: a fresh merchantRefundId, never the declined one.
    out = h.resolve("refund")
    assert h.state() is SaleState.REVERSING
    ids = [c.merchant_refund_id for c in h.sent(SendReverse)]
    assert ids == ["POS01-20270115-TEST01-000001-V", "POS01-20270115-TEST01-000001-V2"]
    h.answer(Succeeded(refund_gateway_id="RF2"))
    assert h.state() is SaleState.REVERSED


def test_a_reversing_sale_resumes_its_refund_after_a_restart() -> None:
    h = Harness()
    h.recover([sale_record(1, state=SaleState.REVERSING, pay_sent_at=T0, acquirement_id="A1",
                           reversal_id="POS01-20270115-TEST01-000001-V", reversal_attempts=1)])
    assert [c.merchant_refund_id for c in h.sent(SendReverse)] == ["POS01-20270115-TEST01-000001-V"]
    assert h.sent(SendPay) == [] and h.sent(SendQuery) == []


def test_a_late_success_without_an_acquirement_id_is_left_to_the_manager() -> None:
    h = Harness()
    manual_review(h)
    h.advance()
    h.answer(Succeeded(query=QueryOutcome.PAID))
    assert h.state() is SaleState.PAID_LATE and h.sent(SendReverse) == []
    # Nothing to refund with: the refund action is refused, and changes nothing.
    refusal = h.engine.admit_resolve(1, "refund")
    assert refusal is not None and refusal.reason == "no_acquirement_id"
    assert h.resolve("refund") == [] and h.state() is SaleState.PAID_LATE


def test_alarm_once_when_an_item_stays_open() -> None:
    h = Harness(alarm_after=600.0, background_interval=300.0)
    manual_review(h)
    alarms = []
    while h.now < T0 + 1500:
        out = h.advance()
        alarms += h.of(Alarm, out)
        if h.inflight:
            h.answer(PENDING_Q)
    assert len(alarms) == 1 and "open for more than 600" in alarms[0].text
    assert h.records[1].alarmed


def test_refund_success_and_decline() -> None:
    h = Harness()
    out = h.start_refund(1)
    assert isinstance(out[0], Record) and out[0].refunds[0].state is RefundState.REFUNDING
    out = h.answer(Succeeded(refund_gateway_id="R1"))
    assert h.refunds[1].state is RefundState.REFUNDED and h.refunds[1].gateway_refund_id == "R1"
    assert h.of(PrintReceipt, out) == [PrintReceipt(1, 1)]
    h.start_refund(2)
    out = h.answer(Failed("REFUND_WINDOW_EXCEED"))
    assert h.refunds[2].state is RefundState.REFUND_DECLINED
    assert [c.key for c in h.of(Show, out)] == ["refund_declined"]


def test_refund_unknown_retries_same_id_then_pending_then_background() -> None:
    h = Harness(refund_retries=2, refund_interval=5.0, background_interval=300.0)
    h.start_refund(1)
    h.answer(U)
    while h.refunds[1].state is RefundState.REFUNDING:
        h.advance()
        h.answer(U)
    sends = h.sent(SendRefund)
    assert len(sends) == 3 and len({s.merchant_refund_id for s in sends}) == 1
    assert h.refunds[1].state is RefundState.REFUND_PENDING
    before = h.now
    h.advance()
    assert h.now == before + 300.0
    h.answer(U)
    assert h.refunds[1].state is RefundState.REFUND_PENDING
    h.advance()
    h.answer(Succeeded())
    assert h.refunds[1].state is RefundState.REFUNDED


def test_refund_recovery_resends_the_same_request() -> None:
    h = Harness()
    h.recover([], [refund_record(1, state=RefundState.REFUND_CREATED),
                   refund_record(2, state=RefundState.REFUND_PENDING, attempts=4)])
    assert {c.refund_id for c in h.sent(SendRefund)} == {1, 2}
    assert h.refunds[1].state is RefundState.REFUNDING


def test_check_refund_rules() -> None:
    def refused(*args: object) -> str:
        refusal = check_refund(*args)
        assert refusal is not None
        return refusal.message

    paid = sale_record(1, state=SaleState.PAID, acquirement_id=ACQ, amount=1000)
    assert check_refund(paid, [], Money(1000, "USD")) is None
    assert "not PAID" in refused(sale_record(1, state=SaleState.CANCELLED), [], Money(1, "USD"))
    assert "acquirementId" in refused(sale_record(1, state=SaleState.PAID), [], Money(1, "USD"))
    assert "in USD" in refused(paid, [], Money(1, "EUR"))
    pending = refund_record(1, amount=600, state=RefundState.REFUND_PENDING)
    declined = refund_record(2, amount=900, state=RefundState.REFUND_DECLINED)
    assert check_refund(paid, [pending, declined], Money(400, "USD")) is None
    assert "more than is left" in refused(paid, [pending, declined], Money(401, "USD"))


def test_tables_are_data_without_string_callbacks() -> None:
    for row in [*SALE_TRANSITIONS, *REFUND_TRANSITIONS]:
        for key in ("prepare", "conditions", "after"):
            assert all(callable(cb) for cb in row.get(key, []))
    assert Engine(PaymentSection().schedule())._sale_machine.auto_transitions is False


def test_every_trigger_is_exercised_by_this_file() -> None:
    # Guard against a table row no test reaches: run the scenarios above and
    # collect the triggers they logged.
    seen: set[str] = set()
    for scenario in (
        lambda h: (h.start(), h.answer(Succeeded())),
        lambda h: (h.start(), h.answer(Failed("RISK_REJECT"))),
        lambda h: (querying(h), h.advance(), h.answer(PAID_Q)),
        lambda h: (querying(h), h.advance(), h.answer(CLOSED_Q)),
        lambda h: (querying(h), h.advance(), h.answer(PENDING_Q)),
        lambda h: (querying(h), [(h.advance(), h.answer(NOT_FOUND)) for _ in range(3)]),
        lambda h: (querying(h), [(h.advance(), h.answer(PENDING_Q)) for _ in range(12)]),
        lambda h: (cancelling(h), h.answer(Succeeded())),
        lambda h: (cancelling(h), [(h.answer(U), h.advance()) for _ in range(5)], h.answer(U)),
        lambda h: (manual_review(h), h.advance(), h.answer(PENDING_Q), h.advance(), h.answer(PAID_Q)),
        lambda h: (manual_review(h), h.advance(), h.answer(CLOSED_Q)),
        lambda h: (manual_review(h), h.advance(), h.answer(PAID_Q), h.answer(U), h.advance(),
                   h.answer(Succeeded(refund_gateway_id="RF1"))),
        lambda h: (manual_review(h), h.advance(), h.answer(PAID_Q), h.answer(Failed("X"))),
        lambda h: h.recover([sale_record(1, state=SaleState.REVERSING, acquirement_id=ACQ, reversal_id="V")]),
        lambda h: h.recover([sale_record(1), sale_record(2, state=SaleState.PAYING),
                             sale_record(3, state=SaleState.QUERYING, querying_since=T0),
                             sale_record(4, state=SaleState.CANCELLING)],
                            [refund_record(1), refund_record(2, state=RefundState.REFUNDING)]),
        lambda h: (h.start(), h.abort()),
        lambda h: (h.start(), h.abort(), h.answer(Succeeded(gateway_id=ACQ))),
        lambda h: (h.start_refund(), h.answer(Succeeded())),
        lambda h: (h.start_refund(), h.answer(Failed("X"))),
        lambda h: (h.start_refund(), [(h.answer(U), h.advance()) for _ in range(4)], h.answer(U),
                   h.advance(), h.answer(U)),
        lambda h: (manual_review(h), h.advance(), h.answer(PAID_Q), h.answer(Failed("X")), h.resolve("refund")),
        lambda h: (manual_review(h), h.advance(), h.answer(PAID_Q), h.answer(Failed("X")),
                   h.resolve("goods_given")),
    ):
        h = Harness()
        scenario(h)
        seen |= {e.trigger for c in h.commands if isinstance(c, Record) for e in c.log}
    table = {row["trigger"] for row in [*SALE_TRANSITIONS, *REFUND_TRANSITIONS]}
    assert table - seen == set()


# -- issue 17: the schedule and the texts by cause ---------------------------------------

def test_only_user_paying_asks_the_customer_to_confirm_in_the_app() -> None:
    h = Harness()
    h.start()
    out = h.answer(Unknown("gateway answered U", "USER_PAYING", cause=Cause.CUSTOMER_CONFIRMING))
    assert [c.key for c in h.of(Show, out)] == ["confirm_in_app"]
    h = Harness()
    h.start()
    out = h.answer(Unknown("gateway answered U", "SYSTEM_ERROR"))
    assert [c.key for c in h.of(Show, out)] == ["checking"]


def test_no_two_queries_closer_than_the_shortest_interval_the_deadlines_included() -> None:
    """Before: the query at query_deadline could follow the one before by 0.4 s."""
    for seed in range(40):
        h = Harness(query_first_delay=2.0, query_interval_min=5.0, query_interval_max=7.0, query_deadline=60.0)
        h.engine._ctx.rng.seed(seed)
        h.start()
        h.answer(U)
        while h.state() is SaleState.QUERYING:
            h.advance()
            if h.inflight:
                h.answer(PENDING_Q)
        times = [c.due for c in h.sent(SendQuery)]
        assert all(b - a >= 5.0 for a, b in pairwise(times)), (seed, times)
        assert times[-1] >= T0 + 60.0 - 7.0   # the last one still near the deadline


def test_the_first_query_after_a_pay_with_no_answer_goes_within_first_query_after() -> None:
    """Before: the first query waited for the pay's whole read timeout plus query_first_delay."""
    h = Harness(query_first_delay=2.0, first_query_after=5.0)
    h.start()
    h.answer(Unknown("timeout", no_answer=True), after=4.9)   # the pay's shortened read timeout
    h.advance()
    assert h.sent(SendQuery)[0].due <= T0 + 5.0
    h = Harness(query_first_delay=2.0, first_query_after=5.0)
    h.start()
    # answered at once: the usual delay
    h.answer(Unknown("gateway answered U", "USER_PAYING", cause=Cause.CUSTOMER_CONFIRMING), after=0.3)
    h.advance()
    assert h.sent(SendQuery)[0].due == T0 + 2.3


def test_a_reversed_sale_counts_apart_and_nets_zero_on_reports() -> None:
    from pos.core.reports import build_report, report_rows

    paid = sale_record(1, state=SaleState.PAID, amount=1000)
    reversed_ = sale_record(2, state=SaleState.REVERSED, amount=640)
    review = sale_record(3, state=SaleState.MANUAL_REVIEW, amount=500, acquirement_id=ACQ)
    report = build_report("X", 1, "09:00", None, [paid, reversed_, review], [])
    totals = report.totals["USD"]
    assert (totals.sales_minor, totals.reversals_count, totals.reversals_minor, totals.net.minor) == (1000, 1, 640,
                                                                                                     1000)
    assert report.manual_review == [review.merchant_trans_id]
    assert report.as_dict()["manualReviewAcquirementIds"] == {review.merchant_trans_id: ACQ}
    assert ("", f"Alipay {ACQ}") in report_rows(report) and ("Reversed x1", "6.40 USD") in report_rows(report)


# ---- PAID_LATE: charged after "No goods", left to the manager ([payment] late_success = "manager")

def paid_late(h: Harness) -> list:
    manual_review(h)
    h.advance()
    return h.answer(PAID_Q)


def test_late_success_manager_keeps_the_sale_on_the_managers_list() -> None:
    h = Harness(late_success="manager")
    out = paid_late(h)
    assert h.state() is SaleState.PAID_LATE and h.records[1].resolved_by_corrector
    assert h.records[1].acquirement_id == ACQ
    assert [s.key for s in h.of(Show, out)] == ["paid_late"]
    assert h.of(Finished, out) == [Finished("sale", 1, "PAID_LATE")]
    assert any("PAID_LATE" in a.text and ACQ in a.text and "pos journal resolve 1" in a.text
               for a in h.of(Alarm, out))
    assert h.of(PrintReceipt, out) == [] and h.sent(SendReverse) == []
    # Nothing is sent while it waits, however long; it stays open (not final).
    assert h.engine.next_wakeup() in (None, h.records[1].created_at + 3600.0)
    assert [s.sale_id for s in h.engine.open_sales()] == [1]


def test_the_manager_refunds_a_paid_late_sale_with_a_fresh_id_committed_first() -> None:
    h = Harness(late_success="manager")
    paid_late(h)
    assert h.engine.admit_resolve(1, "refund") is None
    out = h.resolve("refund", by="keypad (manager PIN)")
    record, send = out[0], h.of(SendReverse, out)
    assert isinstance(record, Record) and record.sales[0].state is SaleState.REVERSING
    assert record.sales[0].reversal_id == "POS01-20270115-TEST01-000001-V"
    assert send == [SendReverse(1, send[0].seq, h.now, ACQ, "POS01-20270115-TEST01-000001-V", Money(1250, "USD"))]
    # The audit log says who asked for it.
    entry = record.log[0]
    assert (entry.trigger, entry.source, entry.dest) == ("manager_refund", "PAID_LATE", "REVERSING")
    assert "by keypad (manager PIN)" in entry.detail
    out = h.answer(Succeeded(refund_gateway_id="RF1"))
    assert h.state() is SaleState.REVERSED and h.records[1].reversal_gateway_id == "RF1"
    assert h.of(PrintReceipt, out) == [PrintReceipt(1)]


def test_the_manager_records_that_the_goods_were_given() -> None:
    h = Harness(late_success="manager")
    paid_late(h)
    out = h.resolve("goods_given", by="till (manager token)")
    assert h.state() is SaleState.PAID and h.sent(SendReverse) == []
    entry = out[0].log[0]
    assert (entry.trigger, entry.source, entry.dest) == ("goods_given", "PAID_LATE", "PAID")
    assert "the goods were given; by till (manager token)" in entry.detail and entry.at == h.now
    assert h.of(PrintReceipt, out) == [PrintReceipt(1)]
    assert h.engine.open_sales() == []


def test_only_a_paid_late_sale_is_resolved() -> None:
    h = Harness(late_success="manager")
    manual_review(h)
    refusal = h.engine.admit_resolve(1, "goods_given")
    assert refusal is not None and refusal.reason == "not_paid_late" and "MANUAL_REVIEW" in refusal.message
    assert h.resolve("goods_given") == [] and h.state() is SaleState.MANUAL_REVIEW
    assert h.engine.admit_resolve(99, "refund") is not None


def test_a_paid_late_sale_waits_for_the_manager_across_a_restart() -> None:
    h = Harness(late_success="manager")
    out = h.recover([sale_record(1, state=SaleState.PAID_LATE, pay_sent_at=T0, acquirement_id=ACQ)])
    assert h.sent(SendQuery) == [] and h.sent(SendReverse) == [] and h.sent(SendPay) == []
    assert h.engine.admit_resolve(1, "refund") is None
    h.resolve("refund")
    assert [c.merchant_refund_id for c in h.sent(SendReverse)] == ["POS01-20270115-TEST01-000001-V"]
    del out


# ---- issue 17: after a cancel refused as too late, the payment's fate is asked for on the query schedule

def test_a_cancel_too_late_keeps_querying_on_the_query_schedule() -> None:
    h = Harness(background_interval=300.0)
    cancelling(h)
    h.answer(Failed("CANCEL_EXPIRED", cause=Cause.TOO_LATE_TO_CANCEL))
    refused_at = h.now
    assert h.state() is SaleState.MANUAL_REVIEW
    times = []
    for _ in range(3):
        h.advance()
        times.append(h.now)
        h.answer(PENDING_Q)
    # 5 s after the refused cancel, then 5-7 s apart: not the background corrector's 300 s.
    assert times[0] == refused_at + 5.0
    assert all(5.0 <= b - a <= 7.0 for a, b in pairwise(times))
    h.advance()
    h.answer(PAID_Q)       # the charge is found within seconds and given back
    assert h.state() is SaleState.REVERSING and h.now - refused_at < 30.0


def test_a_cancel_too_late_goes_to_the_background_pace_once_the_wallet_has_decided() -> None:
    """The wallet closes an unconfirmed payment within about 3 minutes: after that (and the query
    deadline) a payment still not known (the gateway unreachable) is the background corrector's."""
    h = Harness(background_interval=300.0)
    cancelling(h)
    h.answer(Failed("CANCEL_EXPIRED", cause=Cause.TOO_LATE_TO_CANCEL))
    last = h.now
    while True:
        h.advance()
        gap, last = h.now - last, h.now
        if gap > 7.0:
            break
        h.answer(U)
    assert gap == 300.0 and h.now > T0 + 180.0 + 60.0
