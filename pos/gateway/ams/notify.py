"""The v1 API's notifications (notifyPayment, notifyRefund): verify, read, acknowledge.

Alipay POSTs to the `paymentNotifyUrl` of the pay request, signed like an
answer but with `request-time`: `POST <path>\\n<client-id>.<request-time>.<body>`
(seed 002 shows one). We verify over the exact bytes with Alipay's public key,
read it as a protocol-neutral result, and acknowledge with the documented
`{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}`,
signed with our key in the same header scheme. A notification that does not
verify is refused and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded, Unknown
from pos.gateway.ams.client import request_time
from pos.gateway.ams.codes import classified
from pos.gateway.ams.signing import header, parse_signature_header, sign, sign_content, signature_header, verify
from pos.gateway.ams.status import PAYMENT_STATUS, customer_amount, read_ids
from pos.gateway.fields import id_text, wire_money
from pos.gateway.signing import compact_json
from pos.gateway.strict_json import loads_strict

__all__ = ["AmsNotification", "read_notification", "acknowledgement", "notification_body_result",
           "refund_body_result", "refusal", "BODY_REFUSED"]


@dataclass(frozen=True)
class AmsNotification:
    kind: str                     # "payment" (notifyPayment) | "refund" (notifyRefund)
    request_id: str               # paymentRequestId / refundRequestId: our journaled idempotency key
    result: GatewayResult         # read like an inquiry's answer (query set for payments)
    body: dict[str, Any] = field(default_factory=dict)


def notification_body_result(body: Mapping[str, Any]) -> GatewayResult:
    """A notifyPayment body as a core result: S -> PAID, F -> CLOSED, anything else UNKNOWN."""
    info = body.get("result")
    if not isinstance(info, dict):
        return Unknown("notification lacks result")
    status, code = info.get("resultStatus"), str(info.get("resultCode") or "")
    if status == "S":
        paid = Succeeded(dict(body), code or "SUCCESS", query=PAYMENT_STATUS["SUCCESS"])
        return customer_amount(read_ids(paid, body), body)
    if status == "F":
        failed = Failed(code, str(info.get("resultMessage") or ""), "", query=QueryOutcome.CLOSED)
        return read_ids(classified(failed), body)
    return classified(Unknown("notification says U", code or None))


# Reasons that start with this are about a signed body we cannot read (HTTP 400);
# every other refusal is about who sent it (HTTP 401).
BODY_REFUSED = "signed body refused"


def refusal(reason: str) -> tuple[int, bytes]:
    """The HTTP status and JSON body answering a refused v1 notification (the reason in resultMessage)."""
    unreadable = reason.startswith(BODY_REFUSED)
    code = "PARAM_ILLEGAL" if unreadable else "INVALID_SIGNATURE"
    body = {"result": {"resultCode": code, "resultStatus": "F", "resultMessage": reason[:200]}}
    return (400 if unreadable else 401), compact_json(body).encode("utf-8")


def refund_body_result(body: Mapping[str, Any]) -> GatewayResult:
    """A notifyRefund body as a refund's answer: refundStatus SUCCESS -> S, FAIL -> F, anything else U.

    Antom's notifyRefund reference: `refundStatus` (SUCCESS | FAIL) says how the refund
    ended and `result` carries its code; a body whose `result.resultStatus` says
    otherwise than its `refundStatus` is read as unknown (it settles nothing). The
    `refundAmount` it names is `refund_amount` (the runner matches it with the
    journaled refund); `refundId` is `refund_gateway_id`.
    """
    info = body.get("result")
    if not isinstance(info, dict):
        return Unknown("notification lacks result")
    status, code = info.get("resultStatus"), str(info.get("resultCode") or "")
    refund_status = body.get("refundStatus")
    if refund_status is None:
        refund_status = {"S": "SUCCESS", "F": "FAIL"}.get(str(status))
    named = body.get("refundAmount")
    amount = wire_money(named)
    if named is not None and amount is None:
        # It names an amount we cannot read: not one we can match with the refund journaled.
        return classified(Unknown(f"notification names an unreadable refundAmount {named!r}"[:200], code or None))
    if refund_status == "SUCCESS" and status in ("S", None):
        return Succeeded(dict(body), code or "SUCCESS", refund_gateway_id=id_text(body.get("refundId")),
                         refund_amount=amount)
    if refund_status == "FAIL" and status in ("F", None):
        return classified(Failed(code or "REFUND_FAIL", str(info.get("resultMessage") or ""), "",
                                 refund_amount=amount))
    return classified(Unknown(f"notification says refundStatus {refund_status!r}, resultStatus {status!r}",
                              code or None))


def verified_body(path: str, raw: bytes, headers: Mapping[str, str], *, alipay_public_key: Any,
                  client_id: str) -> dict[str, Any] | str:
    """The JSON body of a v1 notification whose signature headers verify over the exact bytes
    received, or why it is refused (a sentence for the log). Never raises."""
    sender = header(headers, "client-id")
    moment = header(headers, "request-time")
    parsed = parse_signature_header(header(headers, "signature"))
    if not sender or not moment or parsed is None:
        return "no client-id, request-time or signature header"
    if sender != client_id:
        return f"client-id {sender!r} is not ours"
    if not verify(sign_content("POST", path, sender, moment, raw), parsed.signature, alipay_public_key):
        return "signature does not verify with Alipay's public key"
    try:
        body = loads_strict(raw)
    except ValueError as exc:
        return f"{BODY_REFUSED}: {exc}"
    if not isinstance(body, dict):
        return f"{BODY_REFUSED}: not a JSON object"
    return body


def read_notification(path: str, raw: bytes, headers: Mapping[str, str], *, alipay_public_key: Any,
                      client_id: str) -> AmsNotification | str:
    """The notification, or why it is refused (a sentence for the log). Never raises."""
    body = verified_body(path, raw, headers, alipay_public_key=alipay_public_key, client_id=client_id)
    if isinstance(body, str):
        return body
    kind = body.get("notifyType")
    if kind == "REFUND_RESULT" or (kind is None and path.endswith("/refund")):
        refund_id = body.get("refundRequestId")
        if not isinstance(refund_id, str) or not refund_id:
            return f"{BODY_REFUSED}: no refundRequestId"
        return AmsNotification("refund", refund_id, refund_body_result(body), body)
    request_id = body.get("paymentRequestId")
    if not isinstance(request_id, str) or not request_id:
        return f"{BODY_REFUSED}: no paymentRequestId"
    return AmsNotification("payment", request_id, notification_body_result(body), body)


def acknowledgement(path: str, client_id: str, private_key: Any, now: datetime | None = None,
                    *, key_version: int = 1) -> tuple[bytes, dict[str, str]]:
    """Our signed acknowledgement: body and headers (lower-case names, like Alipay's answers)."""
    raw = compact_json({"result": {"resultCode": "SUCCESS", "resultStatus": "S",
                                   "resultMessage": "success"}}).encode("utf-8")
    moment = request_time(now or datetime.now().astimezone())
    signature = sign(sign_content("POST", path, client_id, moment, raw), private_key)
    return raw, {"client-id": client_id, "response-time": moment,
                 "signature": signature_header(signature, key_version)}
