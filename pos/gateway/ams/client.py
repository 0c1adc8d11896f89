"""Client for Alipay's v1 payments API (Antom / Alipay+, "ams"): pay, inquiryPayment, cancel, refund,
inquiryRefund, consult.

The customer-presented code is the in-store payment-code product:
productCode IN_STORE_PAYMENT, paymentFactor.inStorePaymentScenario PaymentCode,
paymentMethod {paymentMethodType CONNECT_WALLET, paymentMethodId <the code>}.
The merchant-presented QR is the order-code product (`qr_pay`): the same
productCode with paymentFactor.inStorePaymentScenario OrderCode and
paymentMethod {paymentMethodType CONNECT_WALLET} (no paymentMethodId); its
answer is U PAYMENT_IN_PROCESS carrying the code in orderCodeForm.codeDetails
(`qr_text`). Requests and answers are signed in headers (signing.py); an answer is believed
only when its signature verifies over the exact bytes received, it names our
client id, and it echoes our paymentRequestId / refundRequestId. Anything else
is `Unknown`: we cannot tell whether money moved, so the engine queries and
cancels exactly as for the offline protocol.

The core's outcomes are protocol-neutral: a v1 answer's `paymentId` is its
`gateway_id` (what the engine keeps and refunds by), `refundId` its
`refund_gateway_id`, `actualPaymentAmount` its `customer_amount` (status.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pos.config import Config, GatewaySection, store_identity
from pos.core.goods import check_goods, goods_info, parse_goods_info, total_quantity
from pos.core.money import CurrencyError, Money, validate_cn_currencies
from pos.core.outcomes import Failed, GatewayResult, Succeeded, Unknown
from pos.core.redact import mask_code
from pos.gateway.ams.codes import classified
from pos.gateway.ams.signing import (
    header,
    parse_signature_header,
    sign,
    sign_content,
    signature_header,
    verify,
)
from pos.gateway.ams.status import customer_amount, read_ids, read_inquiry
from pos.gateway.client import GatewayHealth
from pos.gateway.offline.status import DEFAULT_NOT_FOUND
from pos.gateway.signing import compact_json, load_private_key, load_public_key
from pos.gateway.store import put_store
from pos.gateway.transport import MAX_ANSWER, Transport

__all__ = ["MAX_ANSWER", "AmsGateway", "ENDPOINTS", "NOTIFY_PATHS", "PRODUCT_CODE", "ORDER_CODE", "PAYMENT_CODE",
           "path_prefix", "qr_text", "request_time", "china_extend_info"]

log = logging.getLogger("pos.gateway")

PRODUCT_CODE = "IN_STORE_PAYMENT"
# paymentFactor.inStorePaymentScenario: the customer's code (User-presented Mode) or ours (Order Code).
PAYMENT_CODE = "PaymentCode"
ORDER_CODE = "OrderCode"

# operation -> path after the prefix.
ENDPOINTS: dict[str, str] = {
    "pay": "/v1/payments/pay",
    "inquiryPayment": "/v1/payments/inquiryPayment",
    "cancel": "/v1/payments/cancel",
    "refund": "/v1/payments/refund",
    "inquiryRefund": "/v1/payments/inquiryRefund",
    "consult": "/v1/payments/consult",
    # the back office (pos/gateway/ams/backoffice.py)
    "declare": "/v1/customs/declare",
    "inquiryDeclarationRequests": "/v1/customs/inquiryDeclarationRequests",
    "registration": "/v1/merchants/registration",
    "inquiryRegistrationStatus": "/v1/merchants/inquiryRegistrationStatus",
    "inquiryRegistrationInfo": "/v1/merchants/inquiryRegistrationInfo",
}

# The request id an answer must echo (when it names one at all), by operation; paymentRequestId otherwise.
ECHO_FIELDS = {"refund": "refundRequestId", "inquiryRefund": "refundRequestId",
               "declare": "declarationRequestId", "registration": "registrationRequestId",
               "inquiryRegistrationStatus": "registrationRequestId"}

# Where our notification listener takes the v1 notifications ([notify] listen / public_url).
NOTIFY_PATHS = {"payment": "/notify/ams/payment", "refund": "/notify/ams/refund"}


# chinaExtraTransInfo.businessType of a shop selling goods: "4" in both of seed 002's samples.
GOODS_BUSINESS_TYPE = "4"


def china_extend_info(goods: str) -> str | None:
    """order.extendInfo for an AlipayCN pay with line items, or None if they break the rules.

    Seed 002: `chinaExtraTransInfo` {businessType, goodsInfo "name^qty|...", totalQuantity}, every
    value a string. extendInfo itself is a JSON string (seed 002's request sample; the Order model
    of the official SDK types it `str`), at most 2048 characters.
    """
    try:
        lines = parse_goods_info(goods)
    except ValueError:
        return None
    if not lines or check_goods(lines) is not None:
        return None
    info = {"businessType": GOODS_BUSINESS_TYPE, "goodsInfo": goods_info(lines),
            "totalQuantity": str(total_quantity(lines))}
    text = compact_json({"chinaExtraTransInfo": info})
    return text if len(text) <= 2048 else None


def path_prefix(client_id: str) -> str:
    """Sandbox client ids (SANDBOX_...) call /ams/sandbox/api/..., all others /ams/api/..."""
    return "/ams/sandbox/api" if client_id.startswith("SANDBOX_") else "/ams/api"


def request_time(moment: datetime) -> str:
    """The request-time header: RFC 3339 with a numeric offset (seed 002's sample)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="seconds")


def qr_text(body: Mapping[str, Any]) -> str:
    """The code a pay answer gives the customer to scan, or "".

    Order Code Payment: orderCodeForm.codeDetails[], the entry whose displayType is TEXT
    (its codeValue is the code's own text; the image entries carry a picture's URL). A
    cashier-style answer (seed 002) carries a URL instead: normalUrl, else
    redirectActionForm.redirectUrl; a QR of that URL opens the wallet's cashier page.
    """
    form = body.get("orderCodeForm")
    details = form.get("codeDetails") if isinstance(form, dict) else None
    if isinstance(details, list):
        for detail in details:
            if (isinstance(detail, dict) and detail.get("displayType", "TEXT") == "TEXT"
                    and isinstance(detail.get("codeValue"), str) and detail["codeValue"]):
                return str(detail["codeValue"])
    if isinstance(body.get("normalUrl"), str) and body["normalUrl"]:
        return str(body["normalUrl"])
    redirect = body.get("redirectActionForm")
    if isinstance(redirect, dict) and isinstance(redirect.get("redirectUrl"), str):
        return str(redirect["redirectUrl"])
    return ""


def _local_now() -> datetime:
    return datetime.now().astimezone()


class AmsGateway:
    """A `GatewayClient` (pos/gateway/client.py) over HTTPS to the v1 payments API."""

    @classmethod
    def from_config(cls, config: Config) -> AmsGateway:
        public = config.notify.public_url
        notify_url = public + NOTIFY_PATHS["payment"] if public else ""
        refund_notify_url = public + NOTIFY_PATHS["refund"] if public else ""
        # AlipayCN (seed 002): every pay names its settlement currency, never CNY.
        settlement = ""
        if config.terminal.wallet == "ALIPAY_CN":
            settlement = config.terminal.settlement_currency or config.terminal.currency
        return cls(config.gateway, not_found_codes=config.payment.not_found_codes, notify_url=notify_url,
                   refund_notify_url=refund_notify_url, settlement_currency=settlement, store=store_identity(config))

    def __init__(self, settings: GatewaySection, *, transport: Transport | None = None,
                 clock: Callable[[], datetime] | None = None, private_key: Any = None,
                 alipay_public_key: Any = None, not_found_codes: Iterable[str] = DEFAULT_NOT_FOUND,
                 notify_url: str = "", settlement_currency: str = "",
                 store: Mapping[str, str] | None = None, refund_notify_url: str = "") -> None:
        self._notify_url = notify_url
        self._refund_notify_url = refund_notify_url   # refundNotifyUrl: where notifyRefund goes
        self._store = dict(store or {})   # [store], sent in every pay (pos/data/store_fields.toml [ams])
        # Set for the AlipayCN wallet: sent as settlementStrategy.settlementCurrency, and
        # its currency rules are checked before any request (an F that never left).
        self._settlement = settlement_currency
        self._s = settings
        self._not_found = frozenset(not_found_codes)
        # One keep-alive connection pool; each call ends after connect + read timeout
        # however slowly its answer comes (pos/gateway/transport.py).
        self._transport = transport or Transport(settings.url, proxy=settings.proxy)
        self._clock = clock or _local_now
        self._private_key = private_key or load_private_key(settings.private_key, trust_own_file=True)
        self._alipay_key = alipay_public_key or load_public_key(settings.alipay_public_key)
        self._timeout = (float(settings.connect_timeout), float(settings.read_timeout))
        self._health = GatewayHealth()
        self.prefix = path_prefix(settings.client_id)

    # -- the Gateway protocol ------------------------------------------------

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, goods: str = "") -> GatewayResult:
        body = self._pay_body(merchant_trans_id, amount, order_title, PAYMENT_CODE, identity_code)
        refused = self._complete_pay(body, amount, merchant_trans_id, goods)
        if refused is not None:
            return refused
        result = self._call("pay", body, merchant_trans_id, mask_code(identity_code))
        return customer_amount(result, result.data) if isinstance(result, Succeeded) else result

    def qr_pay(self, *, merchant_trans_id: str, amount: Money, order_title: str, goods: str = "") -> GatewayResult:
        """The order code (merchant-presented QR): a pay whose U PAYMENT_IN_PROCESS answer carries the
        code the customer scans, as `Unknown.qr`. The sale then waits on inquiryPayment and notifyPayment."""
        body = self._pay_body(merchant_trans_id, amount, order_title, ORDER_CODE)
        refused = self._complete_pay(body, amount, merchant_trans_id, goods)
        if refused is not None:
            return refused
        result = self._call("pay", body, merchant_trans_id)
        if isinstance(result, Unknown) and result.data:
            result = replace(result, qr=qr_text(result.data))
        log.info("order code paymentRequestId=%s code_received=%s", merchant_trans_id,
                 "yes" if isinstance(result, Unknown) and result.qr else "no")
        return result

    def _pay_body(self, merchant_trans_id: str, amount: Money, order_title: str, scenario: str,
                  identity_code: str = "") -> dict[str, Any]:
        """The pay both in-store scenarios send: the customer's code (PAYMENT_CODE, with the code as
        paymentMethodId) or the merchant's order code (ORDER_CODE: the wallet is chosen by the customer)."""
        method = {"paymentMethodType": "CONNECT_WALLET"}
        if identity_code:
            method["paymentMethodId"] = identity_code
        return {
            "productCode": PRODUCT_CODE,
            "paymentRequestId": merchant_trans_id,
            "order": {
                "referenceOrderId": merchant_trans_id,
                "orderDescription": order_title,
                "orderAmount": amount.wire(),
                "merchant": {"referenceMerchantId": self._s.merchant_id},
            },
            "paymentAmount": amount.wire(),
            "paymentMethod": method,
            "paymentFactor": {"inStorePaymentScenario": scenario},
        }

    def _complete_pay(self, body: dict[str, Any], amount: Money, merchant_trans_id: str,
                      goods: str) -> Failed | None:
        """The store, the notification URL, AlipayCN's settlement currency and goods; an F if the pay may
        not leave."""
        put_store(body, self._store, "ams")
        if self._notify_url:
            body["paymentNotifyUrl"] = self._notify_url
        if self._settlement:
            try:
                validate_cn_currencies(amount.currency, self._settlement)
            except CurrencyError as exc:
                log.warning("pay not sent paymentRequestId=%s: %s", merchant_trans_id, exc)
                return Failed("CURRENCY_NOT_SUPPORT", f"not sent: {exc}", request_id=merchant_trans_id)
            body["settlementStrategy"] = {"settlementCurrency": self._settlement}
            if goods:
                extend = china_extend_info(goods)
                if extend is None:
                    log.warning("pay not sent paymentRequestId=%s: the goods list cannot be sent", merchant_trans_id)
                    return Failed("PARAM_ILLEGAL", "not sent: the goods list cannot be sent (pos/core/goods.py)",
                                  request_id=merchant_trans_id)
                body["order"]["extendInfo"] = extend
        return None

    def query(self, *, merchant_trans_id: str) -> GatewayResult:
        result = self._call("inquiryPayment", {"paymentRequestId": merchant_trans_id}, merchant_trans_id)
        return read_inquiry(result, self._not_found)

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult:
        return self._call("cancel", {"paymentRequestId": merchant_trans_id}, merchant_trans_id)

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult:
        body: dict[str, Any] = {"refundRequestId": merchant_refund_id, "paymentId": acquirement_id,
                                "refundAmount": amount.wire()}
        if reason:
            body["refundReason"] = reason
        if self._refund_notify_url:
            body["refundNotifyUrl"] = self._refund_notify_url
        return self._call("refund", body, merchant_refund_id)

    # -- v1-only calls -------------------------------------------------------

    def inquiry_refund(self, *, merchant_refund_id: str) -> GatewayResult:
        """inquiryRefund by refundRequestId; S carries refundStatus SUCCESS | PROCESSING | FAIL."""
        return self._call("inquiryRefund", {"refundRequestId": merchant_refund_id}, merchant_refund_id)

    def consult(self, *, amount: Money) -> GatewayResult:
        """consult: which payment options the contract offers for this amount (no money moves)."""
        body = {"productCode": PRODUCT_CODE, "paymentAmount": amount.wire(),
                "paymentFactor": {"inStorePaymentScenario": "PaymentCode"}}
        return self._call("consult", body, "")

    def health(self) -> GatewayHealth:
        return self._health

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> AmsGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one HTTP exchange ---------------------------------------------------

    def call(self, operation: str, body: dict[str, Any], business_id: str) -> GatewayResult:
        """One signed call of any operation in ENDPOINTS (the back-office calls use it)."""
        return self._call(operation, body, business_id)

    def _call(self, operation: str, body: dict[str, Any], business_id: str,
              code_hint: str | None = None) -> GatewayResult:
        path = self.prefix + ENDPOINTS[operation]
        wire = compact_json(body).encode("utf-8")
        moment = request_time(self._clock())
        signature = sign(sign_content("POST", path, self._s.client_id, moment, wire), self._private_key)
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "client-id": self._s.client_id,
            "request-time": moment,
            "Signature": signature_header(signature, self._s.key_version),
        }
        started = time.monotonic()
        answer = self._exchange(self._s.url + path, path, wire, headers, operation, business_id)
        result = replace(answer, request_id=business_id)
        self._health = GatewayHealth(
            last_latency=time.monotonic() - started,
            last_error=result.reason if isinstance(result, Unknown) and result.code is None else None,
            link_down=isinstance(result, Unknown) and result.no_answer)
        self._log(operation, business_id, result, code_hint)
        return result

    def _exchange(self, url: str, path: str, wire: bytes, headers: dict[str, str], operation: str,
                  business_id: str) -> GatewayResult:
        answer = self._transport.post(url, wire, headers, self._timeout)
        if isinstance(answer, Unknown):
            return answer
        if answer.status != 200:
            return Unknown(f"HTTP {answer.status}")
        if len(answer.body) > MAX_ANSWER:
            return Unknown(f"answer larger than {MAX_ANSWER} bytes")
        return self.read_answer(path, answer.body, answer.headers, operation, business_id)

    def read_answer(self, path: str, raw: bytes, headers: Mapping[str, str], operation: str,
                    business_id: str) -> GatewayResult:
        """Verify and read one answer (its raw bytes and headers) to a call on `path`."""
        client_id = header(headers, "client-id")
        moment = header(headers, "response-time")
        parsed = parse_signature_header(header(headers, "signature"))
        if not client_id or not moment or parsed is None:
            return Unknown("answer lacks client-id, response-time or signature")
        if client_id != self._s.client_id:
            return Unknown("answer is for another client-id")
        if not verify(sign_content("POST", path, client_id, moment, raw), parsed.signature, self._alipay_key):
            return Unknown("answer signature did not verify")
        try:
            body = json.loads(raw.decode("utf-8"))
            info = body["result"]
            status = info["resultStatus"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return Unknown("signed answer lacks result")
        if not isinstance(body, dict) or not isinstance(info, dict):
            return Unknown("signed answer lacks result")
        echo_field = ECHO_FIELDS.get(operation, "paymentRequestId")
        echoed = body.get(echo_field)
        if business_id and echoed is not None and echoed != business_id:
            return Unknown(f"answer is for another {echo_field}")
        code = str(info.get("resultCode") or "")
        message = str(info.get("resultMessage") or "")
        if status == "S":
            return read_ids(Succeeded(dict(body), code or "SUCCESS"), body)
        if status == "F":
            return read_ids(classified(Failed(code, message, "")), body)
        if status == "U":
            # The body too: an "in process" answer names the payment, and an order code's carries the code.
            return read_ids(classified(Unknown("gateway answered U", code or None, data=dict(body))), body)
        return classified(Unknown(f"unknown resultStatus {status!r}", code or None))

    def _log(self, operation: str, business_id: str, result: GatewayResult, code_hint: str | None) -> None:
        if isinstance(result, Succeeded):
            outcome = f"S code={result.code}"
        elif isinstance(result, Failed):
            outcome = f"F code={result.code}"
        else:
            outcome = f"U code={result.code or '-'} reason={result.reason!r}"
        extra = f" paymentMethodId={code_hint}" if code_hint else ""
        label = ECHO_FIELDS.get(operation, "paymentRequestId")
        log.info("gateway call api=%s %s=%s outcome=%s latency_ms=%d%s", operation, label, business_id or "-",
                 outcome, round((self._health.last_latency or 0) * 1000), extra)
