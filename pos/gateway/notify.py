"""The notify SPI: Alipay tells us a payment's result (`alipay.intl.acquiring.offline.notify.pay`, §10).

`handle_notify(raw, ...)` verifies Alipay's signature on the raw bytes, parses
the notification and builds our signed `response` reply (§10.2, §17.5). A
notification whose signature does not verify is rejected: the caller gets an
error reply to send and no Notification, so nothing may change. Delivery is
idempotent by merchantTransId (§10.2); applying it is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pos.core.money import AmountError, CurrencyError, Money
from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded
from pos.gateway.offline.answer import read_fields
from pos.gateway.offline.client import rfc3339
from pos.gateway.offline.codes import result_codes
from pos.gateway.signing import build_signed, split_signed, verify
from pos.gateway.strict_json import loads_strict

__all__ = ["NOTIFY_FUNCTION", "Notification", "NotifyOutcome", "handle_notify", "build_notify_reply", "paid_result",
           "failed_result"]

NOTIFY_FUNCTION = "alipay.intl.acquiring.offline.notify.pay"


@dataclass(frozen=True)
class Notification:
    merchant_trans_id: str
    acquirement_id: str | None
    result_status: str          # S / F / U of the payment
    result_code: str
    order_amount: Money | None
    pay_amount: Money | None
    payment_time: str | None
    req_msg_id: str
    body: dict[str, Any] = field(default_factory=dict)


def paid_result(note: Notification) -> GatewayResult:
    """A paid notification (result_status S) as the engine reads it: a payQuery answer saying PAID."""
    body = dict(note.body)
    return read_fields(Succeeded(body, note.result_code or "SUCCESS", query=QueryOutcome.PAID), body)


def failed_result(note: Notification) -> GatewayResult:
    """A failure notification (result_status F) as the engine reads it: closed, with its code.
    The engine takes it as a hint (it queries at once), never as the decline itself."""
    info = note.body.get("resultInfo")
    message = str(info.get("resultMsg") or "")[:256] if isinstance(info, dict) else ""
    return Failed(note.result_code or "PROCESS_FAIL", message, query=QueryOutcome.CLOSED)


@dataclass(frozen=True)
class NotifyOutcome:
    notification: Notification | None   # None: rejected, change nothing
    reply: bytes                        # the signed response envelope to send back (HTTP 200)
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.notification is not None


def build_notify_reply(request_head: dict[str, Any], private_key: Any, *, code: str = "SUCCESS",
                       message: str = "success", now: datetime | None = None) -> bytes:
    """Our signed answer (§10.2): echo version/function/clientId/reqMsgId, resultInfo for `code`."""
    row = result_codes().get(code)
    head = {
        "version": str(request_head.get("version") or "2.0.4"),
        "function": str(request_head.get("function") or NOTIFY_FUNCTION),
        "clientId": str(request_head.get("clientId") or ""),
        "respTime": rfc3339(now or datetime.now().astimezone()),
        "reqMsgId": str(request_head.get("reqMsgId") or ""),
        "reserve": "{}",
    }
    info = {"resultStatus": row.status if row else "F", "resultCodeId": row.code_id if row else "",
            "resultCode": code, "resultMsg": message}
    return build_signed("response", head, {"resultInfo": info}, private_key)


def _money(obj: Any) -> Money | None:
    if obj is None:
        return None
    try:
        return Money.from_wire(obj)
    except (AmountError, CurrencyError):
        return None


def handle_notify(raw: bytes, *, alipay_public_key: Any, merchant_private_key: Any,
                  clock: Callable[[], datetime] | None = None) -> NotifyOutcome:
    """Verify and parse one notify.pay request; never raises on bad input."""
    now = clock() if clock else None
    head: dict[str, Any] = {}

    def reject(code: str, why: str) -> NotifyOutcome:
        return NotifyOutcome(None, build_notify_reply(head, merchant_private_key, code=code, message=why,
                                                      now=now), why)

    try:
        inner, signature = split_signed(raw.decode("utf-8"), "request")
    except RecursionError:
        return reject("MSG_PARSE_ERROR", "not a signed request envelope: nested too deeply")
    except (UnicodeDecodeError, ValueError) as exc:
        return reject("MSG_PARSE_ERROR", f"not a signed request envelope: {exc}")
    try:
        envelope = loads_strict(inner)
    except ValueError as exc:
        return reject("MSG_PARSE_ERROR", f"request is not readable JSON: {exc}")
    if not isinstance(envelope, dict):
        return reject("MSG_PARSE_ERROR", "request is not a JSON object")
    if isinstance(envelope.get("head"), dict):
        head = envelope["head"]
    if not verify(inner, signature, alipay_public_key):
        return reject("INVALID_SIGNATURE", "signature does not verify with Alipay's public key")
    body = envelope.get("body")
    if head.get("function") != NOTIFY_FUNCTION:
        return reject("FUNCTION_NOT_MATCH", f"expected function {NOTIFY_FUNCTION}")
    if not isinstance(body, dict) or not isinstance(body.get("resultInfo"), dict):
        return reject("PARAM_MISSING", "body.resultInfo is required")
    mtid = body.get("merchantTransId")
    status = body["resultInfo"].get("resultStatus")
    if not isinstance(mtid, str) or not mtid or status not in ("S", "F", "U"):
        return reject("PARAM_MISSING", "merchantTransId and resultInfo.resultStatus are required")
    acq = body.get("acquirementId")
    notification = Notification(
        merchant_trans_id=mtid,
        acquirement_id=acq if isinstance(acq, str) and acq else None,
        result_status=status,
        result_code=str(body["resultInfo"].get("resultCode") or ""),
        order_amount=_money(body.get("orderAmount")),
        pay_amount=_money(body.get("payAmount")),
        payment_time=body.get("paymentTime") if isinstance(body.get("paymentTime"), str) else None,
        req_msg_id=str(head.get("reqMsgId") or ""),
        body=body,
    )
    return NotifyOutcome(notification, build_notify_reply(head, merchant_private_key, now=now))
