"""The v1 sandbox's signed notifications (notifyPayment, notifyRegistrationStatus), sent as Alipay does.

One delivery: the body signed with Alipay's key over `POST <path>\\n<client-id>.<request-time>.<body>`,
and acknowledged only by the merchant's signed SUCCESS answer (the documented reply).
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime
from typing import Any

import requests

from pos.gateway.ams.client import request_time
from pos.gateway.ams.signing import parse_signature_header, sign, sign_content, signature_header, verify
from pos.gateway.signing import compact_json

__all__ = ["deliver_notice"]


def deliver_notice(url: str, merchant: str, body: dict[str, Any], now: datetime, *, alipay_key: Any,
                   key_version: int, merchant_key: Any) -> bool:
    """POST one signed notification; True only when the merchant acknowledged it with a signed S."""
    raw = compact_json(body).encode("utf-8")
    path = urllib.parse.urlsplit(url).path or "/"
    moment = request_time(now)
    signature = sign(sign_content("POST", path, merchant, moment, raw), alipay_key)
    headers = {"Content-Type": "application/json", "client-id": merchant, "request-time": moment,
               "signature": signature_header(signature, key_version)}
    try:
        answer = requests.post(url, data=raw, headers=headers, timeout=5)
        reply = json.loads(answer.content)
    except (requests.RequestException, ValueError):
        return False
    if answer.status_code != 200 or not isinstance(reply, dict):
        return False
    parsed = parse_signature_header(answer.headers.get("signature"))
    moment_back = answer.headers.get("response-time") or ""
    if parsed is None or not verify(sign_content("POST", path, merchant, moment_back, answer.content),
                                    parsed.signature, merchant_key):
        return False
    result = reply.get("result")
    return isinstance(result, dict) and result.get("resultStatus") == "S"
