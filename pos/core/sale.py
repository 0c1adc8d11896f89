"""The sale machine, as data: its states, its transitions and which answer fires which trigger.

Seed 003 and reference §12 are behind every rule; every repeated request
names its row of the retry table (pos/core/schedule.py), where its numbers
are. The callbacks are pure: they change the working copy and put commands
in the engine's outbox.
"""

from __future__ import annotations

from typing import Any, cast

from transitions import EventData

from pos.core.events import Alarm, Finished, PrintReceipt, Request, Show, ShowQr
from pos.core.items import (
    Callback,
    Reading,
    Repeat,
    RetryLeft,
    Row,
    SaleItem,
    Start,
    StartQuerying,
    StateRow,
    Verdict,
    code_and_message,
    now_of,
    result_of,
)
from pos.core.outcomes import Cause, Failed, GatewayResult, QueryOutcome, Succeeded, cause_of, qr_text_of
from pos.core.records import SaleRecord, SaleState
from pos.core.schedule import Retried

__all__ = ["SALE_STATES", "SALE_TRANSITIONS", "SALE_ANSWERS", "declined_key"]

S = SaleState
Q = QueryOutcome
V = Verdict


def _sale(ev: EventData) -> SaleItem:
    return cast(SaleItem, ev.model)


def _show(key: str) -> Callback:
    def show(ev: EventData) -> None:
        sale = _sale(ev)
        sale.ctx.emit(Show(key, {"amount": sale.amount.display()}, sale_id=sale.item_id))
    show.__name__ = f"show_{key}"
    return show



def _show_checking(ev: EventData) -> None:
    sale = _sale(ev)
    if sale.record.is_qr and qr_text_of(result_of(ev)):
        key = "scan_qr"   # the customer scans the slip's code; the queries and the notification decide
    elif sale.record.result_cause is Cause.CUSTOMER_CONFIRMING:
        key = "confirm_in_app"
    else:
        key = "checking"
    sale.ctx.emit(Show(key, {"amount": sale.amount.display()}, sale_id=sale.item_id))


def _qr_without_code(ev: EventData) -> bool:
    """Condition: a QR sale's pay answered without a code to show: nobody can have paid it."""
    sale = _sale(ev)
    return sale.record.is_qr and not qr_text_of(result_of(ev))


_qr_without_code.__name__ = "qr_without_code"


def _qr_sale(ev: EventData) -> bool:
    """Condition: a merchant-presented QR sale."""
    return _sale(ev).record.is_qr


_qr_sale.__name__ = "qr_sale"


def _show_qr(ev: EventData) -> None:
    """A QR sale's code arrived: the slip is printed and the cashier sees its text (ShowQr)."""
    sale = _sale(ev)
    text = qr_text_of(result_of(ev))
    if sale.record.is_qr and text:
        rec = sale.record
        sale.ctx.emit(ShowQr(sale.item_id, text, rec.amount, rec.merchant_trans_id))


def _queue_pay(ev: EventData) -> None:
    _sale(ev).plan("pay", now_of(ev))


def _plan_now(request: Request) -> Callback:
    def plan_now(ev: EventData) -> None:
        _sale(ev).plan(request, now_of(ev))
    plan_now.__name__ = f"{request}_now"
    return plan_now


def _mark_querying_since(ev: EventData) -> None:
    sale = _sale(ev)
    if sale.record.querying_since is None:
        sale.change(querying_since=now_of(ev))


def _count_not_found(ev: EventData) -> None:
    sale = _sale(ev)
    sale.change(not_found_count=sale.record.not_found_count + 1)


def _reset_not_found(ev: EventData) -> None:
    sale = _sale(ev)
    sale.change(not_found_count=0)


def _store_result(ev: EventData) -> None:
    """Keep what the gateway told us: acquirementId on success, the code (and its cause) on failure."""
    sale = _sale(ev)
    result = result_of(ev)
    if result is None:
        return
    sale.change(**_code_fields(result), **_payment_fields(sale.record, result))


def _code_fields(result: GatewayResult) -> dict[str, Any]:
    """The answer's result code, message and cause, as the sale's fields."""
    code, message = code_and_message(result)
    if isinstance(result, Succeeded) and result.result_code:
        # A query that finds the payment closed names why (e.g. ORDER_IS_CLOSED: an order code
        # expired): that is the sale's result, not the query's own SUCCESS.
        code, message = result.result_code, result.result_message
    return {"result_code": code, "result_message": message, "result_cause": cause_of(result)}


def _payment_fields(rec: SaleRecord, result: GatewayResult) -> dict[str, Any]:
    """The payment's id and what the customer paid, from an answer that carries them, as the sale's fields."""
    fields: dict[str, Any] = {}
    if result.gateway_id:
        # An F or U answer may name the payment too (the customer-confirming U does): the manager's
        # list needs it for Alipay's support even when the sale never settles.
        fields["acquirement_id"] = result.gateway_id
    if isinstance(result, Succeeded):
        paid = result.customer_amount
        if paid is not None and paid.currency != rec.amount.currency:
            fields.update(pay_amount_minor=paid.minor, pay_currency=paid.currency,
                          conversion_rate=result.conversion_rate)
    return fields


def _keep_acquirement_id(ev: EventData) -> None:
    """Keep the payment's ids and what the customer paid from any answer that carries them."""
    sale = _sale(ev)
    result = result_of(ev)
    if result is None:
        return
    fields = _payment_fields(sale.record, result)
    if fields:
        sale.change(**fields)


def _mark_resolved(ev: EventData) -> None:
    sale = _sale(ev)
    sale.change(resolved_by_corrector=True)


def _alarm_resolved(ev: EventData) -> None:
    sale = _sale(ev)
    sale.ctx.emit(Alarm(f"{sale.name} resolved by the background check: {sale.state}", sale_id=sale.item_id))


def _finish(ev: EventData, key: str, params: dict[str, str] | None = None) -> SaleItem:
    sale = _sale(ev)
    sale.change(finished_at=now_of(ev))
    sale.unplan()
    shown = {"amount": sale.amount.display(), **(params or {})}
    sale.ctx.emit(Show(key, shown, sale_id=sale.item_id))
    return sale


def _enter_paid(ev: EventData) -> None:
    sale = _finish(ev, "paid")
    sale.ctx.emit(PrintReceipt(sale.item_id))
    sale.ctx.emit(Finished("sale", sale.item_id, S.PAID.value))


def declined_key(result_code: str | None, *, qr: bool, explained: bool) -> str:
    """The catalogue key a DECLINED sale shows: code.<RESULT_CODE> (one plain-words text per
    result code; the catalogue falls back to "declined" for a code it does not know), or
    qr.code.<RESULT_CODE> for a QR sale (its own text where the code means something else for
    a QR code, such as the v1 code for an expired order code; else code.<RESULT_CODE>). Only an
    explained decline (an F answer, or a query naming the closed payment's failure code) shows
    its code: a payQuery that reports CLOSED answers S with the success code, whose text ("Done")
    would tell the cashier to hand over the goods."""
    if not explained or not result_code:
        return "declined"
    return f"qr.code.{result_code}" if qr else f"code.{result_code}"


def _enter_declined(ev: EventData) -> None:
    rec = _sale(ev).record
    code = rec.result_code or "UNKNOWN"
    result = result_of(ev)
    explained = isinstance(result, Failed) or (isinstance(result, Succeeded) and bool(result.result_code))
    key = declined_key(rec.result_code, qr=rec.is_qr, explained=explained)
    sale = _finish(ev, key, {"code": code, "fallback": "declined"})
    sale.ctx.emit(Finished("sale", sale.item_id, S.DECLINED.value))


def _enter_cancelled(ev: EventData) -> None:
    sale = _finish(ev, "cancelled")
    sale.ctx.emit(Finished("sale", sale.item_id, S.CANCELLED.value))


def _late_success_refund(ev: EventData) -> bool:
    """Condition: [payment] late_success = "refund", and the charge can be refunded (its acquirementId is known)."""
    sale = _sale(ev)
    return sale.ctx.schedule.late_success_refund and bool(sale.record.acquirement_id)


_late_success_refund.__name__ = "late_success_refund"


def _name_reversal(ev: EventData) -> None:
    """A fresh merchantRefundId of its own: committed with REVERSING, before the refund leaves;
    every retry sends the same one (reference §9). Till refunds end in -R<seq>, never -V."""
    sale = _sale(ev)
    if sale.record.reversal_id is None:
        sale.change(reversal_id=f"{sale.record.merchant_trans_id}-V")


def _alarm_reversing(ev: EventData) -> None:
    sale = _sale(ev)
    rec = sale.record
    sale.ctx.emit(Alarm(
        f"{sale.name} ({rec.amount.receipt()}) was charged after the cashier was told 'No goods': "
        f"refunding it in full ({rec.reversal_id}), [payment] late_success = \"refund\"", sale_id=sale.item_id))


def _keep_reversal_answer(ev: EventData) -> None:
    sale = _sale(ev)
    result = result_of(ev)
    if result is None:
        return
    fields = _code_fields(result)
    if isinstance(result, Succeeded) and result.refund_gateway_id:
        fields["reversal_gateway_id"] = result.refund_gateway_id
    sale.change(**fields)


def _enter_reversing(ev: EventData) -> None:
    sale = _sale(ev)
    sale.ctx.emit(Show("reversing", {"amount": sale.amount.display()}, sale_id=sale.item_id))


def _enter_reversed(ev: EventData) -> None:
    sale = _finish(ev, "reversed")
    sale.ctx.emit(PrintReceipt(sale.item_id))
    sale.ctx.emit(Alarm(f"{sale.name} ({sale.amount.receipt()}) was charged too late and has been "
                        f"refunded in full ({sale.record.reversal_id}): nothing is owed either way",
                        sale_id=sale.item_id))
    sale.ctx.emit(Finished("sale", sale.item_id, S.REVERSED.value))


def _alarm_reversal_declined(ev: EventData) -> None:
    sale = _sale(ev)
    rec = sale.record
    sale.ctx.emit(Alarm(
        f"{sale.name} ({rec.amount.receipt()}) was charged after 'No goods' and its full refund "
        f"{rec.reversal_id} was declined ({rec.result_code}): the customer is still charged", sale_id=sale.item_id))


def _enter_paid_late(ev: EventData) -> None:
    """Charged after "No goods" and left to the manager: on the manager's list until settled."""
    sale = _sale(ev)
    rec = sale.record
    sale.unplan()
    sale.ctx.emit(Show("paid_late", {"amount": rec.amount.display()}, sale_id=sale.item_id))
    sale.ctx.emit(Alarm(
        f"{sale.name} ({rec.amount.receipt()}) is PAID_LATE: the customer was charged after the cashier "
        f"said 'No goods' (acquirementId {rec.acquirement_id or 'unknown'}); a manager refunds it or records "
        f"that the goods were given ('pos journal resolve {rec.sale_id} --refund|--goods-given', the keypad's "
        "REFUND menu, or the till's POST /v1/sales/{id}/resolve)", sale_id=sale.item_id))
    sale.ctx.emit(Finished("sale", sale.item_id, S.PAID_LATE.value))


def _fresh_reversal_id(ev: EventData) -> None:
    """The manager refunds a PAID_LATE sale: a merchantRefundId of its own, committed with REVERSING
    before the refund leaves. One whose refund was declined is not sent again (the gateway would
    answer the same): the next one is -V2, -V3..."""
    sale = _sale(ev)
    rec = sale.record
    if rec.reversal_id is None:
        fresh = f"{rec.merchant_trans_id}-V"
    else:
        base = f"{rec.merchant_trans_id}-V"
        tail = rec.reversal_id[len(base):]
        fresh = f"{base}{(int(tail) if tail.isdigit() else 1) + 1}"
    sale.change(reversal_id=fresh, reversal_gateway_id=None, reversal_attempts=0)


def _alarm_manager_refund(ev: EventData) -> None:
    sale = _sale(ev)
    rec = sale.record
    sale.ctx.emit(Alarm(f"{sale.name} ({rec.amount.receipt()}) charged after 'No goods': refunding it in full "
                        f"({rec.reversal_id}), asked by {ev.kwargs.get('by') or 'a manager'}", sale_id=sale.item_id))


def _enter_manual_review(ev: EventData) -> None:
    sale = _sale(ev)
    rec = sale.record
    sale.ctx.emit(Show("manual_review", {"amount": rec.amount.display()}, sale_id=sale.item_id))
    sale.ctx.emit(Alarm(
        f"{sale.name} ({rec.amount.receipt()}) is not settled: the cancel answered "
        f"{rec.result_code or 'nothing certain'}; do not hand over the goods; "
        "a manager must check it ('pos journal list --open')", sale_id=sale.item_id))
    sale.ctx.emit(Finished("sale", sale.item_id, S.MANUAL_REVIEW.value))


def _late_query_left(ev: EventData) -> bool:
    """Condition: the cancel was refused as too late (Cause.TOO_LATE_TO_CANCEL) and the wallet may still be
    settling the payment: its fate is asked for on the query schedule, not the background's."""
    sale = _sale(ev)
    rec = sale.record
    if rec.result_cause is not Cause.TOO_LATE_TO_CANCEL:
        return False
    since = rec.pay_sent_at if rec.pay_sent_at is not None else rec.created_at
    schedule = sale.ctx.schedule
    return now_of(ev) < since + schedule.wallet_auto_close + schedule.query_deadline


_late_query_left.__name__ = "late_query_left"


def _start_review(ev: EventData) -> None:
    """On entering MANUAL_REVIEW: the background corrector's first payQuery, or - after a cancel
    refused as too late - the next one on the query schedule (issue 17)."""
    retried = Retried.LATE_QUERY if _late_query_left(ev) else Retried.REVIEW_QUERY
    Start(retried)(ev)


# Every state and what happens on entering it.
SALE_STATES: list[StateRow] = [
    {"name": S.CREATED.value},
    {"name": S.PAYING.value, "on_enter": [_show("processing")]},
    {"name": S.QUERYING.value, "on_enter": [_mark_querying_since, StartQuerying(Retried.PAY_QUERY),
                                             _show_checking]},
    {"name": S.CANCELLING.value, "on_enter": [Start(Retried.CANCEL), _show("cancelling")]},
    {"name": S.PAID.value, "on_enter": [_enter_paid]},
    {"name": S.DECLINED.value, "on_enter": [_enter_declined]},
    {"name": S.CANCELLED.value, "on_enter": [_enter_cancelled]},
    # The background corrector keeps asking payQuery (reference §12: "a back-office
    # job should later correct any transaction left pending").
    {"name": S.MANUAL_REVIEW.value, "on_enter": [_enter_manual_review, _start_review]},
    # Charged after the cashier said "No goods": the money goes back by a full refund.
    {"name": S.REVERSING.value, "on_enter": [_name_reversal, _enter_reversing, Start(Retried.REVERSE)]},
    {"name": S.REVERSED.value, "on_enter": [_enter_reversed]},
    # Charged after "No goods" and left to the manager: nothing is sent until they decide.
    {"name": S.PAID_LATE.value, "on_enter": [_enter_paid_late]},
]

# Every transition. Rows with one trigger are tried in order; the first whose
# conditions hold wins (transitions' semantics). dest None is an internal
# transition: the state stays and only the callbacks run. A row that repeats a
# request is followed by the row taken when the retry table's row runs out.
SALE_TRANSITIONS: list[Row] = [
    # Write before you send: PAYING is committed before the pay leaves.
    {"trigger": "send_pay", "source": S.CREATED.value, "dest": S.PAYING.value, "after": [_queue_pay]},
    # A pay that was never sent moved no money: nothing to ask the gateway.
    {"trigger": "abort", "source": S.CREATED.value, "dest": S.CANCELLED.value},
    {"trigger": "void", "source": S.CREATED.value, "dest": S.CANCELLED.value},
    # §6.3: S paid, F final, anything else (U, timeout, transport, bad signature) unknown.
    {"trigger": "pay_succeeded", "source": S.PAYING.value, "dest": S.PAID.value, "prepare": [_store_result]},
    {"trigger": "pay_failed", "source": S.PAYING.value, "dest": S.DECLINED.value, "prepare": [_store_result]},
    # A merchant-presented QR sale's pay answers "in process" with the code the customer scans:
    # the slip is printed and the sale waits on the queries and the notification (QUERYING, the
    # code sale's deadline and cancel rules). Without a code nobody can pay it: cancel whatever
    # the pay may have created at once.
    {"trigger": "pay_unknown", "source": S.PAYING.value, "dest": S.CANCELLING.value, "prepare": [_store_result],
     "conditions": [_qr_without_code]},
    {"trigger": "pay_unknown", "source": S.PAYING.value, "dest": S.QUERYING.value, "prepare": [_store_result],
     "after": [_show_qr]},
    # Aborted while the pay was out: the cancel (which waited for this answer)
    # decides; keep the acquirementId for the record.
    {"trigger": "pay_answer", "source": S.CANCELLING.value, "dest": None, "prepare": [_keep_acquirement_id]},
    # After a restart a pay that may have left is only ever queried, never sent again. A QR sale's
    # code was never shown (its answer was not recorded): nobody can have paid it, so it is cancelled.
    {"trigger": "resume", "source": S.PAYING.value, "dest": S.CANCELLING.value, "conditions": [_qr_sale]},
    {"trigger": "resume", "source": S.PAYING.value, "dest": S.QUERYING.value},
    {"trigger": "resume", "source": [S.QUERYING.value, S.MANUAL_REVIEW.value], "dest": None,
     "after": [_plan_now("query")]},
    {"trigger": "resume", "source": S.CANCELLING.value, "dest": None, "after": [_plan_now("cancel")]},
    {"trigger": "resume", "source": S.REVERSING.value, "dest": None, "after": [_plan_now("reverse")]},
    {"trigger": "resume", "source": S.PAID_LATE.value, "dest": None},
    # QUERYING (seed 003, reference §12).
    {"trigger": "query_paid", "source": S.QUERYING.value, "dest": S.PAID.value, "prepare": [_store_result]},
    {"trigger": "query_closed", "source": S.QUERYING.value, "dest": S.DECLINED.value, "prepare": [_store_result]},
    {"trigger": "query_open", "source": S.QUERYING.value, "dest": None, "prepare": [_reset_not_found],
     "conditions": [RetryLeft(Retried.PAY_QUERY)], "after": [Repeat(Retried.PAY_QUERY)]},
    {"trigger": "query_open", "source": S.QUERYING.value, "dest": S.CANCELLING.value},
    {"trigger": "query_not_found", "source": S.QUERYING.value, "dest": None, "prepare": [_count_not_found],
     "conditions": [RetryLeft(Retried.NOT_FOUND_QUERY)], "after": [Repeat(Retried.NOT_FOUND_QUERY)]},
    {"trigger": "query_not_found", "source": S.QUERYING.value, "dest": S.CANCELLING.value},
    # The cashier gives up: cancel whatever the pay did (the cancel waits for a pay in flight).
    {"trigger": "abort", "source": [S.PAYING.value, S.QUERYING.value], "dest": S.CANCELLING.value},
    # CANCELLING (seed 003 note 3).
    {"trigger": "cancel_succeeded", "source": S.CANCELLING.value, "dest": S.CANCELLED.value,
     "prepare": [_store_result]},
    {"trigger": "cancel_failed", "source": S.CANCELLING.value, "dest": S.MANUAL_REVIEW.value,
     "prepare": [_store_result]},
    {"trigger": "cancel_unknown", "source": S.CANCELLING.value, "dest": None, "prepare": [_store_result],
     "conditions": [RetryLeft(Retried.CANCEL)], "after": [Repeat(Retried.CANCEL)]},
    {"trigger": "cancel_unknown", "source": S.CANCELLING.value, "dest": S.MANUAL_REVIEW.value},
    # The background corrector (see the Engine docstring for the PAID rule). The
    # cashier was told "No goods": a charge found now is given back in full
    # ([payment] late_success = "refund"), or left on the manager's list as PAID_LATE.
    {"trigger": "review_paid", "source": S.MANUAL_REVIEW.value, "dest": S.REVERSING.value,
     "prepare": [_store_result, _mark_resolved], "conditions": [_late_success_refund],
     "after": [_alarm_reversing]},
    {"trigger": "review_paid", "source": S.MANUAL_REVIEW.value, "dest": S.PAID_LATE.value,
     "prepare": [_store_result, _mark_resolved]},
    {"trigger": "review_closed", "source": S.MANUAL_REVIEW.value, "dest": S.CANCELLED.value,
     "prepare": [_store_result, _mark_resolved], "after": [_alarm_resolved]},
    # After a cancel refused as too late: keep asking 5-7 s apart while the wallet may settle it.
    {"trigger": "review_open", "source": S.MANUAL_REVIEW.value, "dest": None,
     "conditions": [_late_query_left], "after": [Repeat(Retried.LATE_QUERY)]},
    {"trigger": "review_open", "source": S.MANUAL_REVIEW.value, "dest": None,
     "after": [Repeat(Retried.REVIEW_QUERY)]},
    # REVERSING: a refund (reference §9), retried with the same merchantRefundId.
    {"trigger": "reverse_succeeded", "source": S.REVERSING.value, "dest": S.REVERSED.value,
     "prepare": [_keep_reversal_answer]},
    # Declined: the charge stands (verified PAID) and the customer has no goods: the manager's list.
    {"trigger": "reverse_failed", "source": S.REVERSING.value, "dest": S.PAID_LATE.value,
     "prepare": [_keep_reversal_answer, _alarm_reversal_declined]},
    {"trigger": "reverse_unknown", "source": S.REVERSING.value, "dest": None, "prepare": [_keep_reversal_answer],
     "conditions": [RetryLeft(Retried.REVERSE)], "after": [Repeat(Retried.REVERSE)]},
    {"trigger": "reverse_unknown", "source": S.REVERSING.value, "dest": None,
     "after": [Repeat(Retried.PENDING_REVERSE)]},
    # PAID_LATE: the manager decides (keypad, till or command line; who is in the audit log).
    {"trigger": "manager_refund", "source": S.PAID_LATE.value, "dest": S.REVERSING.value,
     "prepare": [_fresh_reversal_id], "after": [_alarm_manager_refund]},
    {"trigger": "goods_given", "source": S.PAID_LATE.value, "dest": S.PAID.value},
]

# Which trigger a gateway answer fires: (request answered, sale state, what the
# answer says). An answer with no row changes nothing (a query answered after
# the cashier aborted: the cancel decides).
SALE_ANSWERS: dict[tuple[Request, SaleState, Reading], str] = {
    ("pay", S.PAYING, V.SUCCEEDED): "pay_succeeded",
    ("pay", S.PAYING, V.FAILED): "pay_failed",
    ("pay", S.PAYING, V.UNKNOWN): "pay_unknown",
    ("pay", S.CANCELLING, V.SUCCEEDED): "pay_answer",
    ("query", S.QUERYING, Q.PAID): "query_paid",
    ("query", S.QUERYING, Q.CLOSED): "query_closed",
    ("query", S.QUERYING, Q.NOT_FOUND): "query_not_found",
    ("query", S.QUERYING, Q.PENDING): "query_open",
    ("query", S.QUERYING, Q.UNKNOWN): "query_open",
    ("query", S.MANUAL_REVIEW, Q.PAID): "review_paid",
    ("query", S.MANUAL_REVIEW, Q.CLOSED): "review_closed",
    ("query", S.MANUAL_REVIEW, Q.NOT_FOUND): "review_open",
    ("query", S.MANUAL_REVIEW, Q.PENDING): "review_open",
    ("query", S.MANUAL_REVIEW, Q.UNKNOWN): "review_open",
    ("cancel", S.CANCELLING, V.SUCCEEDED): "cancel_succeeded",
    ("cancel", S.CANCELLING, V.FAILED): "cancel_failed",
    ("cancel", S.CANCELLING, V.UNKNOWN): "cancel_unknown",
    ("reverse", S.REVERSING, V.SUCCEEDED): "reverse_succeeded",
    ("reverse", S.REVERSING, V.FAILED): "reverse_failed",
    ("reverse", S.REVERSING, V.UNKNOWN): "reverse_unknown",
}
