"""Alipay's rows against the journal's sales and refunds: every item in one class, with advice. Pure.

Keys (reference §16): a PAYMENT or CANCEL row's merchantTransId is our sale's
merchantTransId; a REFUND row's merchantTransId (16.2: Partner_transaction_id)
is our merchantRefundId. acquirementId ties a row to the sale when the ids
differ. Rows of another store (storeId set and not ours) and of another terminal
of the same merchant (an id of the journal's form, `<terminal_id>-<YYYYMMDD>-...`,
with another terminal id) are counted, not matched: each terminal reconciles its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.reconcile.parse import AlipayRow

__all__ = ["Class", "ADVICE", "Item", "CurrencyTotals", "Reconciliation", "reconcile"]


class Class(StrEnum):
    MATCHED = "matched"                 # both sides agree (payments and refunds)
    CANCELLED = "cancelled"             # cancelled or reversed on both sides: no money moved
    ALIPAY_ONLY = "alipay_only"         # Alipay has money moving that the journal does not count
    OURS_ONLY = "ours_only"             # the journal counts money Alipay does not report
    MISMATCH = "mismatch"               # both sides know it, amount or currency differ
    OPEN = "open"                       # the journal has not settled it yet (review, pending refund)


# What the manager should do, per class and situation. Stated once; the README repeats it.
ADVICE: dict[str, str] = {
    "alipay_only.payment": "Alipay charged a payment the journal does not have: check whether it is another "
                           "terminal's (storeId); if not, look it up in Alipay's merchant portal and refund it "
                           "there if no goods were handed over",
    "alipay_only.declined": "Alipay charged a payment the terminal showed as declined: the customer paid; "
                            "refund it with 'pos refund' or settle with the customer",
    "alipay_only.cancelled": "Alipay charged a payment the terminal cancelled: call Alipay support with the "
                             "merchantTransId to have it cancelled or refunded",
    "alipay_only.refund": "Alipay refunded money the journal has no refund for: check the merchant portal for "
                          "a refund made outside the terminal",
    "ours_only.payment": "the journal counts this payment as paid but Alipay does not report it: wait for the "
                         "next day's file (late settlement), then ask Alipay support with the merchantTransId",
    "ours_only.refund": "the journal counts this refund but Alipay does not report it: check it with "
                        "'pos journal show' and ask Alipay support with the merchantRefundId",
    "ours_only.cancel_missing": "Alipay reports this payment as paid and later cancelled, but the journal "
                                "still counts it as paid: the customer got the money back; collect again",
    "mismatch.amount": "amount or currency differ: compare the receipt with Alipay's merchant portal; "
                       "the amount Alipay reports is what was charged",
    "open.sale": "the journal has not settled this sale (manual review): Alipay's file says what happened; "
                 "resolve it in the manager's review",
    "open.refund": "the refund is still pending in the journal: the terminal keeps retrying; Alipay's file "
                   "says whether it went through",
    "none": "",
}

# REVERSED: a reversal after the cashier's confirmation (a sale state to come); both mean no money moved.
_CANCELLED = ("CANCELLED", "REVERSED")
# The form of the ids pos.journal makes: <terminal_id>-<YYYYMMDD>-<install id>-[R]<sequence>.
_OUR_ID = re.compile(r"^(?P<terminal>[A-Za-z0-9]+)-\d{8}-[A-Z0-9]+-R?\d{6}$")


@dataclass(frozen=True)
class Item:
    cls: Class
    kind: str                    # payment | refund | cancel
    currency: str
    merchant_trans_id: str       # sale's merchantTransId, or the refund's merchantRefundId
    acquirement_id: str
    ours: Money | None
    theirs: Money | None
    our_state: str
    their_status: str
    where: str                   # "file, line N" of Alipay's row, or "journal"
    advice_key: str = "none"

    @property
    def advice(self) -> str:
        return ADVICE[self.advice_key]

    def as_json(self) -> dict[str, object]:
        return {"class": self.cls.value, "kind": self.kind, "currency": self.currency,
                "id": self.merchant_trans_id, "acquirementId": self.acquirement_id,
                "ours": self.ours.minor if self.ours else None, "alipay": self.theirs.minor if self.theirs else None,
                "ourState": self.our_state, "alipayStatus": self.their_status, "where": self.where,
                "advice": self.advice}


@dataclass
class CurrencyTotals:
    currency: str
    counts: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in Class})
    paid: int = 0           # matched payments, minor units
    refunded: int = 0       # matched refunds
    fees: int = 0           # settlement currency = this currency
    settled: int = 0        # net settlement
    settlement_rows: int = 0
    summary_net: int | None = None    # Alipay's settlement summary, TOTAL row (when the day has one)
    summary_fees: int | None = None

    def as_json(self) -> dict[str, object]:
        return {"currency": self.currency, "counts": dict(self.counts), "paid": self.paid,
                "refunded": self.refunded, "fees": self.fees, "netSettlement": self.settled,
                "settlementRows": self.settlement_rows, "summaryNet": self.summary_net,
                "summaryFees": self.summary_fees}


@dataclass
class Reconciliation:
    date: str
    items: list[Item]
    totals: dict[str, CurrencyTotals]
    other_store: int = 0
    files: list[str] = field(default_factory=list)
    other_terminal: int = 0

    @property
    def problems(self) -> list[Item]:
        return [i for i in self.items if i.cls not in (Class.MATCHED, Class.CANCELLED)]

    @property
    def all_matched(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"date": self.date, "allMatched": self.all_matched, "files": list(self.files),
                "otherStoreRows": self.other_store, "otherTerminalRows": self.other_terminal,
                "currencies": [t.as_json() for t in sorted(self.totals.values(), key=lambda t: t.currency)],
                "items": [i.as_json() for i in self.items]}


def _where(row: AlipayRow) -> str:
    return f"{row.file}, line {row.line}"


def reconcile(date: str, transactions: Iterable[AlipayRow], settlements: Iterable[AlipayRow],
              sales: Sequence[SaleRecord], refunds: Sequence[RefundRecord], *,
              store_id: str = "", terminal_id: str = "", files: Sequence[str] = (),
              summary: Iterable[AlipayRow] = ()) -> Reconciliation:
    """Match one day. `sales`/`refunds`: the journal's items of that day; rows: Alipay's files of that day.

    `summary`: the settlement summary's rows; its TOTAL is shown beside the detail's sums, not matched
    (the published sample's TOTAL is not the sum of its rows, reference §16.1).
    """
    items: list[Item] = []
    other_store = other_terminal = 0
    by_mtid = {s.merchant_trans_id: s for s in sales}
    by_acq = {s.acquirement_id: s for s in sales if s.acquirement_id}
    refunds_by_id = {r.merchant_refund_id: r for r in refunds}
    payments: dict[str, AlipayRow] = {}
    cancels: dict[str, AlipayRow] = {}
    their_refunds: dict[str, AlipayRow] = {}
    for row in transactions:
        if store_id and row.store_id and row.store_id != store_id:
            other_store += 1
            continue
        ours = _OUR_ID.match(row.merchant_trans_id)
        if terminal_id and ours and ours.group("terminal") != terminal_id:
            other_terminal += 1
            continue
        if not row.succeeded:
            continue
        target = {"PAYMENT": payments, "CANCEL": cancels, "REFUND": their_refunds}[row.kind]
        target[row.merchant_trans_id] = row

    def sale_for(row: AlipayRow) -> SaleRecord | None:
        return by_mtid.get(row.merchant_trans_id) or (by_acq.get(row.acquirement_id) if row.acquirement_id else None)

    seen_sales: set[int] = set()
    for mtid, row in payments.items():
        sale = sale_for(row)
        cancel = cancels.get(mtid)
        if sale is None:
            cls, key = (Class.CANCELLED, "none") if cancel else (Class.ALIPAY_ONLY, "alipay_only.payment")
            items.append(_item(cls, "payment", row, None, "-", key))
            continue
        seen_sales.add(sale.sale_id)
        state = str(sale.state)
        if cancel is not None:  # paid, then cancelled at Alipay: no money moved
            if state in _CANCELLED:
                items.append(_item(Class.CANCELLED, "cancel", row, sale.amount, state))
            elif state == SaleState.PAID:
                items.append(_item(Class.OURS_ONLY, "cancel", row, sale.amount, state, "ours_only.cancel_missing"))
            elif state == SaleState.DECLINED:
                items.append(_item(Class.CANCELLED, "cancel", row, sale.amount, state))
            else:
                items.append(_item(Class.OPEN, "cancel", row, sale.amount, state, "open.sale"))
            continue
        if state == SaleState.PAID:
            if sale.amount == row.amount:
                items.append(_item(Class.MATCHED, "payment", row, sale.amount, state))
            else:
                items.append(_item(Class.MISMATCH, "payment", row, sale.amount, state, "mismatch.amount"))
        elif state in _CANCELLED:
            items.append(_item(Class.ALIPAY_ONLY, "payment", row, sale.amount, state, "alipay_only.cancelled"))
        elif state == SaleState.DECLINED:
            items.append(_item(Class.ALIPAY_ONLY, "payment", row, sale.amount, state, "alipay_only.declined"))
        else:
            items.append(_item(Class.OPEN, "payment", row, sale.amount, state, "open.sale"))
    for mtid, row in cancels.items():
        if mtid in payments:
            continue
        sale = sale_for(row)
        if sale is not None:
            seen_sales.add(sale.sale_id)
        state = str(sale.state) if sale else "-"
        if sale is not None and state == SaleState.PAID:
            items.append(_item(Class.OURS_ONLY, "cancel", row, sale.amount, state, "ours_only.cancel_missing"))
        elif sale is not None and state not in _CANCELLED and state != SaleState.DECLINED:
            items.append(_item(Class.OPEN, "cancel", row, sale.amount, state, "open.sale"))
        else:
            items.append(_item(Class.CANCELLED, "cancel", row, sale.amount if sale else None, state))
    for sale in sales:
        if sale.sale_id in seen_sales:
            continue
        state = str(sale.state)
        if state == SaleState.PAID:
            items.append(_ours(Class.OURS_ONLY, "payment", sale.merchant_trans_id, sale.acquirement_id or "",
                               sale.amount, state, "ours_only.payment"))
        elif state in _CANCELLED:
            items.append(_ours(Class.CANCELLED, "cancel", sale.merchant_trans_id, sale.acquirement_id or "",
                               sale.amount, state, "none"))
        elif state != SaleState.DECLINED:
            items.append(_ours(Class.OPEN, "payment", sale.merchant_trans_id, sale.acquirement_id or "",
                               sale.amount, state, "open.sale"))
    seen_refunds: set[int] = set()
    for rid, row in their_refunds.items():
        refund = refunds_by_id.get(rid)
        if refund is None:
            items.append(_item(Class.ALIPAY_ONLY, "refund", row, None, "-", "alipay_only.refund"))
            continue
        seen_refunds.add(refund.refund_id)
        state = str(refund.state)
        if state == RefundState.REFUNDED:
            cls, key = (Class.MATCHED, "none") if refund.amount == row.amount else (Class.MISMATCH, "mismatch.amount")
        elif state == RefundState.REFUND_DECLINED:
            cls, key = Class.ALIPAY_ONLY, "alipay_only.refund"
        else:
            cls, key = Class.OPEN, "open.refund"
        items.append(_item(cls, "refund", row, refund.amount, state, key))
    for refund in refunds:
        if refund.refund_id in seen_refunds:
            continue
        state = str(refund.state)
        if state == RefundState.REFUNDED:
            items.append(_ours(Class.OURS_ONLY, "refund", refund.merchant_refund_id, refund.acquirement_id,
                               refund.amount, state, "ours_only.refund"))
        elif state != RefundState.REFUND_DECLINED:
            items.append(_ours(Class.OPEN, "refund", refund.merchant_refund_id, refund.acquirement_id,
                               refund.amount, state, "open.refund"))
    totals: dict[str, CurrencyTotals] = {}
    for it in items:
        t = totals.setdefault(it.currency, CurrencyTotals(it.currency))
        t.counts[it.cls.value] += 1
        if it.cls == Class.MATCHED and it.theirs is not None:
            if it.kind == "payment":
                t.paid += it.theirs.minor
            else:
                t.refunded += it.theirs.minor
    for row in settlements:
        if store_id and row.store_id and row.store_id != store_id:
            continue
        if row.settlement is None:
            continue
        t = totals.setdefault(row.settlement.currency, CurrencyTotals(row.settlement.currency))
        t.settled += row.settlement.minor
        t.fees += row.fee.minor if row.fee else 0
        t.settlement_rows += 1
    for row in summary:
        if row.kind != "TOTAL" or row.settlement is None:
            continue
        t = totals.setdefault(row.settlement.currency, CurrencyTotals(row.settlement.currency))
        t.summary_net = (t.summary_net or 0) + row.settlement.minor
        t.summary_fees = (t.summary_fees or 0) + (row.fee.minor if row.fee else 0)
    order = list(Class)
    items.sort(key=lambda i: (i.currency, order.index(i.cls), i.merchant_trans_id))
    return Reconciliation(date, items, totals, other_store, list(files), other_terminal)


def _item(cls: Class, kind: str, row: AlipayRow, ours: Money | None, state: str, key: str = "none") -> Item:
    return Item(cls, kind, row.amount.currency, row.merchant_trans_id, row.acquirement_id, ours, row.amount,
                state, row.status, _where(row), key)


def _ours(cls: Class, kind: str, mtid: str, acq: str, amount: Money, state: str, key: str) -> Item:
    return Item(cls, kind, amount.currency, mtid, acq, amount, None, state, "-", "journal", key)
