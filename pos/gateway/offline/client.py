"""Client for Alipay's offline acquiring gateway: pay, payQuery, payCancel, refund (reference §2-9).

One keep-alive connection pool (pos/gateway/transport.py); every request is signed (RSA2, §4) and every
answer must carry a valid Alipay signature and echo our `reqMsgId` and
`function` before its resultStatus is believed. Anything else is `Unknown`:
we cannot tell whether money moved, so the engine queries and cancels (§12).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pos.config import Config, GatewaySection, store_identity
from pos.core.money import Money
from pos.core.outcomes import Failed, GatewayResult, Succeeded, Unknown
from pos.core.redact import mask_code
from pos.gateway.client import GatewayHealth
from pos.gateway.offline.answer import read_fields
from pos.gateway.offline.codes import classified
from pos.gateway.offline.status import DEFAULT_NOT_FOUND, read_query
from pos.gateway.signing import build_signed, load_private_key, load_public_key, split_signed, verify
from pos.gateway.store import put_store
from pos.gateway.transport import MAX_ANSWER, Transport

# What a result code and an acquirementId look like. Anything else in those fields (a
# payment code echoed back, a space, a number) is not kept: not stored, shown or printed.
_RESULT_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ACQUIREMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
UNREADABLE_CODE = "UNREADABLE_RESULT_CODE"

__all__ = ["MAX_ANSWER", "OfflineFunction", "FUNCTIONS", "function_url", "OfflineGateway", "rfc3339"]

log = logging.getLogger("pos.gateway")


@dataclass(frozen=True)
class OfflineFunction:
    name: str   # head.function
    path: str   # URL path under the base URL (§2)


# The one path table (§2). The docs print payquery/paycancel in lower case and
# refund as "grefund"; the sandbox routes case-insensitively.
FUNCTIONS: dict[str, OfflineFunction] = {
    "pay": OfflineFunction("alipay.intl.acquiring.offline.pay", "/api/alipay/intl/acquiring/offline/pay.htm"),
    "query": OfflineFunction("alipay.intl.acquiring.offline.payQuery",
                             "/api/alipay/intl/acquiring/offline/payQuery.htm"),
    "cancel": OfflineFunction("alipay.intl.acquiring.common.payCancel",
                              "/api/alipay/intl/acquiring/common/payCancel.htm"),
    "refund": OfflineFunction("alipay.intl.acquiring.common.refund",
                              "/api/alipay/intl/acquiring/common/grefund.htm"),
}


def function_url(base_url: str, operation: str) -> str:
    return base_url.rstrip("/") + FUNCTIONS[operation].path


def rfc3339(moment: datetime) -> str:
    """RFC 3339 with a numeric offset, never 'Z' (§5.5: a sister gateway rejects Z)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="seconds")


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _scrub(value: Any, secret: str) -> Any:
    """value with every text that holds the secret (a payment code) masked, at any depth."""
    if isinstance(value, str):
        return mask_code(secret) if secret in value else value
    if isinstance(value, dict):
        return {k: _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


class OfflineGateway:
    """A `GatewayClient` (pos/gateway/client.py) over HTTPS to the offline acquiring gateway.

    `settings` is the [gateway] config section. Keys are read from the
    configured files unless passed in. Every result carries the call's
    merchantTransId / merchantRefundId as `request_id`.
    """

    @classmethod
    def from_config(cls, config: Config) -> OfflineGateway:
        """The client a configuration asks for (pos/gateway/factory.py)."""
        return cls(config.gateway, not_found_codes=config.payment.not_found_codes, store=store_identity(config),
                   pay_within=config.payment.first_query_after)

    def __init__(self, settings: GatewaySection, *, transport: Transport | None = None,
                 clock: Callable[[], datetime] | None = None,
                 private_key: Any = None, alipay_public_key: Any = None,
                 not_found_codes: Iterable[str] = DEFAULT_NOT_FOUND,
                 store: Mapping[str, str] | None = None, pay_within: float | None = None) -> None:
        self._s = settings
        self._store = dict(store or {})   # [store], sent in every pay (pos/data/store_fields.toml)
        self._not_found = frozenset(not_found_codes)
        self._transport = transport or Transport(settings.url, proxy=settings.proxy)
        self._clock = clock or _local_now
        self._private_key = private_key or load_private_key(settings.private_key, trust_own_file=True)
        self._alipay_key = alipay_public_key or load_public_key(settings.alipay_public_key)
        self._timeout = (float(settings.connect_timeout), float(settings.read_timeout))
        # A pay with no answer after `pay_within` s ([payment] first_query_after) is given up
        # as unknown, so the first payQuery can go (it was committed PAYING before it left).
        self._pay_timeout = self._timeout
        if pay_within is not None and pay_within < sum(self._timeout):
            connect = min(self._timeout[0], pay_within / 2)
            self._pay_timeout = (connect, pay_within - connect)
        # Each call has a deadline of its connect + read timeout, however slowly its answer
        # comes: the transport shuts the call's sockets when it passes.
        self._health = GatewayHealth()

    # -- the Gateway protocol ------------------------------------------------

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, goods: str = "") -> GatewayResult:
        # The offline protocol has no field for line items (`goods` is not sent).
        body: dict[str, Any] = {
            "merchantId": self._s.merchant_id,
            "productCode": self._s.product_code,
            "merchantTransId": merchant_trans_id,
            "codeType": "BARCODE",  # §5.3: the QR image carries the same digits
            "identityCode": identity_code,
            # The wallet shows orderTitle to the customer: the store's name when the till gave none.
            "order": {"orderTitle": order_title or self._store.get("name", ""), "orderAmount": amount.wire()},
        }
        if self._s.settle_contract_id:
            body["settleContractId"] = self._s.settle_contract_id
        put_store(body, self._store, "offline")
        return self._call("pay", body, merchant_trans_id, mask_code(identity_code), secret=identity_code)

    def query(self, *, merchant_trans_id: str) -> GatewayResult:
        body = {"merchantId": self._s.merchant_id, "merchantTransId": merchant_trans_id}
        return read_query(self._call("query", body, merchant_trans_id), self._not_found)

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult:
        body = {"merchantId": self._s.merchant_id, "merchantTransId": merchant_trans_id}
        return self._call("cancel", body, merchant_trans_id)

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult:
        body: dict[str, Any] = {
            "merchantId": self._s.merchant_id,
            "acquirementId": acquirement_id,
            "merchantRefundId": merchant_refund_id,
            "refundAmount": amount.wire(),
        }
        if reason:
            body["refundReason"] = reason
        return self._call("refund", body, merchant_refund_id)

    def health(self) -> GatewayHealth:
        return self._health

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> OfflineGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one HTTP exchange ---------------------------------------------------

    def _call(self, operation: str, body: dict[str, Any], business_id: str,
              code_hint: str | None = None, *, secret: str | None = None) -> GatewayResult:
        fn = FUNCTIONS[operation]
        req_msg_id = str(uuid.uuid4())  # new per HTTP request, never a business key (§3.2)
        head = {
            "version": self._s.version,
            "function": fn.name,
            "clientId": self._s.client_id,
            "reqTime": rfc3339(self._clock()),
            "reqMsgId": req_msg_id,
            "reserve": "{}",
            "signType": self._s.sign_type,
        }
        wire = build_signed("request", head, body, self._private_key)
        started = time.monotonic()
        answer = self._exchange(function_url(self._s.url, operation), wire, fn.name, req_msg_id, business_id,
                                self._pay_timeout if operation == "pay" else self._timeout, secret)
        result = replace(answer, request_id=business_id, req_msg_id=req_msg_id)
        # For health checks: why the last exchange told us nothing (transport,
        # HTTP or signature trouble); a verified answer of any status clears it.
        self._health = GatewayHealth(
            last_latency=time.monotonic() - started,
            last_error=result.reason if isinstance(result, Unknown) and result.code is None else None,
            link_down=isinstance(result, Unknown) and result.no_answer)
        self._log(fn.name, business_id, req_msg_id, result, code_hint)
        return result

    def _exchange(self, url: str, wire: bytes, function: str, req_msg_id: str,
                  business_id: str, timeout: tuple[float, float], secret: str | None = None) -> GatewayResult:
        answer = self._transport.post(url, wire, {"Content-Type": "application/json; charset=UTF-8"}, timeout)
        if isinstance(answer, Unknown):
            return answer
        if answer.status != 200:
            return Unknown(f"HTTP {answer.status}")
        if len(answer.body) > MAX_ANSWER:
            return Unknown(f"answer larger than {MAX_ANSWER} bytes")
        return self._read_answer(answer.body, function, req_msg_id, business_id, secret)

    def _read_answer(self, raw: bytes, function: str, req_msg_id: str, business_id: str,
                     secret: str | None = None) -> GatewayResult:
        try:
            text = raw.decode("utf-8")
            inner, signature = split_signed(text, "response")
        except (UnicodeDecodeError, ValueError) as exc:
            return Unknown(f"unreadable answer: {exc}")
        if not verify(inner, signature, self._alipay_key):
            return Unknown("answer signature did not verify")
        try:
            envelope = json.loads(inner)
            head, body = envelope["head"], envelope["body"]
            info = body["resultInfo"]
            status = info["resultStatus"]
        except (ValueError, KeyError, TypeError):
            return Unknown("signed answer lacks head, body or resultInfo")
        if not isinstance(head, dict) or head.get("reqMsgId") != req_msg_id:
            return Unknown("answer does not echo our reqMsgId")
        if head.get("function") != function:
            return Unknown("answer is for another function")
        if not isinstance(body, dict) or not isinstance(info, dict):
            return Unknown("signed answer lacks head, body or resultInfo")
        if secret:
            body = _scrub(body, secret)
            info = body["resultInfo"]
        code = info.get("resultCode") or ""
        if not (isinstance(code, str) and _RESULT_CODE.fullmatch(code)):
            code = UNREADABLE_CODE if code else ""
        acq = body.get("acquirementId")
        if "acquirementId" in body and not (isinstance(acq, str) and _ACQUIREMENT_ID.fullmatch(acq)):
            body = {k: v for k, v in body.items() if k != "acquirementId"}
        echoed = body.get("merchantTransId") if "merchantTransId" in body else None
        if function != FUNCTIONS["refund"].name and echoed is not None and echoed != business_id:
            return Unknown("answer is for another merchantTransId")
        if status == "S" and function == FUNCTIONS["pay"].name and "acquirementId" not in body:
            # Paid means Alipay's id for the payment (§6.2: required on SUCCESS); without one, ask again.
            return classified(Unknown("paid answer without a usable acquirementId", code or None))
        if status == "S":
            return read_fields(Succeeded(body, code or "SUCCESS"), body)
        if status == "F":
            return read_fields(Failed(code, str(info.get("resultMsg") or ""), str(info.get("resultCodeId") or "")),
                               body)
        if status == "U":
            return read_fields(Unknown("gateway answered U", code or None, data=body), body)
        return classified(Unknown(f"unknown resultStatus {status!r}", code or None))

    def _log(self, function: str, business_id: str, req_msg_id: str, result: GatewayResult,
             code_hint: str | None) -> None:
        if isinstance(result, Succeeded):
            outcome = f"S code={result.code}"
        elif isinstance(result, Failed):
            outcome = f"F code={result.code}"
        else:
            outcome = f"U code={result.code or '-'} reason={result.reason!r}"
        extra = f" identityCode={code_hint}" if code_hint else ""
        label = "merchantRefundId" if function == FUNCTIONS["refund"].name else "merchantTransId"
        log.info("gateway call function=%s %s=%s reqMsgId=%s outcome=%s latency_ms=%d%s",
                 function, label, business_id, req_msg_id, outcome,
                 round((self._health.last_latency or 0) * 1000), extra)
