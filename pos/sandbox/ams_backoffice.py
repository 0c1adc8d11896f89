"""The v1 API's back office in the sandbox: customs declarations and merchant registration.

Called by `AmsSandbox` (ams.py) for the back-office paths after the request's
signature has verified; answers are (resultCode, body, message) that
AmsSandbox signs like every other answer. What the sandbox decides, by a
field of the request (README "Customs declarations" / "Merchant registration"):

- declare: the paymentId must be a SUCCESS payment of the caller (else
  ORDER_NOT_EXIST); declarationAmount must be CNY; customs.customsCode and
  both merchantCustomsInfo fields are required. The declaration is accepted
  (S). Its declarationRequestStatus (inquiryDeclarationRequests) is
  SUCCESSFUL, or FAILED with customsDeclarationResultCode CUSTOMS_REJECTED
  when merchantCustomsCode starts with `REJECT`. A merchantCustomsCode
  starting with `SLOW` holds the FIRST answer for that declarationRequestId
  `slow_response` seconds (the declaration is recorded: a client that timed
  out and repeats gets the same declaration).
- The same declarationRequestId again: the same answer; with other fields:
  REPEAT_REQ_INCONSISTENT.
- registration: merchantInfo.referenceMerchantId, productCodes
  [IN_STORE_PAYMENT] and storeInfo.referenceStoreId are required (PARAM_ILLEGAL
  otherwise); a referenceMerchantId registered under another
  registrationRequestId: REPEAT_REGISTRATION. The answer is S, status
  PROCESSING; the status then becomes FAILED when storeInfo.referenceStoreId
  starts with `REJECT`, SUCCESSFUL otherwise, and notifyRegistrationStatus is
  POSTed to registrationNotifyURL (127.0.0.1 only) until acknowledged with
  the merchant's signed SUCCESS. A referenceStoreId starting with `SLOW`
  holds the first answer `slow_response` seconds (the registration is kept).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pos.core.money import AmountError, CurrencyError, Money
from pos.gateway.ams.client import request_time
from pos.sandbox.ams_notice import deliver_notice
from pos.sandbox.ledger import Ledger

__all__ = ["BACKOFFICE_OPERATIONS", "BackOfficeSandbox", "Outcome"]

log = logging.getLogger("pos.sandbox")

BACKOFFICE_OPERATIONS = frozenset({"declare", "inquiryDeclarationRequests", "registration",
                                   "inquiryRegistrationStatus", "inquiryRegistrationInfo"})

# (resultCode, answer body without `result`, resultMessage, seconds to hold the answer)
Outcome = tuple[str, dict[str, Any], str, float]


class _Bad(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _text(obj: Any, name: str, max_len: int = 64) -> str:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise _Bad("PARAM_ILLEGAL", f"{name} is required: text of 1 to {max_len} characters")
    return value


def _flag(value: Any) -> bool:
    if value in (True, "true"):
        return True
    if value in (False, "false"):
        return False
    raise _Bad("PARAM_ILLEGAL", "splitOrder is required: true or false")


@dataclass
class _Declaration:
    merchant: str
    request: dict[str, Any]
    answer: dict[str, Any]
    status: str
    result_code: str
    result_desc: str
    at: datetime


@dataclass
class _Registration:
    merchant: str
    request: dict[str, Any]
    status: str
    at: datetime
    notify_url: str = ""
    attempts: int = 0
    acknowledged: bool = False
    next_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"registrationStatus": self.status}
        if self.status == "FAILED":
            out["registrationResultCode"] = "REGISTRATION_REJECTED"
            out["registrationResultMessage"] = "storeInfo.referenceStoreId starts with REJECT (sandbox rule)"
        return out


class BackOfficeSandbox:
    """Declarations and registrations kept in memory, next to the payment ledger."""

    def __init__(self, ledger: Ledger, *, alipay_private_key: Any, merchant_public_key: Any,
                 now: Callable[[], datetime], key_version: int = 1) -> None:
        self.ledger = ledger
        self._alipay_key = alipay_private_key
        self._merchant_key = merchant_public_key
        self._now = now
        self._key_version = key_version
        self._lock = threading.Lock()
        self._declarations: dict[tuple[str, str], _Declaration] = {}
        self._registrations: dict[tuple[str, str], _Registration] = {}
        self._closed = threading.Event()
        self._sender: threading.Thread | None = None

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "declarations": [{"declarationRequestId": rid, "paymentId": d.request.get("paymentId"),
                                  "declarationRequestStatus": d.status}
                                 for (_, rid), d in self._declarations.items()],
                "registrations": [{"registrationRequestId": rid, "registrationStatus": r.status,
                                   "notifications": r.attempts, "acknowledged": r.acknowledged}
                                  for (_, rid), r in self._registrations.items()],
            }

    def close(self) -> None:
        self._closed.set()
        if self._sender is not None:
            self._sender.join(timeout=5)

    def handle(self, operation: str, merchant: str, body: dict[str, Any], slow: float) -> Outcome:
        try:
            if operation == "declare":
                return self._declare(merchant, body, slow)
            if operation == "inquiryDeclarationRequests":
                return self._inquiry_declarations(merchant, body)
            if operation == "registration":
                return self._register(merchant, body, slow)
            if operation == "inquiryRegistrationStatus":
                return self._inquiry_registration(merchant, body, info=False)
            return self._inquiry_registration(merchant, body, info=True)
        except _Bad as bad:
            return bad.code, {}, bad.message, 0.0

    # -- customs -------------------------------------------------------------------

    def _declare(self, merchant: str, body: dict[str, Any], slow: float) -> Outcome:
        request_id = _text(body, "declarationRequestId", 32)
        payment_id = _text(body, "paymentId")
        try:
            amount = Money.from_wire(body.get("declarationAmount"))
        except (AmountError, CurrencyError) as exc:
            raise _Bad("PARAM_ILLEGAL", f"declarationAmount: {exc}") from None
        if amount.currency != "CNY" or amount.minor <= 0:
            raise _Bad("PARAM_ILLEGAL", "declarationAmount must be a CNY amount above zero")
        customs = body.get("customs")
        _text(customs, "customsCode", 32)
        info = body.get("merchantCustomsInfo")
        merchant_code = _text(info, "merchantCustomsCode", 32)
        _text(info, "merchantCustomsName", 256)
        split = _flag(body.get("splitOrder"))
        if split:
            _text(body, "suborderId")
        with self._lock:
            known = self._declarations.get((merchant, request_id))
            if known is not None:
                if known.request != body:
                    raise _Bad("REPEAT_REQ_INCONSISTENT", "declarationRequestId already used with other fields")
                return "SUCCESS", dict(known.answer), "", 0.0
        payment = next((p for p in self.ledger.payments(self._now())
                        if p.merchant_id == merchant and p.acquirement_id == payment_id), None)
        if payment is None or payment.status != "SUCCESS":
            raise _Bad("ORDER_NOT_EXIST", "no successful payment with this paymentId")
        if payment.amount.currency == "CNY" and amount.minor > payment.amount.minor:
            raise _Bad("PARAM_ILLEGAL", "declarationAmount is above the payment amount")
        n = len(self._declarations) + 1
        answer = {"customsPaymentId": f"CP{payment_id[-12:]}{n:04d}", "customsOrderId": payment_id,
                  "customsProviderRegistrationId": "31222699S7"}
        rejected = merchant_code.upper().startswith("REJECT")
        record = _Declaration(merchant, dict(body), answer, "FAILED" if rejected else "SUCCESSFUL",
                              "CUSTOMS_REJECTED" if rejected else "", "customs rejected the declaration (sandbox rule)"
                              if rejected else "", self._now())
        with self._lock:
            self._declarations[(merchant, request_id)] = record
        hold = slow if merchant_code.upper().startswith("SLOW") else 0.0
        return "SUCCESS", dict(answer), "", hold

    def _inquiry_declarations(self, merchant: str, body: dict[str, Any]) -> Outcome:
        ids = body.get("declarationRequestIds")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 10 or not all(isinstance(x, str) for x in ids):
            raise _Bad("PARAM_ILLEGAL", "declarationRequestIds: 1 to 10 ids")
        records, missing = [], []
        with self._lock:
            for rid in ids:
                d = self._declarations.get((merchant, rid))
                if d is None:
                    missing.append(rid)
                    continue
                rec = {"declarationRequestId": rid, "declarationRequestStatus": d.status,
                       "customs": d.request.get("customs"), "merchantCustomsInfo": d.request.get("merchantCustomsInfo"),
                       "declarationAmount": d.request.get("declarationAmount"),
                       "splitOrder": d.request.get("splitOrder"), "lastModifiedTime": request_time(d.at),
                       **d.answer}
                if d.result_code:
                    rec["customsDeclarationResultCode"] = d.result_code
                    rec["customsDeclarationResultDesc"] = d.result_desc
                    rec["customsDeclarationReturnTime"] = request_time(d.at)
                records.append(rec)
        out: dict[str, Any] = {"declarationRecords": records}
        if missing:
            out["declarationRequestsNotFound"] = missing
        return "SUCCESS", out, "", 0.0

    # -- registration ----------------------------------------------------------------

    def _register(self, merchant: str, body: dict[str, Any], slow: float) -> Outcome:
        request_id = _text(body, "registrationRequestId")
        info = body.get("merchantInfo")
        if not isinstance(info, dict):
            raise _Bad("PARAM_ILLEGAL", "merchantInfo is required")
        reference = _text(info, "referenceMerchantId")
        codes = body.get("productCodes")
        if not isinstance(codes, list) or "IN_STORE_PAYMENT" not in codes:
            raise _Bad("PARAM_ILLEGAL", "productCodes must list IN_STORE_PAYMENT")
        store = body.get("storeInfo")
        if not isinstance(store, dict):
            raise _Bad("PARAM_ILLEGAL", "storeInfo is required for IN_STORE_PAYMENT")
        store_id = _text(store, "referenceStoreId", 32)
        notify_url = body.get("registrationNotifyURL")
        comparable = {k: v for k, v in body.items() if k != "registrationNotifyURL"}
        with self._lock:
            known = self._registrations.get((merchant, request_id))
            if known is not None:
                if known.request != comparable:
                    raise _Bad("REPEAT_REQ_INCONSISTENT", "registrationRequestId already used with other fields")
                return "SUCCESS", {}, "", 0.0
            for (mid, _), r in self._registrations.items():
                if mid == merchant and r.request["merchantInfo"].get("referenceMerchantId") == reference:
                    raise _Bad("REPEAT_REGISTRATION", "this referenceMerchantId is registered already")
            status = "FAILED" if store_id.upper().startswith("REJECT") else "SUCCESSFUL"
            reg = _Registration(merchant, comparable, status, self._now(),
                                notify_url if isinstance(notify_url, str) else "")
            self._registrations[(merchant, request_id)] = reg
            if reg.notify_url and _loopback(reg.notify_url) and self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="sandbox-registration-notify",
                                                daemon=True)
                self._sender.start()
        hold = slow if store_id.upper().startswith("SLOW") else 0.0
        if isinstance(body.get("passThroughInfo"), str):
            return "SUCCESS", {"passThroughInfo": body["passThroughInfo"]}, "", hold
        return "SUCCESS", {}, "", hold

    def _find(self, merchant: str, body: dict[str, Any]) -> tuple[str, _Registration] | None:
        request_id = body.get("registrationRequestId")
        reference = body.get("referenceMerchantId")
        if not request_id and not reference:
            raise _Bad("PARAM_ILLEGAL", "registrationRequestId or referenceMerchantId is required")
        with self._lock:
            for (mid, rid), r in self._registrations.items():
                if mid == merchant and (rid == request_id if request_id
                                        else r.request["merchantInfo"].get("referenceMerchantId") == reference):
                    return rid, r
        return None

    def _inquiry_registration(self, merchant: str, body: dict[str, Any], *, info: bool) -> Outcome:
        found = self._find(merchant, body)
        if found is None:
            raise _Bad("ORDER_NOT_EXIST", "no such registration")
        rid, reg = found
        if info:
            return "SUCCESS", {"merchantInfo": reg.request.get("merchantInfo"),
                               "productCodes": reg.request.get("productCodes"),
                               "storeInfo": reg.request.get("storeInfo")}, "", 0.0
        return "SUCCESS", {"registrationRequestId": rid, "registrationResult": reg.result()}, "", 0.0

    # -- notifyRegistrationStatus -----------------------------------------------------

    def _send_loop(self) -> None:
        while not self._closed.wait(0.2):
            with self._lock:
                due = [(rid, r) for (_, rid), r in self._registrations.items()
                       if r.notify_url and _loopback(r.notify_url) and not r.acknowledged
                       and r.next_at <= time.monotonic()]
            for rid, reg in due:
                acknowledged = self._send(rid, reg)
                with self._lock:
                    reg.attempts += 1
                    reg.acknowledged = acknowledged
                    reg.next_at = time.monotonic() + min(0.5 * 2 ** reg.attempts, 30.0)

    def notification(self, request_id: str, reg: _Registration) -> dict[str, Any]:
        return {"notifyType": "REGISTRATION_STATUS", "registrationRequestId": request_id,
                "referenceMerchantId": reg.request["merchantInfo"].get("referenceMerchantId"),
                "referenceStoreId": reg.request["storeInfo"].get("referenceStoreId"),
                "registrationResult": reg.result()}

    def _send(self, request_id: str, reg: _Registration) -> bool:
        return deliver_notice(reg.notify_url, reg.merchant, self.notification(request_id, reg), self._now(),
                              alipay_key=self._alipay_key, key_version=self._key_version,
                              merchant_key=self._merchant_key)


def _loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")
