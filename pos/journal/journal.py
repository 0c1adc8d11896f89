"""The durable journal: one SQLite file, `<terminal.state_dir>/journal.db`.

Every engine transition is committed here before the command that follows it
runs (design rule 1), so a crash at any moment leaves enough on disk to find
out what happened: `PaymentService.recover()` reads `open_items()` on start.

Durability: WAL with `synchronous=FULL` (a commit survives power loss, not
only a process crash). Payment codes: only the masked form (last 4 digits)
is ever written. The full code lives in memory until the pay is sent and is
never needed after a restart (a pay is never re-sent, pos/engine.py), so it
never touches the disk; `secure_delete` is on as a second line so freed
pages are zeroed.

merchantTransId = terminal id + local date + install id + sequence, e.g.
`POS01-20261122-K7Q2MX-000123` (<= 64 chars, reference §6.1). The install id
is random and created with the journal, so a re-installed terminal with the
same terminal id never repeats an id the gateway has seen; the sequence never
goes back. merchantRefundId is the same with an `R` before the sequence.

The print queue (devices/print_queue.py) keeps its own `print_jobs` table in
this file; the journal never touches it.

Test hook: the environment variable `POS_CRASH_AT=<point>:<n>` makes this
process SIGKILL itself at the n-th commit (counted from 1 in this process):
`before:<n>` just before the COMMIT (the transaction is lost), `after:<n>` just
after it (committed, the next command has not run). tests/test_crash.py
uses it to stop at every commit point in turn. It is read once, at open.
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import fields
from datetime import date as Date, datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos.core.events import Record
from pos.core.errors import EXIT_UNAVAILABLE, UserError
from pos.core.redact import redact
from pos.core.money import Money
from pos.core.records import (
    REFUND_FINAL, SALE_FINAL, EventRecord, RefundRecord, RefundState, SaleRecord, SaleState, mask_code,
)
from pos.journal.till import TILL_TABLES, link_till_sale

__all__ = ["Journal", "JournalError", "journal_path", "CRASH_ENV"]

CRASH_ENV = "POS_CRASH_AT"
JOURNAL_FILE = "journal.db"

# Letters and digits that cannot be misread on a receipt (no 0/O, 1/I/L).
_INSTALL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_INSTALL_ID_LEN = 6


class JournalError(UserError):
    """The journal cannot be opened or a request to it is not valid."""


def journal_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the journal lives for a configured `[terminal] state_dir`."""
    return Path(state_dir) / JOURNAL_FILE


# Ordered migrations: index i brings the schema from version i to i + 1.
# Never edit a released step; append a new one.
_MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        """CREATE TABLE sales (
            sale_id INTEGER PRIMARY KEY AUTOINCREMENT,
            merchant_trans_id TEXT NOT NULL UNIQUE CHECK (length(merchant_trans_id) <= 64),
            amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
            currency TEXT NOT NULL,
            code_masked TEXT NOT NULL,
            order_title TEXT NOT NULL,
            reference TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            local_date TEXT NOT NULL,
            scanned_at REAL NOT NULL,
            pay_sent_at REAL,
            querying_since REAL,
            query_count INTEGER NOT NULL DEFAULT 0,
            not_found_count INTEGER NOT NULL DEFAULT 0,
            cancel_attempts INTEGER NOT NULL DEFAULT 0,
            acquirement_id TEXT,
            result_code TEXT,
            result_message TEXT NOT NULL DEFAULT '',
            abort_requested INTEGER NOT NULL DEFAULT 0,
            next_request TEXT,
            next_at REAL,
            alarmed INTEGER NOT NULL DEFAULT 0,
            finished_at REAL,
            resolved_by_corrector INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX sales_state ON sales (state)",
        "CREATE INDEX sales_date ON sales (local_date)",
        """CREATE TABLE refunds (
            refund_id INTEGER PRIMARY KEY AUTOINCREMENT,
            sale_id INTEGER NOT NULL REFERENCES sales (sale_id),
            merchant_refund_id TEXT NOT NULL UNIQUE CHECK (length(merchant_refund_id) <= 64),
            acquirement_id TEXT NOT NULL,
            amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
            currency TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            local_date TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            result_code TEXT,
            result_message TEXT NOT NULL DEFAULT '',
            gateway_refund_id TEXT,
            next_at REAL,
            alarmed INTEGER NOT NULL DEFAULT 0,
            finished_at REAL
        )""",
        "CREATE INDEX refunds_sale ON refunds (sale_id)",
        """CREATE TABLE events (
            event_id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            item_kind TEXT NOT NULL,
            item_id INTEGER NOT NULL,
            trigger TEXT NOT NULL,
            source TEXT NOT NULL,
            dest TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX events_item ON events (item_kind, item_id)",
        # The audit log is append-only: the database itself refuses changes.
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    ],
]

_SALE_BOOLS = {"abort_requested", "alarmed", "resolved_by_corrector"}
_REFUND_BOOLS = {"alarmed"}
_SALE_FIELDS = [f.name for f in fields(SaleRecord) if f.name not in ("amount",)]
_REFUND_FIELDS = [f.name for f in fields(RefundRecord) if f.name not in ("amount",)]


def _parse_crash_hook(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, n = value.partition(":")
    if point not in ("before", "after") or not (n.isascii() and n.isdigit()) or int(n) < 1:
        raise JournalError(f"{CRASH_ENV}={value!r}: expected before:N or after:N (a test hook)")
    return point, int(n)


class Journal:
    """The terminal's durable record of sales, refunds and every transition."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, terminal_id: str, tz: ZoneInfo) -> None:
        self._conn = conn
        self.path = path
        self.terminal_id = terminal_id
        self._tz = tz
        self._lock = threading.RLock()
        self._commits = 0
        self._crash = _parse_crash_hook(os.environ.get(CRASH_ENV))
        self.install_id = ""

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, terminal_id: str = "POS01", timezone: str = "UTC",
             create: bool = True) -> "Journal":
        """Open (and create or migrate) the journal at `path`."""
        p = Path(path)
        if not create and not p.exists():
            raise JournalError(f"no journal at {p}: check [terminal] state_dir in the config "
                               "(the journal is created when the terminal first runs)",
                               exit_code=EXIT_UNAVAILABLE)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(p), isolation_level=None, check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {p}: {exc}: check that [terminal] state_dir "
                               "exists and the service user may write it", exit_code=EXIT_UNAVAILABLE) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we send the request it leads to.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            journal = cls(conn, p, terminal_id=terminal_id, tz=ZoneInfo(timezone))
            journal._migrate()
            journal.install_id = journal._meta("install_id") or ""
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"{p} is not a usable journal ({exc}): restore it from a backup or move "
                               "it away (a new, empty journal is created on the next start)",
                               exit_code=EXIT_UNAVAILABLE) from None
        return journal

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = self._conn.execute("SELECT version FROM schema_version").fetchone()
                version = row[0] if row else 0
                if row is None:
                    self._conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                if version > len(_MIGRATIONS):
                    raise JournalError(
                        f"{self.path} has schema version {version}, newer than this program knows "
                        f"({len(_MIGRATIONS)}): install the newer version of pos-terminal")
                for step in _MIGRATIONS[version:]:
                    for sql in step:
                        self._conn.execute(sql)
                    version += 1
                    self._conn.execute("UPDATE schema_version SET version = ?", (version,))
                for sql in TILL_TABLES:  # the terminal's tables (pos/journal/till.py)
                    self._conn.execute(sql)
                if self._conn.execute("SELECT 1 FROM meta WHERE key = 'install_id'").fetchone() is None:
                    install = "".join(secrets.choice(_INSTALL_ALPHABET) for _ in range(_INSTALL_ID_LEN))
                    self._conn.execute("INSERT INTO meta (key, value) VALUES ('install_id', ?)", (install,))
                    self._conn.execute("INSERT INTO meta (key, value) VALUES ('created_for', ?)",
                                       (self.terminal_id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover
                pass

    # ------------------------------------------------------------ transactions

    def _commit(self) -> None:
        """COMMIT, honouring the POS_CRASH_AT test hook around it."""
        self._commits += 1
        if self._crash and self._crash == ("before", self._commits):
            os.kill(os.getpid(), signal.SIGKILL)
        self._conn.execute("COMMIT")
        if self._crash and self._crash == ("after", self._commits):
            os.kill(os.getpid(), signal.SIGKILL)

    def _next(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM sequences WHERE name = ?", (name,)).fetchone()
        value = (row[0] if row else 0) + 1
        self._conn.execute("INSERT INTO sequences (name, value) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
        return value

    def _local_date(self, now: float) -> str:
        return datetime.fromtimestamp(now, tz=dt_timezone.utc).astimezone(self._tz).date().isoformat()

    def create_sale(self, *, amount: Money, code: str, scanned_at: float, now: float,
                    order_title: str = "", reference: str = "", till_id: str | None = None) -> SaleRecord:
        """Create a CREATED sale with a fresh merchantTransId, committed. Only the masked code is stored.

        `till_id`: the till sale this sale serves, linked in the same transaction."""
        local_date = self._local_date(now)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                seq = self._next("sale")
                mtid = f"{self.terminal_id}-{local_date.replace('-', '')}-{self.install_id}-{seq:06d}"
                cur = self._conn.execute(
                    "INSERT INTO sales (merchant_trans_id, amount_minor, currency, code_masked, order_title, "
                    "reference, state, created_at, updated_at, local_date, scanned_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mtid, amount.minor, amount.currency, mask_code(code), order_title, reference,
                     SaleState.CREATED.value, now, now, local_date, scanned_at))
                sale_id = int(cur.lastrowid or 0)
                self._event(now, "sale", sale_id, "create", "", SaleState.CREATED.value,
                            f"{amount.receipt()} code {mask_code(code)}")
                if till_id is not None:
                    link_till_sale(self._conn, till_id, sale_id, now)
                self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return self._sale_by_id(sale_id)  # type: ignore[return-value]

    def create_refund(self, *, sale: SaleRecord, amount: Money, reason: str, now: float) -> RefundRecord:
        """Create a REFUND_CREATED refund with a fresh merchantRefundId, committed.

        Refuses (JournalError) a refund that would take the sum of refunds
        (pending included) above the sale amount, checked inside the transaction.
        """
        local_date = self._local_date(now)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                taken = self._conn.execute(
                    "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE sale_id = ? AND state != ?",
                    (sale.sale_id, RefundState.REFUND_DECLINED.value)).fetchone()[0]
                if taken + amount.minor > sale.amount.minor:
                    raise JournalError(f"refund of {amount.receipt()} would take refunds on "
                                       f"{sale.merchant_trans_id} above its amount {sale.amount.receipt()}")
                seq = self._next("refund")
                mrid = f"{self.terminal_id}-{local_date.replace('-', '')}-{self.install_id}-R{seq:06d}"
                cur = self._conn.execute(
                    "INSERT INTO refunds (sale_id, merchant_refund_id, acquirement_id, amount_minor, currency, "
                    "reason, state, created_at, updated_at, local_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sale.sale_id, mrid, sale.acquirement_id or "", amount.minor, amount.currency, reason,
                     RefundState.REFUND_CREATED.value, now, now, local_date))
                refund_id = int(cur.lastrowid or 0)
                self._event(now, "refund", refund_id, "create", "", RefundState.REFUND_CREATED.value,
                            f"{amount.receipt()} on sale {sale.sale_id}")
                self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return self._refund_by_id(refund_id)  # type: ignore[return-value]

    def record(self, rec: Record) -> None:
        """Commit one engine step: the new records and their log lines, in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sale in rec.sales:
                    self._update("sales", "sale_id", _SALE_FIELDS, sale, _SALE_BOOLS)
                for refund in rec.refunds:
                    self._update("refunds", "refund_id", _REFUND_FIELDS, refund, _REFUND_BOOLS)
                for entry in rec.log:
                    self._event(entry.at, entry.item_kind, entry.item_id, entry.trigger, entry.source,
                                entry.dest, entry.detail)
                self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _update(self, table: str, key: str, names: list[str], record: Any, bools: set[str]) -> None:
        cols = [n for n in names if n != key]
        values = []
        for n in cols:
            v = getattr(record, n)
            if n == "state":
                v = v.value
            elif n in bools:
                v = int(bool(v))
            elif n == "result_message" and isinstance(v, str):
                # The gateway's own words (resultMsg) are not ours to trust: one that
                # quotes the payment code must not keep the bearer token on disk.
                v = redact(v)
            values.append(v)
        sets = ", ".join(f"{c} = ?" for c in cols)
        cur = self._conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", (*values, getattr(record, key)))
        if cur.rowcount != 1:
            raise JournalError(f"{table} {getattr(record, key)} is not in the journal")

    def _event(self, at: float, kind: str, item_id: int, trigger: str, source: str, dest: str,
               detail: str) -> None:
        self._conn.execute(
            "INSERT INTO events (at, item_kind, item_id, trigger, source, dest, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, kind, item_id, trigger, source, dest, redact(detail)))  # gateway texts: see _update

    # ----------------------------------------------------------------- reading

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]  # type: ignore[misc]

    @staticmethod
    def _to_sale(row: dict[str, Any]) -> SaleRecord:
        values = {n: row[n] for n in _SALE_FIELDS}
        values["state"] = SaleState(row["state"])
        for b in _SALE_BOOLS:
            values[b] = bool(row[b])
        return SaleRecord(amount=Money(row["amount_minor"], row["currency"]), **values)

    @staticmethod
    def _to_refund(row: dict[str, Any]) -> RefundRecord:
        values = {n: row[n] for n in _REFUND_FIELDS}
        values["state"] = RefundState(row["state"])
        for b in _REFUND_BOOLS:
            values[b] = bool(row[b])
        return RefundRecord(amount=Money(row["amount_minor"], row["currency"]), **values)

    def _sale_by_id(self, sale_id: int) -> SaleRecord | None:
        rows = self._rows("SELECT * FROM sales WHERE sale_id = ?", (sale_id,))
        return self._to_sale(rows[0]) if rows else None  # type: ignore[arg-type]

    def _refund_by_id(self, refund_id: int) -> RefundRecord | None:
        rows = self._rows("SELECT * FROM refunds WHERE refund_id = ?", (refund_id,))
        return self._to_refund(rows[0]) if rows else None  # type: ignore[arg-type]

    def get_sale(self, key: int | str) -> SaleRecord | None:
        """A sale by its number or its merchantTransId; None if there is none."""
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()):
            return self._sale_by_id(int(key))
        rows = self._rows("SELECT * FROM sales WHERE merchant_trans_id = ?", (key,))
        return self._to_sale(rows[0]) if rows else None  # type: ignore[arg-type]

    def get_refund(self, key: int | str) -> RefundRecord | None:
        """A refund by its number or its merchantRefundId; None if there is none."""
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()):
            return self._refund_by_id(int(key))
        rows = self._rows("SELECT * FROM refunds WHERE merchant_refund_id = ?", (key,))
        return self._to_refund(rows[0]) if rows else None  # type: ignore[arg-type]

    def list_sales(self, open_only: bool = False, date: str | Date | None = None, *,
                   since: float | None = None, before: float | None = None) -> list[SaleRecord]:
        """Sales, oldest first. open_only: not PAID/DECLINED/CANCELLED. date: local YYYY-MM-DD.
        since/before: created at or after / before these epoch seconds (a business day)."""
        where, params = _created_between(since, before)
        if open_only:
            where.append(f"state NOT IN ({', '.join('?' * len(SALE_FINAL))})")
            params.extend(s.value for s in SALE_FINAL)
        if date is not None:
            where.append("local_date = ?")
            params.append(_check_date(date))
        sql = "SELECT * FROM sales" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY sale_id"
        return [self._to_sale(r) for r in self._rows(sql, params)]  # type: ignore[arg-type]

    def list_refunds(self, sale_id: int | None = None, open_only: bool = False, *,
                     since: float | None = None, before: float | None = None) -> list[RefundRecord]:
        """Refunds, oldest first; of one sale if sale_id is given; since/before as for list_sales."""
        where, params = _created_between(since, before)
        if sale_id is not None:
            where.append("sale_id = ?")
            params.append(sale_id)
        if open_only:
            where.append(f"state NOT IN ({', '.join('?' * len(REFUND_FINAL))})")
            params.extend(s.value for s in REFUND_FINAL)
        sql = "SELECT * FROM refunds" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY refund_id"
        return [self._to_refund(r) for r in self._rows(sql, params)]  # type: ignore[arg-type]

    def open_items(self) -> list[SaleRecord | RefundRecord]:
        """Every sale and refund not in a final state (MANUAL_REVIEW and REFUND_PENDING included)."""
        items: list[SaleRecord | RefundRecord] = []
        items.extend(self.list_sales(open_only=True))
        items.extend(self.list_refunds(open_only=True))
        return items

    def events(self, item_kind: str, item_id: int) -> list[EventRecord]:
        """The audit log of one sale or refund, oldest first."""
        rows = self._rows("SELECT * FROM events WHERE item_kind = ? AND item_id = ? ORDER BY event_id",
                          (item_kind, item_id))
        return [EventRecord(**r) for r in rows]  # type: ignore[arg-type]

    def integrity_check(self) -> str:
        """'ok', or one line per problem: SQLite's own check plus the journal's rules."""
        problems: list[str] = []
        with self._lock:
            for (line,) in self._conn.execute("PRAGMA integrity_check").fetchall():
                if line != "ok":
                    problems.append(f"sqlite: {line}")
            for mtid, code in self._conn.execute("SELECT merchant_trans_id, code_masked FROM sales"):
                if sum(ch.isdigit() for ch in code) > 4:
                    problems.append(f"sale {mtid}: payment code is stored with more than 4 digits")
            for mtid, total, amount in self._conn.execute(
                    "SELECT s.merchant_trans_id, SUM(r.amount_minor), s.amount_minor FROM refunds r "
                    "JOIN sales s USING (sale_id) WHERE r.state != ? GROUP BY s.sale_id",
                    (RefundState.REFUND_DECLINED.value,)):
                if total > amount:
                    problems.append(f"sale {mtid}: refunds ({total}) exceed the sale amount ({amount})")
            for mrid, state in self._conn.execute(
                    "SELECT r.merchant_refund_id, s.state FROM refunds r JOIN sales s USING (sale_id) "
                    "WHERE s.state != ?", (SaleState.PAID.value,)):
                problems.append(f"refund {mrid}: its sale is {state}, not PAID")
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

