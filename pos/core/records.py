"""What the journal stores and the engine works on: sale and refund records.

Records are frozen dataclasses with Money amounts, so `pos journal`, the till
interface and `pos doctor` can read them without touching the engine. The
engine keeps its own mutable working copy and hands back a new record after
every transition (pos/core/engine.py); the journal commits it before the command
that follows runs (design rule 1, "write before you send").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pos.core.money import Money
from pos.core.outcomes import Cause
from pos.core.redact import mask_code  # the stored form; re-exported for the records' users

__all__ = [
    "Request", "SaleState", "RefundState", "SaleRecord", "RefundRecord", "EventRecord",
    "SALE_FINAL", "SALE_SETTLED_FOR_CASHIER", "SALE_ACTIVE", "SALE_ABORTABLE", "REFUND_FINAL",
    "REFUND_SETTLED_FOR_MANAGER", "SALE_NEEDS_MANAGER", "Resolution", "RESOLUTIONS", "mask_code", "QR_SALE_MARK",
]


# What a merchant-presented QR sale stores where a code sale stores the masked customer code:
# the customer presented no code (they scanned ours), so there is nothing to mask.
QR_SALE_MARK = "QR"

# The requests the engine sends to the gateway.
Request = Literal["pay", "query", "cancel", "refund", "reverse"]

# How a manager settles a PAID_LATE sale: give the money back now, or the goods were given after all.
Resolution = Literal["refund", "goods_given"]
RESOLUTIONS: tuple[Resolution, ...] = ("refund", "goods_given")


class SaleState(StrEnum):
    CREATED = "CREATED"              # merchantTransId committed, pay not sent
    PAYING = "PAYING"                # pay is (maybe) out
    QUERYING = "QUERYING"            # outcome unknown: polling payQuery
    CANCELLING = "CANCELLING"        # sending payCancel
    PAID = "PAID"                    # a verified Succeeded (pay or payQuery)
    DECLINED = "DECLINED"            # a verified F, or a trustworthy CLOSED status
    CANCELLED = "CANCELLED"          # payCancel S: as if it never happened (reference §8)
    MANUAL_REVIEW = "MANUAL_REVIEW"  # cancel F or still U: a human must look (seed 003 note 3)
    REVERSING = "REVERSING"          # found paid after the cashier was told "No goods": refunding it in full
    REVERSED = "REVERSED"            # that full refund succeeded: charged and given back, net zero
    # Found paid after "No goods" and left to the manager ([payment] late_success = "manager", a
    # declined reversal, or no acquirementId to refund): the customer is charged and has no goods.
    # The manager refunds it (REVERSING) or records that the goods were given (PAID).
    PAID_LATE = "PAID_LATE"


class RefundState(StrEnum):
    REFUND_CREATED = "REFUND_CREATED"
    REFUNDING = "REFUNDING"
    REFUNDED = "REFUNDED"
    REFUND_DECLINED = "REFUND_DECLINED"
    REFUND_PENDING = "REFUND_PENDING"   # retries exhausted: the background corrector keeps trying


# The groups of states every module asks about, stated once. The transition
# tables (pos/core/sale.py, pos/core/refund.py) are checked against them by tests.

# Final: nothing more will ever happen to the item.
SALE_FINAL = frozenset({SaleState.PAID, SaleState.DECLINED, SaleState.CANCELLED, SaleState.REVERSED})
# The cashier's interaction is over (MANUAL_REVIEW is handed to the manager;
# REVERSING gives back a charge the cashier already called "No goods"; PAID_LATE waits for the manager).
SALE_SETTLED_FOR_CASHIER = SALE_FINAL | {SaleState.MANUAL_REVIEW, SaleState.REVERSING, SaleState.PAID_LATE}
# Only a person can settle these: the manager's list (with what Alipay's support needs).
SALE_NEEDS_MANAGER = frozenset({SaleState.MANUAL_REVIEW, SaleState.PAID_LATE})
# The terminal is busy with this sale: a new scan is refused (design rule 4).
SALE_ACTIVE = frozenset({SaleState.CREATED, SaleState.PAYING, SaleState.QUERYING, SaleState.CANCELLING})
# The cashier may still give up on the sale (once cancelling, it is already being undone).
SALE_ABORTABLE = frozenset({SaleState.CREATED, SaleState.PAYING, SaleState.QUERYING})
REFUND_FINAL = frozenset({RefundState.REFUNDED, RefundState.REFUND_DECLINED})
# The manager's wait is over: REFUND_PENDING is left to the background corrector.
REFUND_SETTLED_FOR_MANAGER = REFUND_FINAL | {RefundState.REFUND_PENDING}


@dataclass(frozen=True)
class SaleRecord:
    sale_id: int
    merchant_trans_id: str
    amount: Money
    code_masked: str
    order_title: str
    reference: str
    state: SaleState
    created_at: float           # epoch seconds, from the terminal's clock
    updated_at: float
    local_date: str             # YYYY-MM-DD in the terminal's time zone
    scanned_at: float
    pay_sent_at: float | None = None
    querying_since: float | None = None
    query_count: int = 0
    not_found_count: int = 0    # consecutive not-found answers to payQuery
    cancel_attempts: int = 0
    acquirement_id: str | None = None
    result_code: str | None = None
    result_message: str = ""
    # The last answer's cause, as its protocol's client classified its code (pos/core/outcomes.py).
    result_cause: Cause | None = None
    abort_requested: bool = False
    next_request: Request | None = None   # what the engine will send next
    next_at: float | None = None      # when (epoch seconds)
    alarmed: bool = False
    finished_at: float | None = None
    resolved_by_corrector: bool = False
    # The full refund that gives back a charge found after "No goods" (REVERSING):
    # its merchantRefundId is committed before the refund is sent.
    reversal_id: str | None = None
    reversal_gateway_id: str | None = None   # Alipay's refundId for it
    reversal_attempts: int = 0
    # What the customer paid when the wallet charged another currency (AlipayCN
    # customers pay in CNY): payAmount and conversionRate as the gateway gave them.
    pay_amount_minor: int | None = None
    pay_currency: str | None = None
    conversion_rate: str | None = None
    # The till's line items, as AlipayCN's goodsInfo text (pos/core/goods.py); "" = none given.
    goods: str = ""

    @property
    def is_final(self) -> bool:
        return self.state in SALE_FINAL

    @property
    def is_active(self) -> bool:
        return self.state in SALE_ACTIVE

    @property
    def is_qr(self) -> bool:
        """A merchant-presented QR sale: the customer scanned the terminal's code, not the other way round."""
        return self.code_masked == QR_SALE_MARK

    @property
    def code_last4(self) -> str:
        """The last 4 digits of the customer's code; empty for a QR sale (no customer code)."""
        return "" if self.is_qr else self.code_masked[-4:]


@dataclass(frozen=True)
class RefundRecord:
    refund_id: int
    sale_id: int
    merchant_refund_id: str
    acquirement_id: str
    amount: Money
    reason: str
    state: RefundState
    created_at: float
    updated_at: float
    local_date: str
    attempts: int = 0
    result_code: str | None = None
    result_message: str = ""
    gateway_refund_id: str | None = None
    next_at: float | None = None
    alarmed: bool = False
    finished_at: float | None = None

    @property
    def is_final(self) -> bool:
        return self.state in REFUND_FINAL


@dataclass(frozen=True)
class EventRecord:
    """One line of the append-only audit log."""

    event_id: int
    at: float
    item_kind: str     # "sale" | "refund"
    item_id: int
    trigger: str
    source: str
    dest: str
    detail: str
