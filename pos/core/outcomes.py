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
paid in the wallet's currency, and at which rate). The engine never reads an
answer's body: `data` keeps it (S and U answers) for the protocol's own readers
(the query reading, the back office) and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pos.core.money import Money

__all__ = [
    "Succeeded", "Failed", "Unknown", "GatewayResult", "Gateway", "QueryOutcome", "query_outcome_of",
    "CUSTOMER_CONFIRMING", "CANCEL_TOO_LATE", "QrGateway", "qr_text_of",
]


# The result codes with which a gateway says the customer is confirming the payment in
# the wallet (offline: USER_PAYING; the v1 API: PAYMENT_IN_PROCESS, or USER_PAYING): the
# only cause for which the customer is asked to look at their app. A system error or a
# timeout gets a neutral "checking".
CUSTOMER_CONFIRMING = frozenset({"USER_PAYING", "PAYMENT_IN_PROCESS"})

# The cancel codes that say the cancel window has passed (both protocols: "refund instead").
# The payment's fate is then asked for on the query schedule, not the background corrector's.
CANCEL_TOO_LATE = frozenset({"CANCEL_EXPIRED"})


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
    code: str = "SUCCESS"
    request_id: str = ""
    query: QueryOutcome | None = None   # set on query answers by the protocol
    req_msg_id: str = ""                # the HTTP request's own id (head.reqMsgId): Alipay's support asks for it
    gateway_id: str = ""                # Alipay's id for the payment (acquirementId / paymentId); "" if none
    refund_gateway_id: str = ""         # Alipay's id for a refund (refundId); "" if none
    customer_amount: Money | None = None   # what the customer paid, in the wallet's currency, when named
    conversion_rate: str | None = None     # the rate from the order's currency to customer_amount's, when named
    refund_amount: Money | None = None     # the amount a refund notification names, when it names one


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
    # A signed U answer may name the payment (USER_PAYING does): Alipay's id for it; "" otherwise.
    gateway_id: str = ""
    # A merchant-presented QR pay's signed "in process" answer: the text of the QR code the
    # customer scans (read from the protocol's own fields by its client); empty otherwise.
    qr: str = ""


GatewayResult = Succeeded | Failed | Unknown


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
