"""inquiryPayment's and inquiryRefund's answers read as core outcomes (the v1 API's status words).

`result` on an inquiry says only whether the inquiry worked; the payment's
state is `paymentStatus` (SUCCESS, FAIL, PROCESSING, CANCELLED, PENDING:
Antom's inquiryPayment reference). A not-found code says the payment was not
created (yet); any other F on an inquiry says nothing about the payment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Unknown

__all__ = ["PAYMENT_STATUS", "REFUND_STATUS", "read_inquiry"]

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
    return replace(result, query=outcome)
