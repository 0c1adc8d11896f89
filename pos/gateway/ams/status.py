"""inquiryPayment's and inquiryRefund's answers read as core outcomes (the v1 API's status words).

`result` on an inquiry says only whether the inquiry worked; the payment's
state is `paymentStatus` (SUCCESS, FAIL, PROCESSING, CANCELLED, PENDING:
Antom's inquiryPayment reference). A not-found code says the payment was not
created (yet); any other F on an inquiry says nothing about the payment.

The ids and amounts the engine keeps are read here from the v1 field names
(`paymentId`, `refundId`, `actualPaymentAmount`, `paymentQuote`) into the
outcomes' typed fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded, Unknown
from pos.gateway.fields import id_text, wire_money

__all__ = ["PAYMENT_STATUS", "REFUND_STATUS", "read_inquiry", "customer_amount", "read_ids", "failure_of"]

PAYMENT_STATUS: dict[str, QueryOutcome] = {
    "SUCCESS": QueryOutcome.PAID,
    "PROCESSING": QueryOutcome.PENDING,
    # PENDING: "payment completed, waiting for the final result": money may have
    # moved, so keep querying rather than call it closed.
    "PENDING": QueryOutcome.PENDING,
    "FAIL": QueryOutcome.CLOSED,
    "CANCELLED": QueryOutcome.CLOSED,
}

# inquiryRefund's refundStatus (read by the client's inquiry_refund).
REFUND_STATUS = ("SUCCESS", "PROCESSING", "FAIL")


def customer_amount(result: GatewayResult, body: Mapping[str, Any]) -> GatewayResult:
    """`result` with what the customer paid in the wallet's currency set (customer_amount, conversion_rate).

    Antom's inquiryPayment reference (in-store): `actualPaymentAmount` is the amount the
    customer actually paid (the payment amount times the payment quote; equal to it when
    no currency was converted) and `paymentQuote` the rate between the payment currency
    and that currency (`quoteCurrencyPair` "SGD/CNY", `quotePrice`; absent when none).
    The pay answer and notifyPayment carry the same fields (the SDK's response models).
    """
    return _paid_amount(result, body) if isinstance(result, Succeeded) else result


def _paid_amount(result: Succeeded, body: Mapping[str, Any]) -> Succeeded:
    actual = body.get("actualPaymentAmount")
    if not isinstance(actual, dict):
        return result
    rate = None
    quote = body.get("paymentQuote")
    if isinstance(quote, dict) and isinstance(quote.get("quotePrice"), (str, int, float)):
        rate = str(quote["quotePrice"]) or None
    return replace(result, customer_amount=wire_money(actual), conversion_rate=rate)


def read_ids(result: GatewayResult, body: Mapping[str, Any]) -> GatewayResult:
    """`result` with Alipay's ids its answer body names: paymentId (gateway_id) and refundId."""
    gateway_id = id_text(body.get("paymentId"))
    if isinstance(result, Succeeded):
        return replace(result, gateway_id=gateway_id, refund_gateway_id=id_text(body.get("refundId")))
    return replace(result, gateway_id=gateway_id)


def read_inquiry(result: GatewayResult, not_found_codes: Iterable[str]) -> GatewayResult:
    """An inquiryPayment answer with what it says about the payment set in `query`."""
    if isinstance(result, Unknown):
        return result
    if isinstance(result, Failed):
        outcome = QueryOutcome.NOT_FOUND if result.code in set(not_found_codes) else QueryOutcome.UNKNOWN
        return replace(result, query=outcome)
    status = result.data.get("paymentStatus")
    outcome = PAYMENT_STATUS.get(status.upper(), QueryOutcome.UNKNOWN) if isinstance(status, str) else \
        QueryOutcome.UNKNOWN
    read = replace(_paid_amount(result, result.data), query=outcome)
    return failure_of(read, result.data) if outcome is QueryOutcome.CLOSED else read


def failure_of(result: Succeeded, body: Mapping[str, Any]) -> Succeeded:
    """A closed payment's own failure code and why: inquiryPayment's `paymentResultCode` and
    `paymentResultMessage` (Antom's inquiryPayment reference: returned when paymentStatus is FAIL),
    as `result_code` / `result_message`. An unreadable or absent code leaves them empty."""
    code, message = body.get("paymentResultCode"), body.get("paymentResultMessage")
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        return result
    return replace(result, result_code=code.strip(),
                   result_message=message[:256] if isinstance(message, str) else "")
