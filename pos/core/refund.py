"""The refund machine, as data: its states, its transitions and which answer fires which trigger.

Reference §9: a refund whose answer is unknown is sent again with the same
merchantRefundId (the gateway applies it once); when the retries run out it
waits in REFUND_PENDING, where the background corrector keeps sending it.
"""

from __future__ import annotations

from typing import Any, cast

from transitions import EventData

from pos.core.events import Finished, PrintReceipt, Request, Show
from pos.core.items import (
    Reading,
    RefundItem,
    Repeat,
    RetryLeft,
    Row,
    Start,
    StateRow,
    Verdict,
    code_and_message,
    now_of,
    result_of,
)
from pos.core.outcomes import Succeeded
from pos.core.records import RefundState
from pos.core.schedule import Retried

__all__ = ["REFUND_STATES", "REFUND_TRANSITIONS", "REFUND_ANSWERS"]

R = RefundState
V = Verdict


def _refund(ev: EventData) -> RefundItem:
    return cast(RefundItem, ev.model)


def _refund_now(ev: EventData) -> None:
    _refund(ev).plan("refund", now_of(ev))


def _store_result(ev: EventData) -> None:
    refund = _refund(ev)
    result = result_of(ev)
    if result is None:
        return
    code, message = code_and_message(result)
    fields: dict[str, Any] = {"result_code": code, "result_message": message}
    if isinstance(result, Succeeded) and result.refund_gateway_id:
        fields["gateway_refund_id"] = result.refund_gateway_id
    refund.change(**fields)


def _finish(ev: EventData, key: str) -> RefundItem:
    refund = _refund(ev)
    refund.change(finished_at=now_of(ev))
    refund.unplan()
    rec = refund.record
    params = {"amount": refund.amount.display()}
    if rec.result_code and key == "refund_declined":
        params["code"] = rec.result_code
    refund.ctx.emit(Show(key, params, sale_id=rec.sale_id, refund_id=refund.item_id))
    return refund


def _enter_refunded(ev: EventData) -> None:
    refund = _finish(ev, "refund_done")
    refund.ctx.emit(PrintReceipt(refund.record.sale_id, refund.item_id))
    refund.ctx.emit(Finished("refund", refund.item_id, R.REFUNDED.value))


def _enter_refund_declined(ev: EventData) -> None:
    refund = _finish(ev, "refund_declined")
    refund.ctx.emit(Finished("refund", refund.item_id, R.REFUND_DECLINED.value))


def _enter_refund_pending(ev: EventData) -> None:
    refund = _refund(ev)
    refund.ctx.emit(Show("refund_pending", {"amount": refund.amount.display()},
                         sale_id=refund.record.sale_id, refund_id=refund.item_id))
    refund.ctx.emit(Finished("refund", refund.item_id, R.REFUND_PENDING.value))


REFUND_STATES: list[StateRow] = [
    {"name": R.REFUND_CREATED.value},
    {"name": R.REFUNDING.value},
    {"name": R.REFUNDED.value, "on_enter": [_enter_refunded]},
    {"name": R.REFUND_DECLINED.value, "on_enter": [_enter_refund_declined]},
    {"name": R.REFUND_PENDING.value, "on_enter": [_enter_refund_pending, Start(Retried.PENDING_REFUND)]},
]

REFUND_TRANSITIONS: list[Row] = [
    # The merchantRefundId is committed with REFUND_CREATED; REFUNDING before the request.
    {"trigger": "send_refund", "source": R.REFUND_CREATED.value, "dest": R.REFUNDING.value,
     "after": [Start(Retried.REFUND)]},
    {"trigger": "resume", "source": R.REFUND_CREATED.value, "dest": R.REFUNDING.value,
     "after": [_refund_now]},
    {"trigger": "resume", "source": [R.REFUNDING.value, R.REFUND_PENDING.value], "dest": None,
     "after": [_refund_now]},
    {"trigger": "refund_succeeded", "source": [R.REFUNDING.value, R.REFUND_PENDING.value],
     "dest": R.REFUNDED.value, "prepare": [_store_result]},
    {"trigger": "refund_failed", "source": [R.REFUNDING.value, R.REFUND_PENDING.value],
     "dest": R.REFUND_DECLINED.value, "prepare": [_store_result]},
    # Reference §9: on U or timeout retry with the same merchantRefundId.
    {"trigger": "refund_unknown", "source": R.REFUNDING.value, "dest": None, "prepare": [_store_result],
     "conditions": [RetryLeft(Retried.REFUND)], "after": [Repeat(Retried.REFUND)]},
    {"trigger": "refund_unknown", "source": R.REFUNDING.value, "dest": R.REFUND_PENDING.value},
    {"trigger": "refund_unknown", "source": R.REFUND_PENDING.value, "dest": None, "prepare": [_store_result],
     "after": [Repeat(Retried.PENDING_REFUND)]},
]

# Which trigger a refund answer fires: (request, refund state, verdict).
REFUND_ANSWERS: dict[tuple[Request, RefundState, Reading], str] = {
    ("refund", R.REFUNDING, V.SUCCEEDED): "refund_succeeded",
    ("refund", R.REFUNDING, V.FAILED): "refund_failed",
    ("refund", R.REFUNDING, V.UNKNOWN): "refund_unknown",
    ("refund", R.REFUND_PENDING, V.SUCCEEDED): "refund_succeeded",
    ("refund", R.REFUND_PENDING, V.FAILED): "refund_failed",
    ("refund", R.REFUND_PENDING, V.UNKNOWN): "refund_unknown",
}
