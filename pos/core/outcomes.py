"""Protocol-neutral gateway outcomes: the only answers the engine ever sees.

Every gateway protocol (the offline acquiring gateway today, the v1 payments
API next) maps its own status words onto these. A timeout, a transport error,
a non-200, an unparseable or unsigned answer, or one that does not echo our
request is `Unknown`: we do not know whether money moved (design rule 2).

`request_id` is the idempotency key the call was made with (merchantTransId,
merchantRefundId, paymentRequestId...), echoed so a caller can check the answer
belongs to its request. On a query, the protocol reads the payment's status
and puts it in `query`; the engine never parses status words itself.

What the engine keeps of an answer arrives in typed fields, filled by the
protocol's client from its own field names: `gateway_id` (Alipay's id for the
payment: the offline acquirementId, the v1 paymentId), `refund_gateway_id`
(Alipay's refundId), `customer_amount` and `conversion_rate` (what the customer
paid in the wallet's currency, and at which rate), and on a query that finds the
payment closed, `result_code` / `result_message`: why it failed (the v1
inquiryPayment's paymentResultCode, such as the code for an expired order
code), so a decline found by a query explains itself. The engine never reads an
answer's body: `data` keeps it (S and U answers) for the protocol's own readers
(the query reading, the back office) and for tests.

Nor does the engine know a protocol's result codes: where a rule depends on why
an F or U answer came (the customer is confirming in the wallet; the cancel came
too late), the protocol's client classifies its own code as a `Cause` (each
protocol's result-code table, pos/data/*result_codes.csv, column `cause`) and
the engine reads only that. A code is still kept, as text, for the journal and
the cashier's plain-words text of a decline (the message catalogue's code.<CODE>).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pos.core.money import Money

__all__ = [
    "Succeeded", "Failed", "Unknown", "GatewayResult", "Gateway", "QueryOutcome", "query_outcome_of",
    "Cause", "cause_of", "QrGateway", "qr_text_of",
]


class Cause(StrEnum):
    """Why an F or U answer came, where one of the engine's rules depends on it. Each protocol's
    client fills it from its own result code; an answer with no such cause has None."""

    # The customer is confirming the payment in the wallet: the only cause for which the
    # customer is asked to look at their app. A system error or a timeout gets a neutral "checking".
    CUSTOMER_CONFIRMING = "CUSTOMER_CONFIRMING"
    # A cancel refused because its window has passed ("refund instead"): the payment's fate is
    # then asked for on the query schedule, not the background corrector's.
    TOO_LATE_TO_CANCEL = "TOO_LATE_TO_CANCEL"


class QueryOutcome(StrEnum):
    PAID = "PAID"            # the payment succeeded
    PENDING = "PENDING"      # created, not finished (customer confirming)
    CLOSED = "CLOSED"        # closed, failed or cancelled: no money moved
    NOT_FOUND = "NOT_FOUND"  # not created (yet): a not-found code
    UNKNOWN = "UNKNOWN"      # no answer we can trust


@dataclass(frozen=True)
class Succeeded:
    """A final S answer whose signature verified. `data` is the response body (never read by the engine)."""

    data: dict[str, Any] = field(default_factory=dict)
    code: str = ""                      # the protocol's result code, as it came
    request_id: str = ""
    query: QueryOutcome | None = None   # set on query answers by the protocol
    req_msg_id: str = ""                # the HTTP request's own id (head.reqMsgId): Alipay's support asks for it
    gateway_id: str = ""                # Alipay's id for the payment (acquirementId / paymentId); "" if none
    refund_gateway_id: str = ""         # Alipay's id for a refund (refundId); "" if none
    customer_amount: Money | None = None   # what the customer paid, in the wallet's currency, when named
    conversion_rate: str | None = None     # the rate from the order's currency to customer_amount's, when named
    refund_amount: Money | None = None     # the amount a refund notification names, when it names one
    # A query answer that finds the payment closed or failed: the payment's own failure code and
    # why (not the answer's `code`, which says only that the query worked); "" when it names none.
    result_code: str = ""
    result_message: str = ""


@dataclass(frozen=True)
class Failed:
    """A final F answer whose signature verified: a business answer."""

    code: str
    message: str = ""
    code_id: str = ""
    request_id: str = ""
    query: QueryOutcome | None = None   # set on query answers by the protocol
    req_msg_id: str = ""
    gateway_id: str = ""                # an F answer may name the payment too: Alipay's id for it
    refund_amount: Money | None = None  # the amount a refund notification names, when it names one
    cause: Cause | None = None          # why, where a rule depends on it (the client classifies its code)


@dataclass(frozen=True)
class Unknown:
    """We do not know the outcome: U, timeout, transport error, bad signature..."""

    reason: str
    code: str | None = None
    request_id: str = ""
    # True when nothing came back over the link (timeout, connection or transport
    # error): the cashier is told the network is down, not just "checking".
    no_answer: bool = False
    # The body of a signed U answer (never read by the engine); empty otherwise.
    data: dict[str, Any] = field(default_factory=dict)
    req_msg_id: str = ""
    # A signed U answer may name the payment (the customer-confirming one does): Alipay's id for it; "" otherwise.
    gateway_id: str = ""
    # A merchant-presented QR pay's signed "in process" answer: the text of the QR code the
    # customer scans (read from the protocol's own fields by its client); empty otherwise.
    qr: str = ""
    # Why, where a rule depends on it (the client classifies its code): CUSTOMER_CONFIRMING.
    cause: Cause | None = None


GatewayResult = Succeeded | Failed | Unknown


def cause_of(result: GatewayResult | None) -> Cause | None:
    """The classified cause of an F or U answer; None for an S answer, no answer, or no such cause."""
    return None if result is None or isinstance(result, Succeeded) else result.cause


def qr_text_of(result: GatewayResult | None) -> str:
    """The QR code a merchant-presented pay's answer carries for the customer to scan, or ""."""
    return result.qr if isinstance(result, Unknown) else ""


def query_outcome_of(result: GatewayResult) -> QueryOutcome:
    """What a query answer says about the payment; anything unread is UNKNOWN."""
    if isinstance(result, Unknown) or result.query is None:
        return QueryOutcome.UNKNOWN
    return result.query


class Gateway(Protocol):
    """What the payments runner needs from a gateway protocol."""

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, goods: str = "") -> GatewayResult:
        """`goods`: the till's line items as AlipayCN's goodsInfo text (pos/core/goods.py); a
        protocol without a field for them leaves them out."""
        ...

    def query(self, *, merchant_trans_id: str) -> GatewayResult: ...

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult: ...

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult: ...


@runtime_checkable
class QrGateway(Protocol):
    """A protocol that offers a merchant-presented QR (the v1 API's order code): the pay whose
    answer is "in process" with the code the customer scans (`Unknown.qr`); the sale then waits on
    queries and the notification like any unknown pay."""

    def qr_pay(self, *, merchant_trans_id: str, amount: Money, order_title: str,
               goods: str = "") -> GatewayResult: ...
