"""X and Z reports: counts and sums per currency for one business day.

An X report shows the running totals of the open business day; a Z report
shows the same and closes the day (the journal records the close, and the next
day starts empty). Pure functions over journal records: the caller reads the
records and stores the close.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pos.core.money import Money
from pos.core.records import REFUND_FINAL, SALE_FINAL

__all__ = ["DayTotals", "Report", "build_report", "report_rows"]


# Read-only members: the journal's records are frozen, and their states are str enums.
class _SaleLike(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def amount(self) -> Money: ...
    @property
    def merchant_trans_id(self) -> str: ...
    @property
    def acquirement_id(self) -> str | None: ...


class _RefundLike(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def amount(self) -> Money: ...
    @property
    def merchant_refund_id(self) -> str: ...




@dataclass
class DayTotals:
    currency: str
    sales_count: int = 0
    sales_minor: int = 0
    refunds_count: int = 0
    refunds_minor: int = 0
    cancels_count: int = 0
    cancels_minor: int = 0
    declines_count: int = 0
    declines_minor: int = 0
    # Charged after "No goods" and refunded in full: money in and out, net zero.
    reversals_count: int = 0
    reversals_minor: int = 0
    # Charged after "No goods" and waiting for the manager (PAID_LATE): money in, no goods out.
    # Counted in the net (the merchant holds it) until the manager refunds it.
    paid_late_count: int = 0
    paid_late_minor: int = 0

    @property
    def net(self) -> Money:
        return Money(self.sales_minor + self.paid_late_minor - self.refunds_minor, self.currency)


@dataclass
class Report:
    kind: str                      # "X" or "Z"
    business_day: int
    opened_at: str
    closed_at: str | None
    totals: dict[str, DayTotals] = field(default_factory=dict)
    open_items: list[str] = field(default_factory=list)      # not final yet (being resolved)
    manual_review: list[str] = field(default_factory=list)   # need a person
    # Alipay's id for each of those, when known: what its support asks for first
    acquirement_ids: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def amt(minor: int, currency: str) -> dict[str, Any]:
            m = Money(minor, currency)
            return {"value": minor, "currency": currency, "text": m.major_str()}

        return {
            "kind": self.kind,
            "businessDay": self.business_day,
            "openedAt": self.opened_at,
            "closedAt": self.closed_at,
            "currencies": [
                {
                    "currency": c,
                    "sales": {"count": t.sales_count, "amount": amt(t.sales_minor, c)},
                    "refunds": {"count": t.refunds_count, "amount": amt(t.refunds_minor, c)},
                    "cancels": {"count": t.cancels_count, "amount": amt(t.cancels_minor, c)},
                    "declines": {"count": t.declines_count, "amount": amt(t.declines_minor, c)},
                    "reversals": {"count": t.reversals_count, "amount": amt(t.reversals_minor, c)},
                    "paidLate": {"count": t.paid_late_count, "amount": amt(t.paid_late_minor, c)},
                    "net": amt(t.net.minor, c),
                }
                for c, t in sorted(self.totals.items())
            ],
            "openItems": list(self.open_items),
            "manualReview": list(self.manual_review),
            "manualReviewAcquirementIds": dict(self.acquirement_ids),
        }


class _TotalLike(Protocol):
    """Items of one currency in one state, counted and summed (the journal's StateTotal)."""

    @property
    def currency(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def minor(self) -> int: ...


def _add_sales(t: DayTotals, state: str, count: int, minor: int) -> bool:
    """Count final sales into the day's totals; False for a state the totals do not count."""
    if state == "PAID":
        t.sales_count += count
        t.sales_minor += minor
    elif state == "CANCELLED":
        t.cancels_count += count
        t.cancels_minor += minor
    elif state == "DECLINED":
        t.declines_count += count
        t.declines_minor += minor
    elif state == "REVERSED":
        t.reversals_count += count
        t.reversals_minor += minor
    else:
        return False
    return True


def build_report(kind: str, business_day: int, opened_at: str, closed_at: str | None,
                 sales: Iterable[_SaleLike], refunds: Iterable[_RefundLike], *,
                 sale_totals: Iterable[_TotalLike] = (), refund_totals: Iterable[_TotalLike] = ()) -> Report:
    """The report of the day's sales and refunds.

    Items may come one by one (`sales`, `refunds`) or already totalled per currency
    and state (`sale_totals`, `refund_totals`, summed by the journal); a currency
    any of them has is on the report, as are the items that are not final, in the
    order given."""
    report = Report(kind, business_day, opened_at, closed_at)

    def totals(currency: str) -> DayTotals:
        return report.totals.setdefault(currency, DayTotals(currency))

    for group in sale_totals:
        _add_sales(totals(group.currency), group.state, group.count, group.minor)
    for sale in sales:
        t = totals(sale.amount.currency)
        if _add_sales(t, sale.state, 1, sale.amount.minor):
            continue
        if sale.state in ("MANUAL_REVIEW", "PAID_LATE"):
            if sale.state == "PAID_LATE":   # charged with no goods given: counted in the net until refunded
                t.paid_late_count += 1
                t.paid_late_minor += sale.amount.minor
            report.manual_review.append(sale.merchant_trans_id)
            if sale.acquirement_id:
                report.acquirement_ids[sale.merchant_trans_id] = sale.acquirement_id
        elif sale.state not in SALE_FINAL:
            report.open_items.append(sale.merchant_trans_id)
    for group in refund_totals:
        t = totals(group.currency)
        if group.state == "REFUNDED":
            t.refunds_count += group.count
            t.refunds_minor += group.minor
    for refund in refunds:
        t = totals(refund.amount.currency)
        if refund.state == "REFUNDED":
            t.refunds_count += 1
            t.refunds_minor += refund.amount.minor
        elif refund.state == "REFUND_PENDING":
            report.manual_review.append(refund.merchant_refund_id)
        elif refund.state not in REFUND_FINAL:
            report.open_items.append(refund.merchant_refund_id)
    return report


def report_rows(report: Report) -> list[tuple[str, str]]:
    """The report as (label, value) rows for a printed receipt."""
    rows: list[tuple[str, str]] = [("Business day", str(report.business_day)),
                                   ("From", report.opened_at)]
    if report.closed_at:
        rows.append(("To", report.closed_at))
    if not report.totals:
        rows.append(("No transactions", ""))
    for currency, t in sorted(report.totals.items()):
        rows.append((f"-- {currency}", ""))
        rows.append((f"Sales x{t.sales_count}", Money(t.sales_minor, currency).receipt()))
        rows.append((f"Refunds x{t.refunds_count}", Money(t.refunds_minor, currency).receipt()))
        rows.append((f"Cancelled x{t.cancels_count}", Money(t.cancels_minor, currency).receipt()))
        rows.append((f"Declined x{t.declines_count}", Money(t.declines_minor, currency).receipt()))
        if t.reversals_count:
            rows.append((f"Reversed x{t.reversals_count}", Money(t.reversals_minor, currency).receipt()))
        if t.paid_late_count:
            rows.append((f"Paid late x{t.paid_late_count}", Money(t.paid_late_minor, currency).receipt()))
        rows.append(("NET", t.net.receipt()))
    rows.append(("Open items", str(len(report.open_items))))
    rows += [("", x) for x in report.open_items]
    rows.append(("Need a manager", str(len(report.manual_review))))
    for x in report.manual_review:
        rows.append(("", x))
        if x in report.acquirement_ids:
            rows.append(("", f"Alipay {report.acquirement_ids[x]}"))
    return rows
