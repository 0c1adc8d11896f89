"""The v1 API's back-office calls: customs declarations and merchant registration.

Same signing and transport as the payments (`AmsGateway.call`): every answer
is believed only when its signature verifies, it names our client id and it
echoes our request id when it names one. Field names follow Antom's published
reference (docs.antom.com/ac/ams/declare, inquirydeclare, registration, irs,
nrs); README's "Customs declarations" and "Merchant registration" sections
say which fields are confirmed there and which are our reading.

- declare: declarationRequestId (idempotency, at most 32 characters), paymentId,
  declarationAmount {currency CNY, value}, customs {customsCode, region CN},
  merchantCustomsInfo {merchantCustomsCode, merchantCustomsName}, splitOrder,
  suborderId (when split). Answer: customsPaymentId, customsOrderId, ...
- inquiryDeclarationRequests: declarationRequestIds (up to 10). Answer:
  declarationRecords [{declarationRequestId, declarationRequestStatus, ...}],
  declarationRequestsNotFound.
- registration: registrationRequestId (idempotency), registrationNotifyURL,
  merchantInfo, productCodes [IN_STORE_PAYMENT], storeInfo.
- inquiryRegistrationStatus / inquiryRegistrationInfo: by registrationRequestId.
  The status answer carries registrationResult {registrationStatus, ...}.
- notifyRegistrationStatus (Alipay POSTs it to registrationNotifyURL): signed
  like notifyPayment; registrationRequestId, registrationResult.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pos.core.money import Money
from pos.core.outcomes import Failed, GatewayResult, Succeeded
from pos.gateway.ams.client import AmsGateway
from pos.gateway.ams.notify import BODY_REFUSED, verified_body

__all__ = ["REGISTRATION_NOTIFY_PATH", "DeclarationRecord", "BackOffice", "RegistrationNotice",
           "declaration_records", "registration_status_of", "read_registration_notification"]

# Where our notification listener takes notifyRegistrationStatus ([notify] listen / public_url).
REGISTRATION_NOTIFY_PATH = "/notify/ams/registration"

# Registration statuses the API names (registrationResult.registrationStatus).
REGISTRATION_STATUSES = ("PROCESSING", "SUCCESSFUL", "FAILED")


@dataclass(frozen=True)
class DeclarationRecord:
    """One record of an inquiryDeclarationRequests answer."""

    declaration_request_id: str
    status: str                 # declarationRequestStatus
    customs_payment_id: str
    customs_order_id: str
    result_code: str            # customsDeclarationResultCode
    result_desc: str            # customsDeclarationResultDesc


def declaration_records(result: GatewayResult) -> tuple[list[DeclarationRecord], list[str]]:
    """The records and the not-found ids of a Succeeded inquiryDeclarationRequests answer."""
    if not isinstance(result, Succeeded):
        return [], []
    records = []
    for raw in result.data.get("declarationRecords") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("declarationRequestId"), str):
            continue
        records.append(DeclarationRecord(
            raw["declarationRequestId"], str(raw.get("declarationRequestStatus") or ""),
            str(raw.get("customsPaymentId") or ""), str(raw.get("customsOrderId") or ""),
            str(raw.get("customsDeclarationResultCode") or ""), str(raw.get("customsDeclarationResultDesc") or "")))
    missing = [x for x in result.data.get("declarationRequestsNotFound") or [] if isinstance(x, str)]
    return records, missing


def registration_status_of(body: Mapping[str, Any]) -> tuple[str, str, str]:
    """(registrationStatus, resultCode, resultMessage) of a registrationResult in an answer or notification."""
    info = body.get("registrationResult")
    if not isinstance(info, dict):
        return "", "", ""
    status = str(info.get("registrationStatus") or "")
    return (status if status in REGISTRATION_STATUSES else "", str(info.get("registrationResultCode") or ""),
            str(info.get("registrationResultMessage") or info.get("failReason") or ""))


class BackOffice:
    """The back-office calls over one AmsGateway (its keys, client id, timeouts, transport)."""

    def __init__(self, gateway: AmsGateway, *, registration_notify_url: str = "") -> None:
        self._gw = gateway
        self._notify_url = registration_notify_url

    def declare(self, *, declaration_request_id: str, payment_id: str, amount: Money, customs_code: str,
                merchant_customs_code: str, merchant_customs_name: str, split_order: bool,
                suborder_id: str = "") -> GatewayResult:
        body: dict[str, Any] = {
            "declarationRequestId": declaration_request_id,
            "paymentId": payment_id,
            "declarationAmount": amount.wire(),
            "customs": {"customsCode": customs_code, "region": "CN"},
            "merchantCustomsInfo": {"merchantCustomsCode": merchant_customs_code,
                                    "merchantCustomsName": merchant_customs_name},
            "splitOrder": split_order,
        }
        if split_order:
            body["suborderId"] = suborder_id or declaration_request_id
        return self._gw.call("declare", body, declaration_request_id)

    def inquiry_declarations(self, declaration_request_ids: list[str]) -> GatewayResult:
        if not 1 <= len(declaration_request_ids) <= 10:
            return Failed("PARAM_ILLEGAL", "not sent: 1 to 10 declarationRequestIds per inquiry")
        return self._gw.call("inquiryDeclarationRequests", {"declarationRequestIds": declaration_request_ids}, "")

    def register(self, body: dict[str, Any]) -> GatewayResult:
        """registration: `body` is the journaled request (with its registrationRequestId)."""
        wire = dict(body)
        if self._notify_url:
            wire["registrationNotifyURL"] = self._notify_url
        return self._gw.call("registration", wire, str(body["registrationRequestId"]))

    def inquiry_status(self, registration_request_id: str) -> GatewayResult:
        return self._gw.call("inquiryRegistrationStatus", {"registrationRequestId": registration_request_id},
                             registration_request_id)

    def inquiry_info(self, registration_request_id: str) -> GatewayResult:
        return self._gw.call("inquiryRegistrationInfo", {"registrationRequestId": registration_request_id}, "")

    def close(self) -> None:
        self._gw.close()


@dataclass(frozen=True)
class RegistrationNotice:
    registration_request_id: str
    status: str            # PROCESSING | SUCCESSFUL | FAILED
    result_code: str
    result_message: str
    body: dict[str, Any]


def read_registration_notification(path: str, raw: bytes, headers: Mapping[str, str], *, alipay_public_key: Any,
                                   client_id: str) -> RegistrationNotice | str:
    """A verified notifyRegistrationStatus, or why it is refused (a sentence for the log). Never raises."""
    body = verified_body(path, raw, headers, alipay_public_key=alipay_public_key, client_id=client_id)
    if isinstance(body, str):
        return body
    request_id = body.get("registrationRequestId")
    if not isinstance(request_id, str) or not request_id:
        return f"{BODY_REFUSED}: no registrationRequestId"
    status, code, message = registration_status_of(body)
    if not status:
        return f"{BODY_REFUSED}: no registrationResult.registrationStatus"
    return RegistrationNotice(request_id, status, code, message, body)


