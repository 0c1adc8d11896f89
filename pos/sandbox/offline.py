"""The offline acquiring protocol in the sandbox: routing, envelope checks, signatures, answers.

`OfflineSandbox.handle(path, raw)` is the whole protocol (routing, framework
checks §11.2, signature verification §4, body checks §6-9, signing the answer)
and is synchronous; the HTTP host (server.py) only moves bytes. A request
never raises: whatever arrives gets a signed answer.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pos.gateway.offline.client import FUNCTIONS, rfc3339
from pos.gateway.offline.codes import result_codes
from pos.gateway.signing import build_signed, split_signed, verify
from pos.gateway.store import read_store, store_fields
from pos.sandbox.fields import Reject, RequestFields
from pos.sandbox.ledger import Ledger, Reply, as_datetime
from pos.sandbox.protocol import Answer
from pos.sandbox.scenarios import SandboxOptions, scenario_for

__all__ = ["OfflineSandbox", "route_function"]

log = logging.getLogger("pos.sandbox")

Clock = Callable[[], "datetime | float"]

# Case-insensitive routes (§2: the docs print payquery/paycancel in lower case),
# keyed by the path after /api or /isupergw.
_ROUTES = {fn.path.lower().removeprefix("/api"): fn.name for fn in FUNCTIONS.values()}
_KNOWN_FUNCTIONS = {fn.name: op for op, fn in FUNCTIONS.items()}
_REQUIRED_HEAD = ("version", "function", "clientId", "reqTime", "reqMsgId")


def route_function(path: str) -> str | None:
    """The function a URL path names, or None. Accepts /api/... and the /isupergw/... sandbox prefix."""
    p = path.lower()
    for prefix in ("/isupergw/api", "/isupergw", "/api"):
        if p.startswith(prefix + "/"):
            return _ROUTES.get(p[len(prefix):])
    return None


_FIELDS = RequestFields(missing_code="PARAM_MISSING")
_Reject, _text, _money = Reject, _FIELDS.text, _FIELDS.money


def _merchant(body: dict[str, Any]) -> str:
    if "partnerId" in body and "merchantId" not in body:  # §0: 2.0.2 names it partnerId
        return _text(body, "partnerId", max_len=32)
    return _text(body, "merchantId")


class OfflineSandbox:
    """The offline protocol over the sandbox's ledger, without HTTP (a `SandboxProtocol`)."""

    def __init__(self, ledger: Ledger, *, merchant_public_key: Any, alipay_private_key: Any,
                 clock: Clock | None = None) -> None:
        self.ledger = ledger
        self.options: SandboxOptions = ledger.options
        self._merchant_key = merchant_public_key
        self._alipay_key = alipay_private_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self.max_body = self.options.max_body

    def now(self) -> datetime:
        return as_datetime(self._clock())

    def ledger_json(self) -> dict[str, Any]:
        return self.ledger.to_json(self.now())

    def handle(self, path: str, raw: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        head: dict[str, Any] = {}
        function = route_function(path) or ""
        sign_type = "RSA2"
        try:
            if not function:
                raise _Reject("NO_INTERFACE_DEF", f"no function at {path}")
            if len(raw) > self.options.max_body:
                raise _Reject("PARAM_ILLEGAL", f"request larger than {self.options.max_body} bytes")
            try:
                text = raw.decode("utf-8")
                inner, signature = split_signed(text, "request")
                envelope = json.loads(inner)
            except (UnicodeDecodeError, ValueError) as exc:
                if "no signature" in str(exc):
                    raise _Reject("INVALID_SIGNATURE", "request has no signature") from None
                raise _Reject("MSG_PARSE_ERROR", f"request is not a signed JSON envelope: {exc}") from None
            if not isinstance(envelope, dict) or not isinstance(envelope.get("head"), dict):
                raise _Reject("PARAM_MISSING", "request.head is required")
            head = envelope["head"]
            for name in _REQUIRED_HEAD:
                if not isinstance(head.get(name), str) or not head[name]:
                    raise _Reject("PARAM_MISSING", f"head.{name} is required")
            if head["function"] not in _KNOWN_FUNCTIONS:
                raise _Reject("NO_INTERFACE_DEF", f"unknown function {head['function']!r}")
            if head["function"] != function:
                raise _Reject("FUNCTION_NOT_MATCH", f"head.function is not {function}")
            sign_type = self._sign_type(head)
            if not verify(inner, signature, self._merchant_key, sign_type=sign_type,
                          allow_double_base64=self.options.tolerate_double_base64):
                raise _Reject("INVALID_SIGNATURE", "signature does not verify with the merchant's public key")
            try:
                datetime.fromisoformat(head["reqTime"])
            except ValueError:
                raise _Reject("PARAM_ILLEGAL", "head.reqTime must be RFC 3339 with an offset") from None
            body = envelope.get("body")
            if not isinstance(body, dict):
                raise _Reject("PARAM_MISSING", "request.body is required")
            reply, hold, corrupt = self._dispatch(function, body)
        except _Reject as rej:
            reply, hold, corrupt = Reply(_status_of(rej.code), rej.code, {}, rej.message), 0.0, False
        except Exception:
            log.exception("sandbox: internal error on %s", path)
            reply, hold, corrupt = Reply("U", "SYSTEM_ERROR", {}, "sandbox internal error"), 0.0, False
        return Answer(self._sign(head, function, reply, sign_type, corrupt), 200, hold)

    @staticmethod
    def _sign_type(head: dict[str, Any]) -> str:
        value = head.get("signType") or "RSA2"   # §3.2: absent means RSA2
        if value in ("RSA2", "SHA256"):          # §4.2: "RSA2 and SHA256 are supported" (SHA256 [?])
            return "RSA2"
        if value == "RSA" and head.get("version") == "2.0.0":  # §4.2: SHA1withRSA on 2.0.0 pages
            return "RSA"
        raise _Reject("PARAM_ILLEGAL", f"signType {value!r} is not supported; use RSA2")

    def _dispatch(self, function: str, body: dict[str, Any]) -> tuple[Reply, float, bool]:
        now = self.now()
        op = _KNOWN_FUNCTIONS[function]
        merchant = _merchant(body)
        if op == "pay":
            mtid = _text(body, "merchantTransId")
            if body.get("productCode") != "OFFLINE_PAY":
                raise _Reject("PARAM_ILLEGAL" if body.get("productCode") else "PARAM_MISSING",
                              "productCode must be OFFLINE_PAY")
            if body.get("codeType") != "BARCODE":
                raise _Reject("PARAM_ILLEGAL" if body.get("codeType") else "PARAM_MISSING",
                              "codeType must be BARCODE")
            code = _text(body, "identityCode")  # §18 #3: accept up to 64 characters
            order = body.get("order")
            if not isinstance(order, dict):
                raise _Reject("PARAM_MISSING" if order is None else "PARAM_ILLEGAL", "order is required")
            amount = _money(order.get("orderAmount"), "order.orderAmount")
            title = _text(order, "orderTitle", required=False, max_len=256)
            store = read_store(body, "offline")
            if self.options.require_store:
                fields = store_fields("offline")
                missing = [fields.paths[k] for k in fields.required if k in fields.paths and k not in store]
                if missing:
                    raise _Reject("PARAM_MISSING", f"{', '.join(missing)} required: this sandbox was "
                                                   "started with --require-store")
            reply = self.ledger.pay(merchant, mtid, code, amount, title, now, store)
            scenario = scenario_for(code)
            hold = self.options.slow_response if scenario.hold else 0.0
            return reply, hold, scenario.corrupt_signature and reply.status == "S"
        if op in ("query", "cancel"):
            acq = _text(body, "acquirementId", required=False)
            mtid = _text(body, "merchantTransId", required=False)
            if not acq and not mtid:
                raise _Reject("PARAM_MISSING", "merchantTransId or acquirementId is required")
            call = self.ledger.query if op == "query" else self.ledger.cancel
            return call(merchant, now, merchant_trans_id=mtid or None, acquirement_id=acq or None), 0.0, False
        acq = _text(body, "acquirementId")
        refund_id = _text(body, "merchantRefundId")
        amount = _money(body.get("refundAmount"), "refundAmount")
        reason = _text(body, "refundReason", required=False, max_len=256)
        return self.ledger.refund(merchant, acq, refund_id, amount, reason, now), 0.0, False

    def _sign(self, req_head: dict[str, Any], function: str, reply: Reply, sign_type: str,
              corrupt: bool) -> bytes:
        head = {
            "version": str(req_head.get("version") or "2.0.4"),
            "function": str(req_head.get("function") or function),
            "clientId": str(req_head.get("clientId") or ""),
            "respTime": rfc3339(self.now()),
            "reqMsgId": str(req_head.get("reqMsgId") or ""),
            "reserve": "{}",
        }
        body = {"resultInfo": reply.result_info(), **reply.body}
        wire = build_signed("response", head, body, self._alipay_key, sign_type=sign_type)
        if corrupt:  # scenario 16: one byte of the signature changed
            text = wire.decode("utf-8")
            inner, sig = split_signed(text, "response")
            raw = bytearray(base64.b64decode(sig))
            raw[0] ^= 0x01
            bad = base64.b64encode(bytes(raw)).decode("ascii")
            wire = text.replace(sig, bad).encode("utf-8")
        return wire


def _status_of(code: str) -> str:
    row = result_codes().get(code)
    return row.status if row else "F"
