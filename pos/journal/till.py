"""The terminal's own tables in the journal: till sales, till refund keys, business days.

A till sale gets an id before the customer's code is scanned, so it cannot be
a journal sale yet: `till_sales` keeps it, and once the code is scanned the
row points at the journal's sale, which is the truth from then on. The link
is written by `Journal.create_sale(..., till_id=...)` in the same transaction
as the sale itself (`link_till_sale`), so a sale whose pay may have left is
never without its till row.

`till_refunds` remembers the till's Idempotency-Keys (a till that timed out
retries with the same key and must not refund twice); `business_days` is
where the X and Z reports take their day from.

Everything here runs on the journal's own connection, under its lock, and
commits through it (so the journal's crash hook counts these commits too).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from pos.core.money import Money
from pos.journal.db import JournalDB

__all__ = ["TILL_TABLES", "TillSale", "TillRefundKey", "TillLinks", "link_till_sale"]

# Migration 3 of the journal (pos/journal/schema.py). IF NOT EXISTS: the terminal
# made these tables itself before they were the journal's, so older journals have them.
TILL_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS till_sales (
        till_id      TEXT PRIMARY KEY,
        amount_minor INTEGER NOT NULL,
        currency     TEXT NOT NULL,
        reference    TEXT NOT NULL,
        order_title  TEXT NOT NULL,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        state        TEXT NOT NULL,           -- CREATED or CANCELLED until scanned
        sale_id      INTEGER UNIQUE           -- the journal's sale once the code is scanned
    )""",
    """CREATE TABLE IF NOT EXISTS till_refunds (
        idem_key     TEXT PRIMARY KEY,        -- the till's Idempotency-Key
        sale_id      INTEGER NOT NULL,
        amount_minor INTEGER,                 -- NULL: "all that is left"
        created_at   REAL NOT NULL,
        refund_id    INTEGER UNIQUE           -- the journal's refund once created
    )""",
    """CREATE TABLE IF NOT EXISTS business_days (
        day        INTEGER PRIMARY KEY,
        opened_at  REAL NOT NULL,
        closed_at  REAL
    )""",
)

WAITING, CANCELLED, LINKED = "CREATED", "CANCELLED", "PAYING"


@dataclass(frozen=True)
class TillSale:
    """A sale the till (or the keypad) asked for; `sale_id` is the journal's sale once scanned."""

    till_id: str
    amount: Money
    reference: str
    order_title: str
    created_at: float
    updated_at: float
    state: str
    sale_id: int | None
    goods: str = ""       # the till's line items (AlipayCN goodsInfo text); "" = none


@dataclass(frozen=True)
class TillRefundKey:
    """A till's Idempotency-Key for a refund; `refund_id` once the journal's refund exists."""

    key: str
    sale_id: int
    amount_minor: int | None   # None: "all that is left"
    created_at: float
    refund_id: int | None


def link_till_sale(conn: sqlite3.Connection, till_id: str, sale_id: int, now: float) -> None:
    """Point a waiting till sale at its journal sale. Runs inside Journal.create_sale's transaction."""
    cur = conn.execute("UPDATE till_sales SET sale_id = ?, state = ?, updated_at = ? "
                       "WHERE till_id = ? AND sale_id IS NULL AND state = ?",
                       (sale_id, LINKED, now, till_id, WAITING))
    if cur.rowcount != 1:
        # Rolls the sale back with it: no pay leaves for a till sale that is not waiting.
        raise sqlite3.IntegrityError(f"till sale {till_id} is not waiting for a scan")


def _till_sale(row: sqlite3.Row | tuple[Any, ...]) -> TillSale:
    till_id, minor, currency, reference, title, created, updated, state, sale_id, goods = row
    return TillSale(till_id, Money(int(minor), currency), reference, title, float(created), float(updated),
                    state, None if sale_id is None else int(sale_id), goods or "")


_SALE_COLUMNS = ("till_id, amount_minor, currency, reference, order_title, created_at, updated_at, state, sale_id, "
                 "goods")


class _HasJournalDB(Protocol):
    """The journal as this module needs it: its one connection (pos/journal/db.py)."""

    @property
    def db(self) -> JournalDB: ...


class TillLinks:
    """Typed access to the terminal's tables, on the journal's connection and lock."""

    def __init__(self, journal: _HasJournalDB) -> None:
        self._journal = journal

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._journal.db.transaction() as conn:
            yield conn

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        db = self._journal.db
        with db.lock:
            return db.conn.execute(sql, params).fetchone()

    # ------------------------------------------------------------ till sales

    def new_sale(self, amount: Money, reference: str, order_title: str, now: float, goods: str = "") -> TillSale:
        """A till sale waiting for the customer's code, committed."""
        till_id = "S" + secrets.token_hex(6).upper()
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO till_sales ({_SALE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                         (till_id, amount.minor, amount.currency, reference, order_title, now, now, WAITING, goods))
        return TillSale(till_id, amount, reference, order_title, now, now, WAITING, None, goods)

    def get(self, till_id: str) -> TillSale | None:
        row = self._one(f"SELECT {_SALE_COLUMNS} FROM till_sales WHERE till_id = ?", (till_id,))
        return None if row is None else _till_sale(row)

    def of_sale(self, sale_id: int) -> TillSale | None:
        """The till sale linked to a journal sale, if the sale was started for one."""
        row = self._one(f"SELECT {_SALE_COLUMNS} FROM till_sales WHERE sale_id = ?", (sale_id,))
        return None if row is None else _till_sale(row)

    def cancel(self, till_id: str, now: float) -> None:
        """Close a till sale that never reached a scan (no money moved)."""
        with self._transaction() as conn:
            conn.execute("UPDATE till_sales SET state = ?, updated_at = ? "
                         "WHERE till_id = ? AND sale_id IS NULL AND state = ?", (CANCELLED, now, till_id, WAITING))

    def close_stale(self, now: float) -> list[tuple[str, int]]:
        """On start: link orphaned till sales to their journal sales, cancel the rest.

        A till sale still waiting for a scan when the terminal stopped never
        reached the gateway: no money moved, and the customer has gone. But a
        journal written before the link shared the sale's transaction may hold
        a sale whose till row was never linked (a stop between the two writes):
        its pay may have charged the customer, so calling it CANCELLED would
        tell the till "no money was taken". Only one till sale waits for a scan
        at a time and only it can start a journal sale, so the journal sale
        created after it (same amount and reference) that no till row points
        at is its sale. Returns the (till id, sale id) pairs linked.
        """
        linked: list[tuple[str, int]] = []
        with self._transaction() as conn:
            rows = conn.execute("SELECT till_id, amount_minor, currency, reference, created_at FROM till_sales "
                                "WHERE sale_id IS NULL AND state = ? ORDER BY created_at", (WAITING,)).fetchall()
            for till_id, minor, currency, reference, created_at in rows:
                match = conn.execute(
                    "SELECT s.sale_id, s.state FROM sales s WHERE s.created_at >= ? AND s.amount_minor = ? "
                    "AND s.currency = ? AND s.reference = ? "
                    "AND NOT EXISTS (SELECT 1 FROM till_sales t WHERE t.sale_id = s.sale_id) "
                    "ORDER BY s.sale_id LIMIT 1", (created_at, minor, currency, reference)).fetchone()
                if match is not None:
                    conn.execute("UPDATE till_sales SET sale_id = ?, state = ?, updated_at = ? WHERE till_id = ?",
                                 (match[0], match[1], now, till_id))
                    linked.append((till_id, int(match[0])))
            conn.execute("UPDATE till_sales SET state = ?, updated_at = ? WHERE sale_id IS NULL AND state = ?",
                         (CANCELLED, now, WAITING))
        return linked

    def sale_with_sequence(self, sequence: int) -> int | None:
        """The newest journal sale whose merchantTransId ends in this sequence number (as a cashier reads
        it off the receipt: "...-000123" is 123)."""
        row = self._one("SELECT sale_id FROM sales WHERE merchant_trans_id LIKE ? ORDER BY sale_id DESC LIMIT 1",
                        (f"%-{sequence:06d}",))
        return None if row is None else int(row[0])

    # ------------------------------------------------------------ till refund keys

    def refund_key(self, key: str) -> TillRefundKey | None:
        row = self._one("SELECT idem_key, sale_id, amount_minor, created_at, refund_id FROM till_refunds "
                        "WHERE idem_key = ?", (key,))
        if row is None:
            return None
        return TillRefundKey(row[0], int(row[1]), None if row[2] is None else int(row[2]), float(row[3]),
                             None if row[4] is None else int(row[4]))

    def add_refund_key(self, key: str, sale_id: int, amount_minor: int | None, now: float) -> None:
        """Record a key before its refund is created (so a stop in between can find the refund again)."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO till_refunds (idem_key, sale_id, amount_minor, created_at) VALUES (?, ?, ?, ?)",
                         (key, sale_id, amount_minor, now))

    def bind_refund_key(self, key: str, refund_id: int) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE till_refunds SET refund_id = ? WHERE idem_key = ?", (refund_id, key))

    def claimed_refunds(self) -> set[int]:
        """Journal refunds some key already answers for."""
        db = self._journal.db
        with db.lock:
            rows = db.conn.execute(
                "SELECT refund_id FROM till_refunds WHERE refund_id IS NOT NULL").fetchall()
        return {int(r[0]) for r in rows}

    # ------------------------------------------------------------ business days

    def open_day(self) -> tuple[int, float]:
        """The open business day (number, opened at), opening the first one if there is none.

        The first day opens at 0.0: everything before the first Z report belongs to it.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT day, opened_at FROM business_days WHERE closed_at IS NULL "
                               "ORDER BY day DESC LIMIT 1").fetchone()
            if row is not None:
                return int(row[0]), float(row[1])
            last_day, last_closed = conn.execute("SELECT MAX(day), MAX(closed_at) FROM business_days").fetchone()
            day = (last_day or 0) + 1
            opened = float(last_closed) if last_closed is not None else 0.0
            conn.execute("INSERT INTO business_days (day, opened_at) VALUES (?, ?)", (day, opened))
            return day, opened

    def close_day(self, day: int, now: float) -> None:
        """Close `day` at `now` and open the next one at the same instant, in one transaction."""
        with self._transaction() as conn:
            conn.execute("UPDATE business_days SET closed_at = ? WHERE day = ?", (now, day))
            conn.execute("INSERT INTO business_days (day, opened_at) VALUES (?, ?)", (day + 1, now))
