"""Reading the journal: lookups, lists for reports, and the checks `pos doctor` and `pos status` run.

`JournalReads` is the reading half of `Journal` (pos/journal/journal.py); it
only needs the journal's `JournalDB`. Every SQLite error while reading
becomes a `JournalError` with the file named, so callers never see sqlite3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date
from typing import Any

from pos.core.records import (
    REFUND_FINAL,
    SALE_FINAL,
    SALE_NEEDS_MANAGER,
    EventRecord,
    RefundRecord,
    RefundState,
    SaleRecord,
    SaleState,
)
from pos.journal.db import JournalDB, JournalError
from pos.journal.rows import to_refund, to_sale

__all__ = ["DayFigures", "JournalReads", "OpenCounts", "StateTotal"]

# Open items are found by the states they can be in (`state IN`, over the index on
# state), never by the states they are not in (`NOT IN` reads every row ever written).
SALE_OPEN = tuple(sorted(s.value for s in SaleState if s not in SALE_FINAL))
REFUND_OPEN = tuple(sorted(s.value for s in RefundState if s not in REFUND_FINAL))
_SALE_FINAL = tuple(sorted(s.value for s in SALE_FINAL))
_REFUND_FINAL = tuple(sorted(s.value for s in REFUND_FINAL))


def _in(values: tuple[str, ...]) -> str:
    return f"state IN ({', '.join('?' * len(values))})"


@dataclass(frozen=True)
class StateTotal:
    """How many items of one currency ended in one state, and their sum in minor units."""

    currency: str
    state: str
    count: int
    minor: int


@dataclass(frozen=True)
class DayFigures:
    """A business day as the X and Z reports need it, totalled in SQL.

    Final sales and refunds are totalled per currency and state; what is not
    final is listed one by one (the reports name each), oldest first: the day's
    own open sales, then those still open from earlier days.
    """

    sale_totals: list[StateTotal]
    refund_totals: list[StateTotal]
    open_sales: list[SaleRecord]
    earlier_open_sales: list[SaleRecord]
    open_refunds: list[RefundRecord]


@dataclass(frozen=True)
class OpenCounts:
    """What `/v1/health` and `pos status` report about open work."""

    open_items: int        # sales and refunds not final (MANUAL_REVIEW and REFUND_PENDING included)
    needing_manager: int   # of those, sales in MANUAL_REVIEW or PAID_LATE and refunds in REFUND_PENDING



# SQLite's largest rowid: a bigger number (a typed or scanned id) names no row, and
# binding it would raise OverflowError instead of finding nothing.
_MAX_ROWID = 2**63 - 1


def _row_id(key: int | str) -> bool:
    """Whether a numeric key can be a row id at all."""
    return 0 <= int(key) <= _MAX_ROWID

class JournalReads:
    """Queries over sales, refunds and events; nothing here writes."""

    _db: JournalDB

    # ------------------------------------------------------------ lookups

    def _sale_by_id(self, sale_id: int) -> SaleRecord | None:
        row = self._db.one("SELECT * FROM sales WHERE sale_id = ?", (sale_id,))
        return to_sale(row) if row else None

    def _refund_by_id(self, refund_id: int) -> RefundRecord | None:
        row = self._db.one("SELECT * FROM refunds WHERE refund_id = ?", (refund_id,))
        return to_refund(row) if row else None

    def get_sale(self, key: int | str) -> SaleRecord | None:
        """A sale by its number or its merchantTransId; None if there is none."""
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()):
            return self._sale_by_id(int(key)) if _row_id(key) else None
        row = self._db.one("SELECT * FROM sales WHERE merchant_trans_id = ?", (key,))
        return to_sale(row) if row else None

    def get_refund(self, key: int | str) -> RefundRecord | None:
        """A refund by its number or its merchantRefundId; None if there is none."""
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()):
            return self._refund_by_id(int(key)) if _row_id(key) else None
        row = self._db.one("SELECT * FROM refunds WHERE merchant_refund_id = ?", (key,))
        return to_refund(row) if row else None

    # ------------------------------------------------------------ lists

    def list_sales(self, open_only: bool = False, date: str | Date | None = None, *,
                   since: float | None = None, before: float | None = None) -> list[SaleRecord]:
        """Sales, oldest first. open_only: not PAID/DECLINED/CANCELLED. date: local YYYY-MM-DD.
        since/before: created at or after / before these epoch seconds (a business day)."""
        where, params = _created_between(since, before)
        if open_only:
            where.append(_in(SALE_OPEN))
            params.extend(SALE_OPEN)
        if date is not None:
            where.append("local_date = ?")
            params.append(_check_date(date))
        sql = "SELECT * FROM sales" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY sale_id"
        return [to_sale(r) for r in self._db.rows(sql, params)]

    def list_refunds(self, sale_id: int | None = None, open_only: bool = False, *,
                     since: float | None = None, before: float | None = None,
                     date: str | Date | None = None) -> list[RefundRecord]:
        """Refunds, oldest first; of one sale if sale_id is given; since/before/date as for list_sales."""
        where, params = _created_between(since, before)
        if date is not None:
            where.append("local_date = ?")
            params.append(_check_date(date))
        if sale_id is not None:
            where.append("sale_id = ?")
            params.append(sale_id)
        if open_only:
            where.append(_in(REFUND_OPEN))
            params.extend(REFUND_OPEN)
        sql = "SELECT * FROM refunds" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY refund_id"
        return [to_refund(r) for r in self._db.rows(sql, params)]

    def open_items(self) -> list[SaleRecord | RefundRecord]:
        """Every sale and refund not in a final state (MANUAL_REVIEW and REFUND_PENDING included)."""
        items: list[SaleRecord | RefundRecord] = []
        items.extend(self.list_sales(open_only=True))
        items.extend(self.list_refunds(open_only=True))
        return items

    def count_open_items(self) -> int:
        """How many sales and refunds are not final (what the daemon resumes on start)."""
        return self.open_counts().open_items

    def open_counts(self) -> OpenCounts:
        """Open items and those needing a manager, counted over the index on state: the cost
        grows with the open items, not with the history, and the lock is held for microseconds."""
        rows = self._db.rows(f"SELECT state, COUNT(*) AS n FROM sales WHERE {_in(SALE_OPEN)} GROUP BY state "
                             f"UNION ALL SELECT state, COUNT(*) FROM refunds WHERE {_in(REFUND_OPEN)} GROUP BY state",
                             (*SALE_OPEN, *REFUND_OPEN))
        manager = {*(s.value for s in SALE_NEEDS_MANAGER), RefundState.REFUND_PENDING.value}
        return OpenCounts(sum(int(r["n"]) for r in rows),
                          sum(int(r["n"]) for r in rows if r["state"] in manager))

    def day_figures(self, since: float, before: float | None) -> DayFigures:
        """The business day [since, before) (no end: still open) for its X or Z report.

        Totals are summed by SQLite over the index on creation time, which holds
        state, currency and amount, so the cost grows with the day, not the history."""
        where, params = _created_between(since, before)
        day = " AND ".join(where)
        # `+state`: not the index on state (most of history is final), the day's range.
        totals = ("SELECT currency, state, COUNT(*) AS n, SUM(amount_minor) AS m FROM {table} "
                  f"WHERE {day} AND +{{final}} GROUP BY currency, state ORDER BY currency, state")

        def summed(table: str, final: tuple[str, ...]) -> list[StateTotal]:
            rows = self._db.rows(totals.format(table=table, final=_in(final)), (*params, *final))
            return [StateTotal(str(r["currency"]), str(r["state"]), int(r["n"]), int(r["m"])) for r in rows]

        return DayFigures(
            sale_totals=summed("sales", _SALE_FINAL),
            refund_totals=summed("refunds", _REFUND_FINAL),
            open_sales=[to_sale(r) for r in self._db.rows(
                f"SELECT * FROM sales WHERE {day} AND {_in(SALE_OPEN)} ORDER BY sale_id", (*params, *SALE_OPEN))],
            earlier_open_sales=[to_sale(r) for r in self._db.rows(
                f"SELECT * FROM sales WHERE created_at < ? AND {_in(SALE_OPEN)} ORDER BY sale_id",
                (since, *SALE_OPEN))],
            open_refunds=[to_refund(r) for r in self._db.rows(
                f"SELECT * FROM refunds WHERE {day} AND {_in(REFUND_OPEN)} ORDER BY refund_id",
                (*params, *REFUND_OPEN))])

    def items_needing_manager(self) -> list[tuple[str, str]]:
        """(merchantTransId or merchantRefundId, state) of sales in MANUAL_REVIEW or PAID_LATE and refunds
        in REFUND_PENDING: what only a person can settle, oldest first."""
        states = sorted(s.value for s in SALE_NEEDS_MANAGER)
        sales = self._db.rows(f"SELECT merchant_trans_id AS id, state FROM sales WHERE state IN "
                              f"({', '.join('?' * len(states))}) ORDER BY sale_id", states)
        refunds = self._db.rows("SELECT merchant_refund_id AS id, state FROM refunds WHERE state = ? "
                                "ORDER BY refund_id", (RefundState.REFUND_PENDING.value,))
        return [(str(r["id"]), str(r["state"])) for r in sales + refunds]

    def events(self, item_kind: str, item_id: int) -> list[EventRecord]:
        """The audit log of one sale or refund, oldest first."""
        rows = self._db.rows("SELECT * FROM events WHERE item_kind = ? AND item_id = ? ORDER BY event_id",
                             (item_kind, item_id))
        return [EventRecord(**r) for r in rows]

    # ------------------------------------------------------------ checks

    def file_integrity(self, limit: int = 3) -> list[str]:
        """SQLite's own check of the file: ['ok'], or its first `limit` problems.

        Asks nothing of the journal's tables, so it answers for any SQLite file.
        """
        rows = self._db.rows(f"PRAGMA integrity_check({int(limit)})")
        return [str(next(iter(r.values()))) for r in rows]

    def integrity_check(self) -> str:
        """'ok', or one line per problem: SQLite's own check plus the journal's rules."""
        problems = [f"sqlite: {line}" for line in self.file_integrity(limit=100) if line != "ok"]
        for row in self._db.rows("SELECT merchant_trans_id, code_masked FROM sales"):
            if sum(ch.isdigit() for ch in row["code_masked"]) > 4:
                problems.append(f"sale {row['merchant_trans_id']}: payment code is stored with more than 4 digits")
        for row in self._db.rows(
                "SELECT s.merchant_trans_id, SUM(r.amount_minor) AS total, s.amount_minor FROM refunds r "
                "JOIN sales s USING (sale_id) WHERE r.state != ? GROUP BY s.sale_id",
                (RefundState.REFUND_DECLINED.value,)):
            if row["total"] > row["amount_minor"]:
                problems.append(f"sale {row['merchant_trans_id']}: refunds ({row['total']}) exceed the sale "
                                f"amount ({row['amount_minor']})")
        for row in self._db.rows(
                "SELECT r.merchant_refund_id, s.state FROM refunds r JOIN sales s USING (sale_id) "
                "WHERE s.state != ?", (SaleState.PAID.value,)):
            problems.append(f"refund {row['merchant_refund_id']}: its sale is {row['state']}, not PAID")
        return "ok" if not problems else "\n".join(problems)


def _created_between(since: float | None, before: float | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if before is not None:
        where.append("created_at < ?")
        params.append(before)
    return where, params


def _check_date(value: str | Date) -> str:
    if isinstance(value, Date):
        return value.isoformat()
    try:
        return Date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise JournalError(f"date {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-22") from None
