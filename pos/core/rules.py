"""The business rules a sale or a refund must pass before anything is created.

Each rule is stated here once; the engine, the runner, the terminal and the
till all ask these functions. A rule that does not hold is answered with a
`Refusal` value (a stable `reason` for code to branch on and a sentence for
people), never raised: whoever asked decides how to show it (a display key,
an HTTP problem, a CLI line).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState

__all__ = ["Refusal", "check_sale_amount", "refund_left", "check_refund"]


@dataclass(frozen=True)
class Refusal:
    """Why a sale or refund may not start. Nothing was created."""

    # busy, recovering, stopping, scan_too_old, no_code, not_positive, over_max_amount,
    # no_sale, not_paid, no_acquirement_id, wrong_currency, nothing_left, over_left, over_refund_limit
    reason: str
    message: str


def check_sale_amount(amount: Money, max_amount: Money | None) -> Refusal | None:
    """A sale's amount must be above zero and at most [payment] max_amount."""
    if amount.minor <= 0:
        return Refusal("not_positive", f"the amount must be above zero, got {amount.receipt()}")
    if max_amount is not None and amount.currency == max_amount.currency and amount > max_amount:
        return Refusal("over_max_amount", f"{amount.receipt()} is more than [payment] max_amount "
                                          f"({max_amount.receipt()}): check the amount")
    return None


def refund_left(sale: SaleRecord, refunds: Iterable[RefundRecord]) -> Money:
    """What can still be refunded on `sale`. Pending and in-flight refunds count: they may still succeed."""
    taken = sum((r.amount.minor for r in refunds
                 if r.sale_id == sale.sale_id and r.state is not RefundState.REFUND_DECLINED), 0)
    return Money(sale.amount.minor - taken, sale.amount.currency)


def check_refund(sale: SaleRecord, refunds: Iterable[RefundRecord], amount: Money,
                 limit: Money | None = None) -> Refusal | None:
    """May `amount` be refunded on `sale` now (reference §9, §13)? `limit` is [manager] refund_limit."""
    if sale.state is not SaleState.PAID:
        return Refusal("not_paid", f"sale {sale.merchant_trans_id} is {sale.state.value}, not PAID: "
                                   "only a paid sale can be refunded")
    if not sale.acquirement_id:
        return Refusal("no_acquirement_id",
                       f"sale {sale.merchant_trans_id} has no Alipay transaction id (acquirementId) on "
                       "record, so it cannot be refunded here: refund it in the merchant portal")
    if amount.currency != sale.amount.currency:
        return Refusal("wrong_currency", f"the refund is in {amount.currency} but the sale was in "
                                         f"{sale.amount.currency}: refund in {sale.amount.currency}")
    left = refund_left(sale, refunds)
    if left.minor <= 0:
        return Refusal("nothing_left", f"sale {sale.merchant_trans_id} has been refunded in full")
    if amount.minor <= 0:
        return Refusal("not_positive", "the refund amount must be above zero")
    if amount > left:
        taken = Money(sale.amount.minor - left.minor, sale.amount.currency)
        return Refusal("over_left",
                       f"refund of {amount.receipt()} is more than is left to refund on sale "
                       f"{sale.merchant_trans_id}: {left.receipt()} of {sale.amount.receipt()} "
                       f"(refunds so far, pending included: {taken.receipt()})")
    if limit is not None and amount.currency == limit.currency and amount > limit:
        return Refusal("over_refund_limit",
                       f"{amount.receipt()} is more than [manager] refund_limit ({limit.receipt()})")
    return None
