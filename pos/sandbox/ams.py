"""The v1 payments API (Antom / Alipay+, "ams") in the sandbox: routing, header signatures, answers.

`AmsSandbox.handle(path, raw, headers)` is the whole protocol and is
synchronous; the HTTP host (server.py) only moves bytes and headers. It keeps
the same ledger as the offline protocol (ledger.py: idempotency, single-use
codes, cancel windows, refund sums, the scripted test-code scenarios) and
translates between the ledger's words and the v1 API's:

- the ledger's merchant is the caller's `client-id`; merchantTransId is the
  `paymentRequestId`, merchantRefundId the `refundRequestId`, acquirementId
  the `paymentId`;
- result codes are the v1 table's (pos/data/ams_result_codes.csv); the few
  the offline protocol names differently are mapped in `_CODES`.

The order code (merchant-presented QR; paymentFactor.inStorePaymentScenario
OrderCode) answers PAYMENT_IN_PROCESS with orderCodeForm.codeDetails naming
the sandbox's own wallet "cashier page" (`cashier_page`): a plain HTML page
where a tester presses Pay (the payment succeeds and the signed notifyPayment
goes out, retried until acknowledged) or Cancel (the payment closes unpaid, and
a signed F notifyPayment goes out the same way, as it does when the code expires).

Every answer is signed (`signature`, `response-time`, `client-id` headers, in
lower case) over `POST <path>\\n<client-id>.<response-time>.<body>`; a request
whose signature does not verify with the merchant's public key gets a signed
F INVALID_SIGNATURE and changes nothing.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pos.core.money import CurrencyError, validate_cn_currencies
from pos.gateway.ams.client import ENDPOINTS, ORDER_CODE, PAYMENT_CODE, PRODUCT_CODE, request_time
from pos.gateway.ams.codes import result_codes
from pos.gateway.ams.signing import header, parse_signature_header, sign, sign_content, signature_header, verify
from pos.gateway.signing import compact_json
from pos.gateway.store import read_store, store_fields
from pos.sandbox.ams_backoffice import BACKOFFICE_OPERATIONS, BackOfficeSandbox
from pos.sandbox.ams_notice import deliver_notice
from pos.sandbox.fields import Reject, RequestFields
from pos.sandbox.ledger import ORDER_CODE_SCENARIO, Ledger, Payment, Refund, Reply, as_datetime
from pos.sandbox.protocol import Answer
from pos.sandbox.scenarios import SandboxOptions, scenario_for

__all__ = ["AmsSandbox", "route_endpoint", "PREFIXES"]

log = logging.getLogger("pos.sandbox")

Clock = Callable[[], "datetime | float"]

PREFIXES = ("/ams/sandbox/api", "/ams/api")
_OPERATIONS = {path: op for op, path in ENDPOINTS.items()}

# The ledger speaks the offline protocol's code names; where the v1 API says it otherwise.
_CODES = {"SYSTEM_ERROR": "UNKNOWN_EXCEPTION", "AUTH_CODE_ILLEGAL": "INVALID_CODE",
          "PARAM_MISSING": "PARAM_ILLEGAL", "TARGET_NOT_FOUND": "ORDER_NOT_EXIST"}


def route_endpoint(path: str) -> str | None:
    """The operation a URL path names (under /ams/api or /ams/sandbox/api), or None."""
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            return _OPERATIONS.get(path[len(prefix):])
    return None


# The v1 API calls a missing field PARAM_ILLEGAL too.
_FIELDS = RequestFields(missing_code="PARAM_ILLEGAL")
_Reject, _text, _object, _money = Reject, _FIELDS.text, _FIELDS.object, _FIELDS.money


def _status_of(code: str) -> str:
    row = result_codes().get(code)
    return row.status if row else "F"


@dataclass
class _Notice:
    """A notification the sandbox owes (notifyPayment or notifyRefund): sent until acknowledged."""

    merchant: str
    request_id: str          # paymentRequestId, or refundRequestId for a refund
    url: str
    kind: str = "payment"    # "payment" | "refund"
    attempts: int = 0
    acknowledged: bool = False
    next_at: float = 0.0     # time.monotonic() of the next attempt

    def as_json(self) -> dict[str, Any]:
        name = "refundRequestId" if self.kind == "refund" else "paymentRequestId"
        return {name: self.request_id, "kind": self.kind, "url": self.url, "attempts": self.attempts,
                "acknowledged": self.acknowledged}


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<meta name='viewport' content='width=device-width'></head>"
            f"<body style='font-family:sans-serif;max-width:24em;margin:2em auto'>{body}</body></html>")


def _china_extra(extend: Any) -> dict[str, str]:
    """order.extendInfo's chinaExtraTransInfo (seed 002), checked: a JSON string holding
    {businessType, goodsInfo "name^qty|...", totalQuantity = the sum of the quantities}."""
    try:
        info = json.loads(extend)["chinaExtraTransInfo"] if isinstance(extend, str) else None
    except (ValueError, KeyError, TypeError):
        info = None
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) and info[k]
                                             for k in ("businessType", "goodsInfo", "totalQuantity")):
        raise _Reject("PARAM_ILLEGAL", "order.extendInfo must be a JSON string with chinaExtraTransInfo "
                                       "{businessType, goodsInfo, totalQuantity}")
    try:
        total = sum(int(part.rpartition("^")[2]) for part in info["goodsInfo"].split("|"))
    except ValueError:
        raise _Reject("PARAM_ILLEGAL", "chinaExtraTransInfo.goodsInfo must be name^quantity|...") from None
    if str(total) != info["totalQuantity"]:
        raise _Reject("PARAM_ILLEGAL", f"chinaExtraTransInfo.totalQuantity {info['totalQuantity']} is not the "
                                       f"sum of the goods' quantities ({total})")
    return {k: info[k] for k in ("businessType", "goodsInfo", "totalQuantity")}


def _failure_message(payment: Payment) -> str:
    """Why a closed payment failed, in words (inquiryPayment's paymentResultMessage, and the
    failure notification's resultMessage)."""
    if payment.expired and payment.expires_at:
        return f"the order code expired at {request_time(payment.expires_at)} unpaid"
    if payment.scenario == ORDER_CODE_SCENARIO:
        return "the customer cancelled in the wallet"
    return f"payment failed: {payment.decline}"


def _loopback_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")


class AmsSandbox:
    """The v1 API over the sandbox's ledger, without HTTP (a `SandboxProtocol`)."""

    def __init__(self, ledger: Ledger, *, merchant_public_key: Any, alipay_private_key: Any,
                 clock: Clock | None = None, key_version: int = 1) -> None:
        self.ledger = ledger
        self.options: SandboxOptions = ledger.options
        self._merchant_key = merchant_public_key
        self._alipay_key = alipay_private_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self._key_version = key_version
        self.max_body = self.options.max_body
        # Where the cashier pages are served (the HTTP host sets it once it is bound).
        self.public_url = "http://127.0.0.1"
        self._notices: dict[tuple[str, str, str], _Notice] = {}   # (kind, merchant, request id)
        self._notice_lock = threading.Lock()
        self._closed = threading.Event()
        self._sender: threading.Thread | None = None
        # customs declarations and merchant registration (ams_backoffice.py)
        self.backoffice = BackOfficeSandbox(ledger, alipay_private_key=alipay_private_key,
                                            merchant_public_key=merchant_public_key, now=self.now,
                                            key_version=key_version)

    def now(self) -> datetime:
        return as_datetime(self._clock())

    def ledger_json(self) -> dict[str, Any]:
        with self._notice_lock:
            notices = [n.as_json() for n in self._notices.values()]
        return {**self.ledger.to_json(self.now()), "notifications": notices, **self.backoffice.to_json()}

    def close(self) -> None:
        """Stop sending notifications (the server stops)."""
        self._closed.set()
        self.backoffice.close()
        if self._sender is not None:
            self._sender.join(timeout=5)

    # -- notifications (notifyPayment) --------------------------------------------------

    def _owe_notice(self, merchant: str, request_id: str, url: str, kind: str = "payment") -> None:
        if not _loopback_url(url):   # the sandbox posts only to this machine
            log.info("sandbox: %s notify URL %s is not on 127.0.0.1: no notification sent", kind, url)
            return
        with self._notice_lock:
            self._notices.setdefault((kind, merchant, request_id), _Notice(merchant, request_id, url, kind))
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="sandbox-notify", daemon=True)
                self._sender.start()

    def _send_loop(self) -> None:
        while not self._closed.wait(0.2):
            with self._notice_lock:
                due = [n for n in self._notices.values() if not n.acknowledged and n.next_at <= time.monotonic()]
            for notice in due:
                if notice.kind == "refund":
                    refund = self.ledger.refund_of(notice.merchant, notice.request_id)
                    if refund is None or not refund.settled(self.now()):
                        continue
                    acknowledged = self._send_refund_notice(notice, refund)
                else:
                    payment = self.ledger.payment(notice.request_id, self.now(), notice.merchant)
                    if payment is None or (payment.status != "SUCCESS" and not payment.decline):
                        continue   # not final yet, or cancelled by the merchant itself
                    acknowledged = self._send_notice(notice, payment)
                with self._notice_lock:
                    notice.attempts += 1
                    notice.acknowledged = acknowledged
                    notice.next_at = time.monotonic() + min(0.5 * 2 ** notice.attempts, 30.0)

    def _send_notice(self, notice: _Notice, payment: Payment) -> bool:
        """notifyPayment once the payment is final: S SUCCESS when it succeeded; F with the
        failure's code (ORDER_IS_CLOSED for an expired or wallet-cancelled order code) when it
        closed or failed (Antom's online notifyPayment reference: "a final state of success or
        failure"; for in-store payments a failure notification is inferred)."""
        if payment.status == "SUCCESS":
            result = {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}
        else:
            code = _CODES.get(payment.decline or "", payment.decline or "PROCESS_FAIL")
            result = {"resultCode": code, "resultStatus": "F", "resultMessage": _failure_message(payment)}
        body = {"notifyType": "PAYMENT_RESULT", "result": result,
                "paymentRequestId": payment.merchant_trans_id, "paymentId": payment.acquirement_id,
                "paymentAmount": payment.amount.wire(), "paymentCreateTime": request_time(payment.created_at)}
        if payment.paid_at is not None:
            body["paymentTime"] = request_time(payment.paid_at)
        return deliver_notice(notice.url, notice.merchant, body, self.now(), alipay_key=self._alipay_key,
                              key_version=self._key_version, merchant_key=self._merchant_key)

    def _send_refund_notice(self, notice: _Notice, refund: Refund) -> bool:
        """notifyRefund (Antom's reference): REFUND_RESULT with refundStatus, once the refund succeeded."""
        body = {"notifyType": "REFUND_RESULT",
                "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."},
                "refundStatus": "SUCCESS", "refundRequestId": refund.merchant_refund_id,
                "refundId": refund.refund_id, "paymentId": refund.acquirement_id,
                "refundAmount": refund.amount.wire(), "refundTime": request_time(refund.refunded_at)}
        return deliver_notice(notice.url, notice.merchant, body, self.now(), alipay_key=self._alipay_key,
                              key_version=self._key_version, merchant_key=self._merchant_key)

    # -- one request ---------------------------------------------------------------

    def handle(self, path: str, raw: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        headers = headers or {}
        client_id = header(headers, "client-id") or ""
        hold, corrupt = 0.0, False
        try:
            body = self._checked(path, raw, headers, client_id)
            operation = route_endpoint(path) or ""
            answer, hold, corrupt = self._dispatch(operation, client_id, body)
        except _Reject as rej:
            answer = self._result(rej.code, {}, rej.message)
        except Exception:
            log.exception("sandbox: internal error on %s", path)
            answer = self._result("UNKNOWN_EXCEPTION", {}, "sandbox internal error")
        return self._signed(path, client_id, answer, hold, corrupt)

    def _checked(self, path: str, raw: bytes, headers: Mapping[str, str], client_id: str) -> dict[str, Any]:
        if route_endpoint(path) is None:
            raise _Reject("NO_INTERFACE_DEF", f"no API at {path}")
        if len(raw) > self.options.max_body:
            raise _Reject("PARAM_ILLEGAL", f"request larger than {self.options.max_body} bytes")
        moment = header(headers, "request-time")
        parsed = parse_signature_header(header(headers, "signature"))
        if not client_id or not moment:
            raise _Reject("PARAM_ILLEGAL", "headers client-id and request-time are required")
        if parsed is None:
            raise _Reject("INVALID_SIGNATURE", "header Signature: algorithm=RSA256,keyVersion=N,signature=... "
                                               "is required")
        if parsed.algorithm != "RSA256":
            raise _Reject("INVALID_SIGNATURE", f"algorithm {parsed.algorithm!r} is not RSA256")
        if not verify(sign_content("POST", path, client_id, moment, raw), parsed.signature, self._merchant_key):
            raise _Reject("INVALID_SIGNATURE", "signature does not verify with the merchant's public key")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _Reject("MSG_PARSE_ERROR", "body is not JSON") from None
        if not isinstance(body, dict):
            raise _Reject("MSG_PARSE_ERROR", "body is not a JSON object")
        return body

    # -- the APIs ------------------------------------------------------------------

    def _dispatch(self, operation: str, merchant: str, body: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        now = self.now()
        if operation in BACKOFFICE_OPERATIONS:
            code, out, message, hold = self.backoffice.handle(operation, merchant, body, self.options.slow_response)
            return self._result(code, out, message), hold, False
        if operation == "pay":
            return self._pay(merchant, body, now)
        if operation in ("inquiryPayment", "cancel"):
            payment_id = _text(body, "paymentId", required=False)
            request_id = _text(body, "paymentRequestId", required=False)
            if not payment_id and not request_id:
                raise _Reject("PARAM_ILLEGAL", "paymentRequestId or paymentId is required")
            call = self.ledger.query if operation == "inquiryPayment" else self.ledger.cancel
            reply = call(merchant, now, merchant_trans_id=request_id or None, acquirement_id=payment_id or None)
            return self._payment_answer(reply, merchant, now, inquiry=operation == "inquiryPayment"), 0.0, False
        if operation == "refund":
            refund_id = _text(body, "refundRequestId")
            payment_id = _text(body, "paymentId")
            amount = _money(body.get("refundAmount"), "refundAmount")
            reason = _text(body, "refundReason", required=False, max_len=256)
            reply = self.ledger.refund(merchant, payment_id, refund_id, amount, reason, now)
            notify_url = body.get("refundNotifyUrl")
            if isinstance(notify_url, str) and notify_url and reply.status != "F":
                self._owe_notice(merchant, refund_id, notify_url, "refund")
            return self._refund_answer(reply), 0.0, False
        if operation == "inquiryRefund":
            return self._inquiry_refund(merchant, body), 0.0, False
        return self._consult(body), 0.0, False

    def _pay(self, merchant: str, body: dict[str, Any], now: datetime) -> tuple[dict[str, Any], float, bool]:
        if body.get("productCode") != PRODUCT_CODE:
            raise _Reject("PARAM_ILLEGAL", f"productCode must be {PRODUCT_CODE}")
        request_id = _text(body, "paymentRequestId")
        amount = _money(body.get("paymentAmount"), "paymentAmount")
        order = _object(body, "order")
        if "orderAmount" in order and _money(order.get("orderAmount"), "order.orderAmount").currency != \
                amount.currency:
            raise _Reject("PARAM_ILLEGAL", "order.orderAmount and paymentAmount must have one currency")
        title = _text(order, "orderDescription", required=False, max_len=256)
        factor = _object(body, "paymentFactor")
        scenario_name = factor.get("inStorePaymentScenario")
        if scenario_name not in (PAYMENT_CODE, ORDER_CODE):
            raise _Reject("PARAM_ILLEGAL", f"paymentFactor.inStorePaymentScenario must be {PAYMENT_CODE} or "
                                           f"{ORDER_CODE}")
        method = _object(body, "paymentMethod")
        if method.get("paymentMethodType") != "CONNECT_WALLET":
            raise _Reject("PARAM_ILLEGAL", "paymentMethod.paymentMethodType must be CONNECT_WALLET")
        code = _text(method, "paymentMethodId") if scenario_name == PAYMENT_CODE else ""
        strategy = body.get("settlementStrategy")
        alipay_cn: dict[str, Any] = {}
        if strategy is not None:   # AlipayCN (seed 002): the settlement currency rules
            settlement = _text(_object(body, "settlementStrategy"), "settlementCurrency", max_len=3)
            try:
                validate_cn_currencies(amount.currency, settlement)
            except CurrencyError as exc:
                raise _Reject("CURRENCY_NOT_SUPPORT", str(exc)) from None
            alipay_cn["settlementCurrency"] = settlement
        if "extendInfo" in order:
            alipay_cn["chinaExtraTransInfo"] = _china_extra(order["extendInfo"])
        store = read_store(body, "ams")
        if self.options.require_store:
            fields = store_fields("ams")
            missing = [fields.paths[k] for k in fields.required if k in fields.paths and k not in store]
            if missing:
                raise _Reject("PARAM_MISSING", f"{', '.join(missing)} required: this sandbox was "
                                               "started with --require-store")
        if scenario_name == ORDER_CODE:
            reply = self.ledger.order_code(merchant, request_id, amount, title, now, store)
        else:
            reply = self.ledger.pay(merchant, request_id, code, amount, title, now, store)
        if alipay_cn:   # what the wire carried, shown in GET /sandbox/ledger
            self.ledger.note_alipay_cn(merchant, request_id, alipay_cn)
        notify_url = body.get("paymentNotifyUrl")
        if isinstance(notify_url, str) and notify_url and reply.status != "F":
            self._owe_notice(merchant, request_id, notify_url)
        if scenario_name == ORDER_CODE:
            answer = self._payment_answer(reply, merchant, now, inquiry=False, request_id=request_id)
            payment_id = reply.body.get("acquirementId")
            if reply.code == "USER_PAYING" and isinstance(payment_id, str):
                payment = self.ledger.payment_by_id(payment_id, now)
                expires = payment.expires_at if payment is not None and payment.expires_at else now
                answer["orderCodeForm"] = self._order_code_form(payment_id, expires)
            return answer, 0.0, False
        scenario = scenario_for(code)
        answer = self._payment_answer(reply, merchant, now, inquiry=False, request_id=request_id)
        hold = self.options.slow_response if scenario.hold else 0.0
        return answer, hold, scenario.corrupt_signature and reply.status == "S"

    def _payment_answer(self, reply: Reply, merchant: str, now: datetime, *, inquiry: bool,
                        request_id: str = "") -> dict[str, Any]:
        code = _CODES.get(reply.code, reply.code)
        if code == "USER_PAYING" and not inquiry:
            code = "PAYMENT_IN_PROCESS"
        b = reply.body
        mtid = b.get("merchantTransId") or request_id
        out: dict[str, Any] = {}
        if mtid:
            out["paymentRequestId"] = mtid
        if b.get("acquirementId"):
            out["paymentId"] = b["acquirementId"]
        if b.get("orderAmount"):
            out["paymentAmount"] = b["orderAmount"]
        rate = b.get("conversionRate")
        if b.get("payAmount") and b["payAmount"] != b.get("orderAmount") and isinstance(rate, dict):
            # The customer paid in another currency (an AlipayCN customer in CNY): Antom's
            # actualPaymentAmount and paymentQuote (inquiryPayment reference, in-store).
            out["actualPaymentAmount"] = b["payAmount"]
            out["paymentQuote"] = {"quoteCurrencyPair": f"{rate['sourceCurrency']}/{rate['targetCurrency']}",
                                   "quotePrice": str(rate["rate"])}
        for name in ("paymentTime", "cancelTime"):
            if b.get(name):
                out[name] = b[name]
        if inquiry and reply.status == "S":
            payment = self.ledger.payment(str(mtid), now, merchant) if mtid else None
            out["paymentStatus"] = self._payment_status(payment, str(b.get("acquirementStatus") or ""))
            if out["paymentStatus"] == "FAIL" and payment is not None and payment.decline:
                # inquiryPayment's paymentResultCode / paymentResultMessage: why the payment failed
                out["paymentResultCode"] = _CODES.get(payment.decline, payment.decline)
                out["paymentResultMessage"] = _failure_message(payment)
        return self._result(code, out, reply.message, status=None if code != reply.code else reply.status)

    def cashier_url(self, payment_id: str) -> str:
        """The wallet's cashier page for an order code payment (what its QR code carries)."""
        return f"{self.public_url}/sandbox/cashier/{urllib.parse.quote(payment_id, safe='')}"

    def _order_code_form(self, payment_id: str, expires_at: datetime) -> dict[str, Any]:
        """orderCodeForm as Antom's Order Code Payment answers it: the code as text (TEXT) and as a picture;
        expireTime is the payment's own (a repeated pay answers the same one)."""
        url = self.cashier_url(payment_id)
        expires = request_time(expires_at)
        return {"paymentMethodType": "CONNECT_WALLET", "expireTime": expires, "codeDetails": [
            {"codeValueType": "QRCODE", "displayType": "TEXT", "codeValue": url},
            {"codeValueType": "QRCODE", "displayType": "MIDDLEIMAGE", "codeValue": url + "?image=qr"}]}

    # -- the wallet's cashier page (a tester plays the customer) ---------------------------

    def cashier_page(self, payment_id: str, action: str = "") -> tuple[int, str]:
        """(HTTP status, HTML) of the cashier page; `action` "pay" or "cancel" is the tester's button."""
        now = self.now()
        payment = self.ledger.payment_by_id(payment_id, now)
        if payment is None or payment.scenario != ORDER_CODE_SCENARIO:
            return 404, _page("No such payment", "<p id='status'>This code names no payment.</p>")
        http_status = 200
        if action == "pay":
            payment = self.ledger.wallet_pay(payment_id, now) or payment
            if payment.status != "SUCCESS":   # closed, cancelled or expired: the wallet refuses, nothing paid
                http_status = 409
        elif action == "cancel":
            payment = self.ledger.wallet_decline(payment_id, now) or payment
        elif action:
            return 404, _page("No such button", "<p id='status'>Press Pay or Cancel.</p>")
        amount = html.escape(f"{payment.amount.major_str()} {payment.amount.currency}")
        title = html.escape(payment.order_title or "Order")
        status = {"PROCESSING": "Waiting for payment", "SUCCESS": "Paid",
                  "CLOSED": "Cancelled", "CANCELLED": "Cancelled"}.get(payment.status, payment.status)
        if payment.expired and payment.expires_at is not None:
            status = f"Expired at {request_time(payment.expires_at)}: this code can no longer be paid"
        elif http_status == 409:
            status += ": this code can no longer be paid"
        base = f"/sandbox/cashier/{urllib.parse.quote(payment_id, safe='')}"
        buttons = ""
        if payment.status == "PROCESSING":
            buttons = (f"<form method='post' action='{base}/pay'><button id='pay' type='submit'>Pay {amount}"
                       f"</button></form><form method='post' action='{base}/cancel'><button id='cancel' "
                       "type='submit'>Cancel</button></form>")
        expiry = ""
        if payment.expires_at is not None and payment.status == "PROCESSING":
            expiry = f"<p id='expires'>Pay before {html.escape(request_time(payment.expires_at))}</p>"
        expired = " data-expired='true'" if payment.expired else ""
        body = (f"<h1>Alipay sandbox cashier</h1><p id='order'>{title}</p><p id='amount'>{amount}</p>"
                f"<p id='status' data-status='{html.escape(payment.status)}'{expired}>{html.escape(status)}</p>"
                f"{expiry}{buttons}")
        return http_status, _page("Alipay sandbox cashier", body)

    @staticmethod
    def _payment_status(payment: Payment | None, ledger_status: str) -> str:
        if payment is not None and payment.decline:
            return "FAIL"
        return {"SUCCESS": "SUCCESS", "PROCESSING": "PROCESSING", "CANCELLED": "CANCELLED",
                "CLOSED": "CANCELLED"}.get(ledger_status, "FAIL")

    def _refund_answer(self, reply: Reply) -> dict[str, Any]:
        b = reply.body
        out: dict[str, Any] = {}
        for ours, theirs in (("merchantRefundId", "refundRequestId"), ("acquirementId", "paymentId"),
                             ("refundId", "refundId"), ("refundAmount", "refundAmount"),
                             ("refundTime", "refundTime")):
            if b.get(ours):
                out[theirs] = b[ours]
        code = _CODES.get(reply.code, reply.code)
        return self._result(code, out, reply.message, status=None if code != reply.code else reply.status)

    def _inquiry_refund(self, merchant: str, body: dict[str, Any]) -> dict[str, Any]:
        refund_request_id = _text(body, "refundRequestId", required=False)
        refund_id = _text(body, "refundId", required=False)
        if not refund_request_id and not refund_id:
            raise _Reject("PARAM_ILLEGAL", "refundRequestId or refundId is required")
        for r in self.ledger.refunds():
            if r.merchant_id == merchant and (r.refund_id == refund_id if refund_id
                                              else r.merchant_refund_id == refund_request_id):
                settled = r.settled(self.now())
                out = {"refundRequestId": r.merchant_refund_id, "refundId": r.refund_id,
                       "paymentId": r.acquirement_id, "refundAmount": r.amount.wire(),
                       "refundStatus": "SUCCESS" if settled else "PROCESSING"}
                if settled:
                    out["refundTime"] = r.as_json()["refundTime"]
                return self._result("SUCCESS", out)
        return self._result("ORDER_NOT_EXIST", {}, "no such refund")

    def _consult(self, body: dict[str, Any]) -> dict[str, Any]:
        _money(body.get("paymentAmount"), "paymentAmount")
        return self._result("SUCCESS", {"paymentOptions": [
            {"paymentMethodType": "CONNECT_WALLET", "enabled": True, "paymentMethodRegion": ["CN"]}]})

    # -- the answer ------------------------------------------------------------------

    @staticmethod
    def _result(code: str, body: dict[str, Any], message: str = "", *, status: str | None = None) -> dict[str, Any]:
        row = result_codes().get(code)
        return {"result": {"resultCode": code, "resultStatus": status or _status_of(code),
                           "resultMessage": message or (row.meaning if row else code)}, **body}

    def _signed(self, path: str, client_id: str, answer: dict[str, Any], hold: float, corrupt: bool) -> Answer:
        raw = compact_json(answer).encode("utf-8")
        moment = request_time(self.now())
        signature = sign(sign_content("POST", path, client_id, moment, raw), self._alipay_key)
        if corrupt:  # scenario 16: one byte of the signature changed
            flipped = bytearray(base64.b64decode(signature))
            flipped[0] ^= 0x01
            signature = base64.b64encode(bytes(flipped)).decode("ascii")
        headers = {"client-id": client_id, "response-time": moment,
                   "signature": signature_header(signature, self._key_version)}
        return Answer(raw, 200, hold, headers)
