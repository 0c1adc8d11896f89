"""The durable journal: one SQLite file, `<terminal.state_dir>/journal.db`.

Every engine transition is committed here before the command that follows it
runs (design rule 1), so a crash at any moment leaves enough on disk to find
out what happened: `PaymentRunner.recover()` reads `open_items()` on start.

Durability: WAL with `synchronous=FULL` (pos/journal/db.py). Payment codes:
only the masked form (last 4 digits)
is ever written. The full code lives in memory until the pay is sent and is
never needed after a restart (a pay is never re-sent, pos/engine.py), so it
never touches the disk; `secure_delete` is on as a second line so freed
pages are zeroed.

merchantTransId = terminal id + local date + install id + sequence, e.g.
`POS01-20261122-K7Q2MX-000123` (<= 64 chars, reference §6.1). The install id
is random and created with the journal, so a re-installed terminal with the
same terminal id never repeats an id the gateway has seen; the sequence never
goes back. merchantRefundId is the same with an `R` before the sequence.

The journal is the only code that speaks SQL; its parts:

- pos/journal/db.py: the one connection, its lock, transactions, the
  POS_CRASH_AT test hook;
- pos/journal/schema.py: the tables and their migrations;
- pos/journal/rows.py: records to rows and back;
- pos/journal/reads.py: lookups, lists and the checks doctor/status run;
- pos/journal/print_jobs.py: the print queue's store (`print_jobs`);
- this module: opening, and the writes of sales, refunds and events.

A daemon opens the journal once and every part writes through that one
connection (`Journal.db`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pos.core.errors import EXIT_UNAVAILABLE
from pos.core.events import Record
from pos.core.money import Money
from pos.core.records import QR_SALE_MARK, RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.redact import mask_code, redact
from pos.journal.db import CRASH_ENV, JournalDB, JournalError, unreadable
from pos.journal.reads import JournalReads
from pos.journal.rows import (
    REFUND_BOOLS,
    REFUND_FIELDS,
    REFUND_FIXED,
    REFUND_STEP_FIELDS,
    SALE_BOOLS,
    SALE_FIELDS,
    SALE_FIXED,
    SALE_STEP_FIELDS,
    column_values,
)
from pos.journal.schema import migrate
from pos.journal.till import link_till_sale

__all__ = ["Journal", "JournalError", "journal_path", "CRASH_ENV"]

JOURNAL_FILE = "journal.db"

_T = TypeVar("_T")
# Given the item a create_* call is writing (its id taken, its row not yet written), the
# engine's first step for it (or None): the row is written as that step leaves it, in the
# same transaction.
FirstStep = Callable[[_T], Record | None]


def _step_update(table: str, key: str, step: list[str], fixed: list[str]) -> str:
    """An engine step's UPDATE: the columns a step may change, for the row whose fixed columns match."""
    return (f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in step)} "
            f"WHERE {key} = ? AND {' AND '.join(f'{c} = ?' for c in fixed)}")


_SALE_COLUMNS = ["amount_minor", "currency", *SALE_FIELDS]
_REFUND_COLUMNS = ["amount_minor", "currency", *REFUND_FIELDS]
_SALE_INSERT = f"INSERT INTO sales ({', '.join(_SALE_COLUMNS)}) VALUES ({', '.join('?' * len(_SALE_COLUMNS))})"
_REFUND_INSERT = (f"INSERT INTO refunds ({', '.join(_REFUND_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(_REFUND_COLUMNS))})")
_SALE_UPDATE = _step_update("sales", "sale_id", SALE_STEP_FIELDS, SALE_FIXED)
_REFUND_UPDATE = _step_update("refunds", "refund_id", REFUND_STEP_FIELDS, REFUND_FIXED)


def _split(created: SaleRecord | RefundRecord, step: Record | None) -> tuple[SaleRecord | RefundRecord, Record | None]:
    """A new item as its first step leaves it, and the rest of that step."""
    if step is None:
        return created, None
    if isinstance(created, SaleRecord):
        sales = [s for s in step.sales if s.sale_id == created.sale_id]
        return (sales[-1] if sales else created), replace(step, sales=tuple(s for s in step.sales if s not in sales))
    refunds = [r for r in step.refunds if r.refund_id == created.refund_id]
    return (refunds[-1] if refunds else created), replace(step, refunds=tuple(r for r in step.refunds
                                                                              if r not in refunds))


def journal_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the journal lives for a configured `[terminal] state_dir`."""
    return Path(state_dir) / JOURNAL_FILE


class Journal(JournalReads):
    """The terminal's durable record of sales, refunds and every transition."""

    def __init__(self, db: JournalDB, *, terminal_id: str, tz: ZoneInfo) -> None:
        self._db = db
        self.path = db.path
        self.terminal_id = terminal_id
        self._tz = tz
        self.install_id = ""

    @property
    def db(self) -> JournalDB:
        """The journal's connection and lock, for the journal's own modules (print jobs, till tables)."""
        return self._db

    @property
    def _conn(self) -> Any:
        # The raw connection, for tests that break the file on purpose.
        return self._db.conn

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, terminal_id: str = "POS01", timezone: str = "UTC",
             create: bool = True, read_only: bool = False) -> Journal:
        """Open (and create or migrate) the journal at `path`.

        read_only: open an existing file without writing anything to it, not
        even a migration (`pos doctor`, `pos status`: run as root, a write
        would leave root-owned -wal/-shm files the service user cannot open).
        """
        p = Path(path)
        if (read_only or not create) and not p.exists():
            raise JournalError(f"no journal at {p}: check [terminal] state_dir in the config "
                               "(the journal is created when the terminal first runs)",
                               exit_code=EXIT_UNAVAILABLE)
        db = JournalDB.connect(p, read_only=read_only)
        journal = cls(db, terminal_id=terminal_id, tz=ZoneInfo(timezone))
        if read_only:
            return journal
        try:
            migrate(db, terminal_id)
            journal.install_id = str(db.value("SELECT value FROM meta WHERE key = 'install_id'") or "")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise unreadable(p, exc) from None
        return journal

    def schema_version(self) -> int:
        return int(self._db.value("SELECT version FROM schema_version"))

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ writing

    @staticmethod
    def _next(conn: sqlite3.Connection, name: str, table: str, key: str) -> tuple[int, int]:
        """The next number of the `name` sequence (merchantTransId, merchantRefundId), and the id
        the next row of `table` takes: as AUTOINCREMENT picks it, one above both the largest id
        ever given (sqlite_sequence) and the largest id in the table. Inside the caller's
        transaction (BEGIN IMMEDIATE), so no other writer can take either."""
        row = conn.execute(
            "INSERT INTO sequences (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 "
            "RETURNING value, MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0), "
            f"COALESCE((SELECT MAX({key}) FROM {table}), 0)) + 1", (name, table)).fetchone()
        return int(row[0]), int(row[1])

    def _create(self, conn: sqlite3.Connection, created: SaleRecord | RefundRecord,
                first_step: FirstStep[Any] | None, detail: str, then: Callable[[], None] | None = None) -> None:
        """Write a new item as its first step leaves it (PAYING, REFUNDING: the request queued), so
        its row and indexes are written once; then its "create" log line, `then`, and the step's
        log lines (and any other record of the step)."""
        step = first_step(created) if first_step is not None else None
        row, rest = _split(created, step)
        if isinstance(created, SaleRecord):
            kind, item_id, sql, cols, fixed, bools = ("sale", created.sale_id, _SALE_INSERT, _SALE_COLUMNS,
                                                      SALE_FIXED, SALE_BOOLS)
        else:
            kind, item_id, sql, cols, fixed, bools = ("refund", created.refund_id, _REFUND_INSERT, _REFUND_COLUMNS,
                                                      REFUND_FIXED, REFUND_BOOLS)
        if column_values(row, fixed, bools) != column_values(created, fixed, bools):
            raise JournalError(f"the first step of {kind} {item_id} changes what is fixed when it is created "
                               f"({', '.join(fixed)})")
        conn.execute(sql, column_values(row, cols, bools))
        self._event(conn, created.created_at, kind, item_id, "create", "", created.state.value, detail)
        if then is not None:
            then()
        self._write(conn, rest)

    def _local_date(self, now: float) -> str:
        return datetime.fromtimestamp(now, tz=UTC).astimezone(self._tz).date().isoformat()

    def create_sale(self, *, amount: Money, code: str, scanned_at: float, now: float,
                    order_title: str = "", reference: str = "", till_id: str | None = None,
                    goods: str = "", qr: bool = False,
                    first_step: FirstStep[SaleRecord] | None = None) -> SaleRecord:
        """Create a CREATED sale with a fresh merchantTransId, committed. Only the masked code is stored.

        `till_id`: the till sale this sale serves, linked in the same transaction. `goods`: its line
        items (AlipayCN goodsInfo text). `qr`: a merchant-presented QR sale: no customer code,
        QR_SALE_MARK stored in its place. `first_step`: called with the new sale inside the
        transaction; the Record it returns (the engine's first step: PAYING, the pay queued) is
        committed with the sale, so a sale costs one durable commit before its pay leaves, not two."""
        local_date = self._local_date(now)
        masked = QR_SALE_MARK if qr else mask_code(code)
        with self._db.transaction() as conn:
            seq, sale_id = self._next(conn, "sale", "sales", "sale_id")
            mtid = f"{self.terminal_id}-{local_date.replace('-', '')}-{self.install_id}-{seq:06d}"
            # The new sale, as get_sale reads it once written without a first step (the columns not
            # named hold their defaults, which are the record's: tests/test_journal.py checks it).
            created = SaleRecord(sale_id=sale_id, merchant_trans_id=mtid, amount=amount, code_masked=masked,
                                 order_title=order_title, reference=reference, state=SaleState.CREATED,
                                 created_at=float(now), updated_at=float(now), local_date=local_date,
                                 scanned_at=float(scanned_at), goods=goods)
            self._create(conn, created, first_step, f"{amount.receipt()} code {masked}",
                         None if till_id is None else partial(link_till_sale, conn, till_id, sale_id, now))
        return created

    def create_refund(self, *, sale: SaleRecord, amount: Money, reason: str, now: float,
                      first_step: FirstStep[RefundRecord] | None = None) -> RefundRecord:
        """Create a REFUND_CREATED refund with a fresh merchantRefundId, committed
        (with `first_step`'s Record, as for create_sale).

        Refuses (JournalError) a refund that would take the sum of refunds
        (pending included) above the sale amount, checked inside the transaction.
        """
        local_date = self._local_date(now)
        with self._db.transaction() as conn:
            taken = conn.execute(
                "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE sale_id = ? AND state != ?",
                (sale.sale_id, RefundState.REFUND_DECLINED.value)).fetchone()[0]
            if taken + amount.minor > sale.amount.minor:
                raise JournalError(f"refund of {amount.receipt()} would take refunds on "
                                   f"{sale.merchant_trans_id} above its amount {sale.amount.receipt()}")
            seq, refund_id = self._next(conn, "refund", "refunds", "refund_id")
            mrid = f"{self.terminal_id}-{local_date.replace('-', '')}-{self.install_id}-R{seq:06d}"
            created = RefundRecord(refund_id=refund_id, sale_id=sale.sale_id, merchant_refund_id=mrid,
                                   acquirement_id=sale.acquirement_id or "", amount=amount, reason=reason,
                                   state=RefundState.REFUND_CREATED, created_at=float(now), updated_at=float(now),
                                   local_date=local_date)
            self._create(conn, created, first_step, f"{amount.receipt()} on sale {sale.sale_id}")
        return created

    def bulk_insert(self, sales: Iterable[SaleRecord], refunds: Iterable[RefundRecord] = ()) -> None:
        """Insert whole records as they are (their ids included), in one transaction and without
        events: for building large journals (tests/bench_journal.py), not for sales being made.
        The sequences move past the largest ids so new sales and refunds never repeat one."""
        with self._db.transaction(crash_point=False) as conn:
            conn.executemany(_SALE_INSERT, (column_values(s, _SALE_COLUMNS, SALE_BOOLS) for s in sales))
            conn.executemany(_REFUND_INSERT, (column_values(r, _REFUND_COLUMNS, REFUND_BOOLS) for r in refunds))
            for name, table, key in (("sale", "sales", "sale_id"), ("refund", "refunds", "refund_id")):
                conn.execute("INSERT INTO sequences (name, value) "
                             f"SELECT ?, COALESCE(MAX({key}), 0) FROM {table} WHERE true "
                             "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)", (name,))

    def record(self, rec: Record, *, then: Callable[[], None] | None = None) -> None:
        """Commit one engine step: the new records and their log lines, in one transaction.

        `then` runs inside that transaction, after the step's writes (which it reads back):
        what it writes through this journal on this thread (a receipt's print job) commits
        with the step or not at all."""
        with self._db.transaction() as conn:
            self._write(conn, rec)
            if then is not None:
                then()

    def _write(self, conn: sqlite3.Connection, rec: Record | None) -> None:
        """An engine step's records and log lines, inside the caller's transaction."""
        if rec is None:
            return
        for sale in rec.sales:
            self._update(conn, _SALE_UPDATE, "sales", sale.sale_id, sale, SALE_STEP_FIELDS, SALE_FIXED, SALE_BOOLS)
        for refund in rec.refunds:
            self._update(conn, _REFUND_UPDATE, "refunds", refund.refund_id, refund, REFUND_STEP_FIELDS,
                         REFUND_FIXED, REFUND_BOOLS)
        for entry in rec.log:
            self._event(conn, entry.at, entry.item_kind, entry.item_id, entry.trigger, entry.source,
                        entry.dest, entry.detail)

    @staticmethod
    def _update(conn: sqlite3.Connection, sql: str, table: str, item_id: int, record: SaleRecord | RefundRecord,
                step: list[str], fixed: list[str], bools: frozenset[str]) -> None:
        """One item's row as a step left it: only the columns a step may change are set (rows.py)."""
        cur = conn.execute(sql, (*column_values(record, step, bools), item_id, *column_values(record, fixed, bools)))
        if cur.rowcount != 1:
            raise JournalError(f"{table} {item_id} is not in the journal, or this record changes what was fixed "
                               f"when it was created ({', '.join(fixed)})")

    @staticmethod
    def _event(conn: sqlite3.Connection, at: float, kind: str, item_id: int, trigger: str, source: str,
               dest: str, detail: str) -> None:
        conn.execute(
            "INSERT INTO events (at, item_kind, item_id, trigger, source, dest, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, kind, item_id, trigger, source, dest, redact(detail)))  # gateway texts: see rows.column_values
