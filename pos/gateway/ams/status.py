"""inquiryPayment's and inquiryRefund's answers read as core outcomes (the v1 API's status words).

`result` on an inquiry says only whether the inquiry worked; the payment's
state is `paymentStatus` (SUCCESS, FAIL, PROCESSING, CANCELLED, PENDING:
Antom's inquiryPayment reference). A not-found code says the payment was not
created (yet); any other F on an inquiry says nothing about the payment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded, Unknown

__all__ = ["PAYMENT_STATUS", "REFUND_STATUS", "read_inquiry", "customer_amount"]

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


def customer_amount(result: GatewayResult) -> GatewayResult:
    """What the customer paid in the wallet's currency, named as the core reads it (payAmount, conversionRate).

    Antom's inquiryPayment reference (in-store): `actualPaymentAmount` is the amount the
    customer actually paid (the payment amount times the payment quote; equal to it when
    no currency was converted) and `paymentQuote` the rate between the payment currency
    and that currency (`quoteCurrencyPair` "SGD/CNY", `quotePrice`; absent when none).
    The pay answer and notifyPayment carry the same fields (the SDK's response models).
    """
    return _paid_amount(result) if isinstance(result, Succeeded) else result


def _paid_amount(result: Succeeded) -> Succeeded:
    if "payAmount" in result.data:
        return result
    actual = result.data.get("actualPaymentAmount")
    if not isinstance(actual, dict):
        return result
    data = dict(result.data)
    data["payAmount"] = actual
    quote = result.data.get("paymentQuote")
    if isinstance(quote, dict) and isinstance(quote.get("quotePrice"), (str, int, float)):
        pair = str(quote.get("quoteCurrencyPair") or "")
        source, _, target = pair.partition("/")
        data["conversionRate"] = {"sourceCurrency": source, "targetCurrency": target,
                                  "rate": str(quote["quotePrice"])}
    return replace(result, data=data)


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
    return replace(_paid_amount(result), query=outcome)
