"""Payment notifications: the engine takes a verified one as one more answer; the v1 reader's rules.

Pure: the engine in virtual time (tests/engine_harness.py) and the v1
notification reader on exact bytes. The listener over HTTP, fed by the
sandbox's own notifications, is in tests/test_notify_e2e.py.
"""

from __future__ import annotations

import json

from pos.core.engine import PrintReceipt, Record, SendQuery, SendRefund, Show
from pos.core.events import Notified, RefundNotified
from pos.core.money import Money
from pos.core.outcomes import Cause, Failed, QueryOutcome, Succeeded, Unknown
from pos.core.records import RefundState, SaleState
from pos.gateway.ams.notify import acknowledgement, read_notification
from pos.gateway.ams.signing import parse_signature_header, sign, sign_content, signature_header, verify
from tests.engine_harness import Harness
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys

ACQ = "2027011511121280010016000000000001"
PAID = Succeeded(query=QueryOutcome.PAID, gateway_id=ACQ)
CLIENT = "SANDBOX_POS0001"
PATH = "/notify/ams/payment"


def querying(h: Harness) -> None:
    h.start()
    h.answer(Unknown("gateway answered U", "PAYMENT_IN_PROCESS", cause=Cause.CUSTOMER_CONFIRMING), after=0.5)
    assert h.state() is SaleState.QUERYING


def test_a_paid_notification_settles_a_sale_being_queried_at_once() -> None:
    h = Harness(query_first_delay=30.0)
    querying(h)
    out = h.feed(Notified(1, PAID, h.now + 1))
    assert h.state() is SaleState.PAID and h.records[1].acquirement_id == ACQ
    assert h.of(PrintReceipt, out) and h.of(SendQuery, out) == []
    assert h.engine.next_wakeup() is None or h.engine.next_wakeup() > h.now   # nothing more is queried
    again = h.feed(Notified(1, PAID, h.now + 2))    # a replay changes nothing
    assert h.of(PrintReceipt, again) == [] and h.state() is SaleState.PAID


def test_a_notification_supersedes_a_query_in_flight() -> None:
    h = Harness(query_first_delay=1.0)
    querying(h)
    h.advance()                                      # the query is out
    assert len(h.inflight) == 1
    h.feed(Notified(1, PAID, h.now))
    assert h.state() is SaleState.PAID
    h.answer(Succeeded(query=QueryOutcome.PENDING))   # the late query answer is dropped
    assert h.state() is SaleState.PAID


def test_notifications_that_settle_nothing_change_nothing() -> None:
    h = Harness()
    h.start()                                        # pay in flight: its own answer decides
    h.feed(Notified(1, PAID, h.now))
    assert h.state() is SaleState.PAYING
    h.answer(Unknown("timeout"))
    for result in (Failed("RISK_REJECT", query=QueryOutcome.CLOSED), Unknown("notification says U"),
                   Succeeded(query=QueryOutcome.PENDING)):
        h.feed(Notified(1, result, h.now))
        assert h.state() is SaleState.QUERYING
    h.feed(Notified(99, PAID, h.now))                # a sale the engine does not hold
    assert h.state() is SaleState.QUERYING


def test_a_failure_notification_is_a_hint_the_next_query_goes_now() -> None:
    # In-store notifyPayment is documented for the final success only: a FAIL is not taken as a
    # verdict (never "declined" while money may have moved); the query it triggers decides.
    h = Harness(query_first_delay=30.0)
    querying(h)
    failed = Failed("ORDER_IS_CLOSED", "the order code expired", query=QueryOutcome.CLOSED)
    out = h.feed(Notified(1, failed, h.now + 1))
    assert h.state() is SaleState.QUERYING and h.of(Show, out) == []
    assert isinstance(out[0], Record) and out[0].log[0].trigger == "notified"   # the hint is journaled
    query = h.of(SendQuery, out)
    assert len(query) == 1 and query[0].due == h.now + 1                        # now, not in 30 s
    again = h.feed(Notified(1, failed, h.now + 1))                              # one query at a time
    assert h.of(SendQuery, again) == []
    h.answer(Succeeded(query=QueryOutcome.CLOSED, result_code="ORDER_IS_CLOSED"))
    assert h.state() is SaleState.DECLINED and h.records[1].result_code == "ORDER_IS_CLOSED"


def test_a_failure_notification_hurries_the_background_check_of_a_sale_in_review() -> None:
    h = Harness(background_interval=300.0)
    querying(h)
    h.abort()
    h.advance()
    h.answer(Failed("CANCEL_NOT_ALLOWED"))
    assert h.state() is SaleState.MANUAL_REVIEW and h.inflight == []
    h.advance()                                                  # the corrector's first query ...
    h.answer(Succeeded(query=QueryOutcome.PENDING))              # ... finds it open: the next is 300 s away
    out = h.feed(Notified(1, Failed("ORDER_IS_CLOSED", query=QueryOutcome.CLOSED), h.now))
    assert h.state() is SaleState.MANUAL_REVIEW and len(h.of(SendQuery, out)) == 1
    h.answer(Succeeded(query=QueryOutcome.CLOSED, result_code="ORDER_IS_CLOSED"))
    assert h.state() is SaleState.CANCELLED


def test_a_failure_notification_then_a_paid_query_ends_paid() -> None:
    h = Harness(query_first_delay=30.0)
    querying(h)
    h.feed(Notified(1, Failed("ORDER_IS_CLOSED", query=QueryOutcome.CLOSED), h.now))
    h.answer(PAID)
    assert h.state() is SaleState.PAID


def signed(keys: SandboxKeys, body: dict[str, object], *, client: str = CLIENT, path: str = PATH,
           key: object = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, indent=2).encode()
    moment = "2024-05-01T12:00:00+08:00"
    b64 = sign(sign_content("POST", path, client, moment, raw), key or keys.alipay_private)  # type: ignore[arg-type]
    return raw, {"client-id": client, "request-time": moment, "signature": signature_header(b64, 1)}


NOTE = {"notifyType": "PAYMENT_RESULT", "paymentRequestId": "T1", "paymentId": ACQ,
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}}


def test_v1_notification_is_read_only_when_alipay_signed_it(sandbox_keys: SandboxKeys) -> None:
    note = read_notification(PATH, *signed(sandbox_keys, NOTE), alipay_public_key=sandbox_keys.alipay_public,
                             client_id=CLIENT)
    assert not isinstance(note, str) and note.kind == "payment" and note.request_id == "T1"
    assert isinstance(note.result, Succeeded) and note.result.query is QueryOutcome.PAID
    assert note.result.gateway_id == ACQ and note.result.data["paymentId"] == ACQ   # the typed field the engine reads
    converted = {**NOTE, "actualPaymentAmount": {"currency": "CNY", "value": "6712"},
                 "paymentQuote": {"quoteCurrencyPair": "SGD/CNY", "quotePrice": "5.3696"}}
    paid = read_notification(PATH, *signed(sandbox_keys, converted), alipay_public_key=sandbox_keys.alipay_public,
                             client_id=CLIENT)
    assert not isinstance(paid, str) and isinstance(paid.result, Succeeded)
    assert (paid.result.customer_amount, paid.result.conversion_rate) == (Money(6712, "CNY"), "5.3696")
    raw, headers = signed(sandbox_keys, NOTE)
    refused = [
        (raw.replace(b"T1", b"T2"), headers),                                              # changed byte
        signed(sandbox_keys, NOTE, key=sandbox_keys.merchant_private),                     # not Alipay's key
        signed(sandbox_keys, NOTE, client="SANDBOX_OTHER"),                                # not our client id
        signed(sandbox_keys, NOTE, path="/elsewhere"),                                     # signed for another path
        (raw, {k: v for k, v in headers.items() if k != "signature"}),                     # unsigned
    ]
    for body, hdrs in refused:
        assert isinstance(read_notification(PATH, body, hdrs, alipay_public_key=sandbox_keys.alipay_public,
                                            client_id=CLIENT), str)
    failed = {**NOTE, "result": {"resultCode": "RISK_REJECT", "resultStatus": "F"}}
    note = read_notification(PATH, *signed(sandbox_keys, failed), alipay_public_key=sandbox_keys.alipay_public,
                             client_id=CLIENT)
    assert not isinstance(note, str) and isinstance(note.result, Failed) and note.result.query is QueryOutcome.CLOSED


def test_acknowledgement_is_the_documented_success_signed_by_us(sandbox_keys: SandboxKeys) -> None:
    raw, headers = acknowledgement(PATH, CLIENT, sandbox_keys.merchant_private)
    assert json.loads(raw) == {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}
    parsed = parse_signature_header(headers["signature"])
    assert parsed is not None and headers["client-id"] == CLIENT
    assert verify(sign_content("POST", PATH, CLIENT, headers["response-time"], raw), parsed.signature,
                  sandbox_keys.merchant_public)


# ---- refunds (v1 notifyRefund)

REFUNDED = Succeeded(code="SUCCESS", refund_gateway_id="RF-1")   # as notifyRefund is read
U_REFUND = Unknown("gateway answered U", "REFUND_IN_PROCESS")


def pending_refund(h: Harness) -> None:
    h.start_refund(1)
    h.answer(U_REFUND)
    while h.refunds[1].state is RefundState.REFUNDING:
        h.advance()
        h.answer(U_REFUND)
    assert h.refunds[1].state is RefundState.REFUND_PENDING and h.inflight == []


def test_a_refund_notification_settles_a_pending_refund_record_first() -> None:
    h = Harness(refund_retries=1, refund_interval=5.0, background_interval=300.0)
    pending_refund(h)
    sent = len(h.sent(SendRefund))
    out = h.feed(RefundNotified(1, REFUNDED, h.now + 1))
    assert isinstance(out[0], Record) and out[0].refunds[0].state is RefundState.REFUNDED
    assert h.refunds[1].gateway_refund_id == "RF-1" and h.refunds[1].result_code == "SUCCESS"
    assert "notification" in out[0].log[0].detail
    assert h.of(PrintReceipt, out) == [PrintReceipt(1, 1)]
    assert [c.key for c in h.of(Show, out)] == ["refund_done"]
    assert h.engine.next_wakeup() is None and len(h.sent(SendRefund)) == sent   # nothing more is sent
    again = h.feed(RefundNotified(1, REFUNDED, h.now + 2))     # a replay changes nothing
    assert again == []


def test_a_failed_refund_notification_declines_it() -> None:
    h = Harness(refund_retries=1, refund_interval=5.0)
    pending_refund(h)
    out = h.feed(RefundNotified(1, Failed("REFUND_WINDOW_EXCEED", "window passed"), h.now))
    assert h.refunds[1].state is RefundState.REFUND_DECLINED and h.refunds[1].result_code == "REFUND_WINDOW_EXCEED"
    assert [c.key for c in h.of(Show, out)] == ["refund_declined"] and h.of(PrintReceipt, out) == []


def test_a_refund_notification_supersedes_a_refund_in_flight() -> None:
    h = Harness(refund_retries=3, refund_interval=5.0)
    h.start_refund(1)
    assert len(h.inflight) == 1
    h.feed(RefundNotified(1, REFUNDED, h.now))
    assert h.refunds[1].state is RefundState.REFUNDED
    h.answer(U_REFUND)                                           # the late answer is dropped
    assert h.refunds[1].state is RefundState.REFUNDED and len(h.sent(SendRefund)) == 1


def test_refund_notifications_that_settle_nothing_change_nothing() -> None:
    h = Harness(refund_retries=1, refund_interval=5.0)
    pending_refund(h)
    for result in (U_REFUND, Unknown("notification says refundStatus 'PROCESSING'")):
        assert h.feed(RefundNotified(1, result, h.now)) == []
        assert h.refunds[1].state is RefundState.REFUND_PENDING
    assert h.feed(RefundNotified(99, REFUNDED, h.now)) == []    # a refund the engine does not hold
    assert h.feed(Notified(1, PAID, h.now)) == []                 # a payment notification is not a refund's
    assert h.refunds[1].state is RefundState.REFUND_PENDING
    h.advance()                                                   # the corrector still resends it
    assert h.inflight and isinstance(h.inflight[0], SendRefund)


def test_v1_refund_notification_is_read_like_a_refund_answer(sandbox_keys: SandboxKeys) -> None:
    path = "/notify/ams/refund"
    body = {"notifyType": "REFUND_RESULT", "refundStatus": "SUCCESS", "refundRequestId": "R1", "refundId": "RF-1",
            "refundAmount": {"currency": "SGD", "value": "200"},
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}}
    note = read_notification(path, *signed(sandbox_keys, body, path=path), alipay_public_key=sandbox_keys.alipay_public,
                             client_id=CLIENT)
    assert not isinstance(note, str) and note.kind == "refund" and note.request_id == "R1"
    assert isinstance(note.result, Succeeded) and note.result.refund_gateway_id == "RF-1"
    assert note.result.refund_amount == Money(200, "SGD")             # the runner matches it with the journal
    failed = {**body, "refundStatus": "FAIL", "result": {"resultCode": "REFUND_WINDOW_EXCEED", "resultStatus": "F"}}
    note = read_notification(path, *signed(sandbox_keys, failed, path=path),
                             alipay_public_key=sandbox_keys.alipay_public, client_id=CLIENT)
    assert not isinstance(note, str) and isinstance(note.result, Failed) and note.result.code == "REFUND_WINDOW_EXCEED"
    for unsure in ({**body, "refundStatus": "PROCESSING"}, {**body, "refundStatus": "FAIL"},     # F vs resultStatus S
                   {**body, "result": "S"}, {**body, "refundStatus": None, "result": {"resultStatus": "U"}},
                   {**body, "refundAmount": {"currency": "SGD", "value": "2.00"}}):      # an amount we cannot read
        note = read_notification(path, *signed(sandbox_keys, unsure, path=path),
                                 alipay_public_key=sandbox_keys.alipay_public, client_id=CLIENT)
        assert not isinstance(note, str) and isinstance(note.result, Unknown), unsure
    for refused in ({**body, "refundRequestId": ""}, {**body, "refundRequestId": 7}):
        reason = read_notification(path, *signed(sandbox_keys, refused, path=path),
                                   alipay_public_key=sandbox_keys.alipay_public, client_id=CLIENT)
        assert isinstance(reason, str) and "refundRequestId" in reason
    twice = json.dumps(body).replace('"refundId"', '"refundRequestId": "R2", "refundId"').encode()
    moment = "2024-05-01T12:00:00+08:00"
    b64 = sign(sign_content("POST", path, CLIENT, moment, twice), sandbox_keys.alipay_private)
    reason = read_notification(path, twice, {"client-id": CLIENT, "request-time": moment,
                                             "signature": signature_header(b64, 1)},
                               alipay_public_key=sandbox_keys.alipay_public, client_id=CLIENT)
    assert isinstance(reason, str) and "twice" in reason
