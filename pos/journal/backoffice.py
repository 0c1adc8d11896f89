"""The back office's tables: customs declarations and merchant registrations (v1 API).

Journal first, as for sales: a declaration's `declarationRequestId` and a
registration's `registrationRequestId` are chosen and committed here BEFORE
the first call, so a repeat after a timeout or a crash sends the same id
(both are the v1 API's idempotency fields) and cannot declare or register
twice. Every answer and every later status change is kept as a row of
`backoffice_events` (append-only, like the sales' event log).

Everything runs on the journal's own connection and lock and commits
through it (the journal's crash hook counts these commits too).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pos.core.money import Money
from pos.journal.db import JournalDB, JournalError

__all__ = ["BACKOFFICE_TABLES", "Declaration", "Registration", "BackOfficeEvent", "BackOfficeJournal",
           "DECLARATION_OPEN"]

# One migration of the journal (pos/journal/schema.py).
BACKOFFICE_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS declarations (
        declaration_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        declaration_request_id  TEXT NOT NULL UNIQUE CHECK (length(declaration_request_id) <= 32),
        sale_id                 INTEGER NOT NULL REFERENCES sales (sale_id),
        payment_id              TEXT NOT NULL,
        customs_code            TEXT NOT NULL,
        merchant_customs_code   TEXT NOT NULL,
        merchant_customs_name   TEXT NOT NULL,
        amount_minor            INTEGER NOT NULL CHECK (amount_minor > 0),
        currency                TEXT NOT NULL,
        split_order             INTEGER NOT NULL CHECK (split_order IN (0, 1)),
        suborder_id             TEXT NOT NULL,
        state                   TEXT NOT NULL,
        customs_status          TEXT NOT NULL DEFAULT '',
        customs_payment_id      TEXT NOT NULL DEFAULT '',
        customs_order_id        TEXT NOT NULL DEFAULT '',
        result_code             TEXT NOT NULL DEFAULT '',
        result_message          TEXT NOT NULL DEFAULT '',
        created_at              REAL NOT NULL,
        updated_at              REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS declarations_sale ON declarations (sale_id)",
    """CREATE TABLE IF NOT EXISTS registrations (
        registration_id         INTEGER PRIMARY KEY AUTOINCREMENT,
        registration_request_id TEXT NOT NULL UNIQUE CHECK (length(registration_request_id) <= 64),
        request                 TEXT NOT NULL,          -- the request body as sent (JSON)
        state                   TEXT NOT NULL,
        registration_status     TEXT NOT NULL DEFAULT '',
        result_code             TEXT NOT NULL DEFAULT '',
        result_message          TEXT NOT NULL DEFAULT '',
        created_at              REAL NOT NULL,
        updated_at              REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS backoffice_events (
        event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
        at          REAL NOT NULL,
        item_kind   TEXT NOT NULL CHECK (item_kind IN ('declaration', 'registration')),
        request_id  TEXT NOT NULL,
        what        TEXT NOT NULL,
        state       TEXT NOT NULL,
        detail      TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS backoffice_events_item ON backoffice_events (item_kind, request_id)",
    """CREATE TRIGGER IF NOT EXISTS backoffice_events_no_update BEFORE UPDATE ON backoffice_events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS backoffice_events_no_delete BEFORE DELETE ON backoffice_events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
)

# Declaration states (ours): SENDING = committed, the answer not yet known (a
# timeout or a crash leaves it so: repeat with the same id); DECLARED = the
# API took it (S); REFUSED = the API said F (nothing was declared).
# customs_status is the API's declarationRequestStatus, updated by `status`.
DECLARATION_OPEN = frozenset({"SENDING"})


@dataclass(frozen=True)
class Declaration:
    declaration_id: int
    declaration_request_id: str
    sale_id: int
    payment_id: str
    customs_code: str
    merchant_customs_code: str
    merchant_customs_name: str
    amount: Money
    split_order: bool
    suborder_id: str
    state: str
    customs_status: str
    customs_payment_id: str
    customs_order_id: str
    result_code: str
    result_message: str
    created_at: float
    updated_at: float

    def same_request(self, *, customs_code: str, merchant_customs_code: str, merchant_customs_name: str,
                     amount: Money, split_order: bool) -> bool:
        return (self.customs_code, self.merchant_customs_code, self.merchant_customs_name, self.amount,
                self.split_order) == (customs_code, merchant_customs_code, merchant_customs_name, amount,
                                      split_order)


@dataclass(frozen=True)
class Registration:
    registration_id: int
    registration_request_id: str
    request: dict[str, Any]
    state: str                 # SENDING | SUBMITTED | REFUSED
    registration_status: str   # the API's: PROCESSING | SUCCESSFUL | FAILED ('' before an answer)
    result_code: str
    result_message: str
    created_at: float
    updated_at: float

    @property
    def approved(self) -> bool:
        return self.registration_status == "SUCCESSFUL"


@dataclass(frozen=True)
class BackOfficeEvent:
    at: float
    item_kind: str
    request_id: str
    what: str
    state: str
    detail: str


def _declaration(row: dict[str, Any]) -> Declaration:
    return Declaration(
        row["declaration_id"], row["declaration_request_id"], row["sale_id"], row["payment_id"],
        row["customs_code"], row["merchant_customs_code"], row["merchant_customs_name"],
        Money(row["amount_minor"], row["currency"]), bool(row["split_order"]), row["suborder_id"],
        row["state"], row["customs_status"], row["customs_payment_id"], row["customs_order_id"],
        row["result_code"], row["result_message"], row["created_at"], row["updated_at"])


def _registration(row: dict[str, Any]) -> Registration:
    return Registration(row["registration_id"], row["registration_request_id"], json.loads(row["request"]),
                        row["state"], row["registration_status"], row["result_code"], row["result_message"],
                        row["created_at"], row["updated_at"])


class BackOfficeJournal:
    """Declarations and registrations in the journal file (one JournalDB, its lock)."""

    def __init__(self, db: JournalDB, install_id: str) -> None:
        self._db = db
        self._install = install_id

    # ------------------------------------------------------------ declarations

    def create_declaration(self, *, sale_id: int, payment_id: str, customs_code: str,
                           merchant_customs_code: str, merchant_customs_name: str, amount: Money,
                           split_order: bool, now: float | None = None) -> Declaration:
        """A SENDING declaration with a fresh declarationRequestId, committed before any call."""
        at = time.time() if now is None else now
        with self._db.transaction() as conn:
            row = conn.execute("SELECT value FROM sequences WHERE name = 'declaration'").fetchone()
            seq = (row[0] if row else 0) + 1
            conn.execute("INSERT INTO sequences (name, value) VALUES ('declaration', ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (seq,))
            request_id = f"DCL-{self._install}-{seq:08d}"
            # A split declaration is one sub-order: its id is the declaration's own.
            suborder = request_id if split_order else ""
            cur = conn.execute(
                "INSERT INTO declarations (declaration_request_id, sale_id, payment_id, customs_code, "
                "merchant_customs_code, merchant_customs_name, amount_minor, currency, split_order, suborder_id, "
                "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'SENDING', ?, ?)",
                (request_id, sale_id, payment_id, customs_code, merchant_customs_code, merchant_customs_name,
                 amount.minor, amount.currency, int(split_order), suborder, at, at))
            self._event(conn, at, "declaration", request_id, "create", "SENDING",
                        f"sale {sale_id} customs {customs_code} {amount.receipt()}"
                        + (" split" if split_order else ""))
            declaration_id = int(cur.lastrowid or 0)
        found = self._db.one("SELECT * FROM declarations WHERE declaration_id = ?", (declaration_id,))
        if found is None:
            raise JournalError(f"declaration {request_id} was not recorded")
        return _declaration(found)

    def update_declaration(self, request_id: str, *, what: str, state: str | None = None,
                           customs_status: str | None = None, customs_payment_id: str | None = None,
                           customs_order_id: str | None = None, result_code: str | None = None,
                           result_message: str | None = None, detail: str = "",
                           now: float | None = None) -> Declaration:
        """Record an answer or a status change (only changed fields), with its event."""
        at = time.time() if now is None else now
        fields = {"state": state, "customs_status": customs_status, "customs_payment_id": customs_payment_id,
                  "customs_order_id": customs_order_id, "result_code": result_code,
                  "result_message": result_message}
        changes = {k: v for k, v in fields.items() if v is not None}
        with self._db.transaction() as conn:
            current = conn.execute("SELECT state FROM declarations WHERE declaration_request_id = ?",
                                   (request_id,)).fetchone()
            if current is None:
                raise JournalError(f"no declaration {request_id} in the journal")
            sets = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"UPDATE declarations SET {sets}{', ' if sets else ''}updated_at = ? "
                         "WHERE declaration_request_id = ?", (*changes.values(), at, request_id))
            self._event(conn, at, "declaration", request_id, what, changes.get("state") or current[0], detail)
        found = self.declaration(request_id)
        assert found is not None
        return found

    def declaration(self, request_id: str) -> Declaration | None:
        row = self._db.one("SELECT * FROM declarations WHERE declaration_request_id = ?", (request_id,))
        return _declaration(row) if row else None

    def declarations_of_sale(self, sale_id: int) -> list[Declaration]:
        rows = self._db.rows("SELECT * FROM declarations WHERE sale_id = ? ORDER BY declaration_id", (sale_id,))
        return [_declaration(r) for r in rows]

    # ------------------------------------------------------------ registrations

    def create_registration(self, request: dict[str, Any], *, now: float | None = None) -> Registration:
        """A SENDING registration with a fresh registrationRequestId (put into `request`), committed."""
        at = time.time() if now is None else now
        with self._db.transaction() as conn:
            row = conn.execute("SELECT value FROM sequences WHERE name = 'registration'").fetchone()
            seq = (row[0] if row else 0) + 1
            conn.execute("INSERT INTO sequences (name, value) VALUES ('registration', ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (seq,))
            request_id = f"REG-{self._install}-{seq:08d}"
            body = {"registrationRequestId": request_id, **request}
            conn.execute("INSERT INTO registrations (registration_request_id, request, state, created_at, "
                         "updated_at) VALUES (?, ?, 'SENDING', ?, ?)",
                         (request_id, json.dumps(body, sort_keys=True), at, at))
            self._event(conn, at, "registration", request_id, "create", "SENDING", "")
        found = self.registration(request_id)
        assert found is not None
        return found

    def update_registration(self, request_id: str, *, what: str, state: str | None = None,
                            registration_status: str | None = None, result_code: str | None = None,
                            result_message: str | None = None, detail: str = "",
                            now: float | None = None) -> tuple[Registration, bool]:
        """Record an answer, inquiry or notification; returns (registration, whether anything changed).

        Idempotent: the same status told twice (a notification sent again)
        changes nothing and writes no event."""
        at = time.time() if now is None else now
        fields = {"state": state, "registration_status": registration_status, "result_code": result_code,
                  "result_message": result_message}
        with self._db.transaction() as conn:
            row = conn.execute("SELECT state, registration_status, result_code, result_message FROM registrations "
                               "WHERE registration_request_id = ?", (request_id,)).fetchone()
            if row is None:
                raise JournalError(f"no registration {request_id} in the journal")
            current = dict(zip(("state", "registration_status", "result_code", "result_message"), row,
                               strict=True))
            changes = {k: v for k, v in fields.items() if v is not None and v != current[k]}
            if changes:
                sets = ", ".join(f"{k} = ?" for k in changes)
                conn.execute(f"UPDATE registrations SET {sets}, updated_at = ? WHERE registration_request_id = ?",
                             (*changes.values(), at, request_id))
                self._event(conn, at, "registration", request_id, what, changes.get("state") or current["state"],
                            detail or str(changes.get("registration_status", "")))
        found = self.registration(request_id)
        assert found is not None
        return found, bool(changes)

    def registration(self, request_id: str) -> Registration | None:
        row = self._db.one("SELECT * FROM registrations WHERE registration_request_id = ?", (request_id,))
        return _registration(row) if row else None

    def latest_registration(self) -> Registration | None:
        row = self._db.one("SELECT * FROM registrations ORDER BY registration_id DESC LIMIT 1")
        return _registration(row) if row else None

    # ------------------------------------------------------------ history

    def events(self, item_kind: str, request_id: str) -> list[BackOfficeEvent]:
        rows = self._db.rows("SELECT at, item_kind, request_id, what, state, detail FROM backoffice_events "
                             "WHERE item_kind = ? AND request_id = ? ORDER BY event_id", (item_kind, request_id))
        return [BackOfficeEvent(**r) for r in rows]

    @staticmethod
    def _event(conn: Any, at: float, kind: str, request_id: str, what: str, state: str, detail: str) -> None:
        conn.execute("INSERT INTO backoffice_events (at, item_kind, request_id, what, state, detail) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (at, kind, request_id, what, state, detail))
