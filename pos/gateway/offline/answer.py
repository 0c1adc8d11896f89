"""What the engine keeps of an offline answer, read from the protocol's own field names.

The core's outcomes carry typed fields (pos/core/outcomes.py); this is the one
place that knows where the offline protocol puts them: `acquirementId` (Alipay's
id for the payment), `refundId`, `payAmount` (what the customer paid in the
wallet's currency) and `conversionRate` (an object with `rate`, or a bare value).
An F or U answer's code is classified here too (its `cause`, from the result-code
table: pos/gateway/offline/codes.py). Used by the client, the in-process sandbox
gateway and the notify.pay reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pos.core.outcomes import GatewayResult, Succeeded
from pos.gateway.fields import id_text, wire_money
from pos.gateway.offline.codes import classified

__all__ = ["read_fields", "conversion_rate"]


def conversion_rate(value: Any) -> str | None:
    """conversionRate as text: an object's `rate` (or `value`), or a bare number or string."""
    if isinstance(value, dict):
        value = value.get("rate") or value.get("value")
    return str(value) if isinstance(value, (str, int, float)) else None


def read_fields(result: GatewayResult, body: Mapping[str, Any]) -> GatewayResult:
    """`result` with the ids and amounts its answer body names, and its code's cause, set in its typed fields."""
    gateway_id = id_text(body.get("acquirementId"))
    if not isinstance(result, Succeeded):
        return classified(replace(result, gateway_id=gateway_id))
    return replace(result, gateway_id=gateway_id, refund_gateway_id=id_text(body.get("refundId")),
                   customer_amount=wire_money(body.get("payAmount")),
                   conversion_rate=conversion_rate(body.get("conversionRate")))
