"""The journal's tables, created and upgraded by numbered migrations.

`migrate` brings any journal file to `SCHEMA_VERSION` inside one transaction
and gives a new file its install id (see pos/journal/journal.py for what the
install id is for). Never edit a released step; append a new one.
"""

from __future__ import annotations

import secrets

from pos.journal.backoffice import BACKOFFICE_TABLES
from pos.journal.db import JournalDB, JournalError
from pos.journal.outbox import OUTBOX_SWITCH, OUTBOX_TABLES
from pos.journal.reconcile_files import RECONCILE_TABLES
from pos.journal.till import TILL_TABLES

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

# Letters and digits that cannot be misread on a receipt (no 0/O, 1/I/L).
_INSTALL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_INSTALL_ID_LEN = 6

# Ordered migrations: index i brings the schema from version i to i + 1.
MIGRATIONS: list[list[str]] = [
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
    # 2: the print queue's durable receipts (devices/print_queue.py). Journals
    # written before this step may already hold the table (the queue created
    # it itself then), hence IF NOT EXISTS.
    [
        """CREATE TABLE IF NOT EXISTS print_jobs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            job_key     TEXT NOT NULL UNIQUE,
            created_at  REAL NOT NULL,
            data        BLOB NOT NULL,               -- rendered ESC/POS bytes, all copies
            record      TEXT,                        -- ReceiptData as JSON when given, for reprints
            reprint_of  TEXT,
            state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT,
            printed_at  REAL
        )""",
        "CREATE INDEX IF NOT EXISTS print_jobs_pending ON print_jobs (state, id)",
    ],
    # 3: the till's sales, refund keys and business days (pos/journal/till.py)
    list(TILL_TABLES),
    # 4: Alipay's reconciliation files as imported (pos/journal/reconcile_files.py)
    list(RECONCILE_TABLES),
    # 5: a sale charged after "No goods" is given back by a full refund (REVERSING, REVERSED),
    [
        "ALTER TABLE sales ADD COLUMN reversal_id TEXT",
        "ALTER TABLE sales ADD COLUMN reversal_gateway_id TEXT",
        "ALTER TABLE sales ADD COLUMN reversal_attempts INTEGER NOT NULL DEFAULT 0",
        # ... and what the customer paid in the wallet's currency (receipts)
        "ALTER TABLE sales ADD COLUMN pay_amount_minor INTEGER",
        "ALTER TABLE sales ADD COLUMN pay_currency TEXT",
        "ALTER TABLE sales ADD COLUMN conversion_rate TEXT",
    ],
    # 6: customs declarations and merchant registrations (pos/journal/backoffice.py)
    list(BACKOFFICE_TABLES),
    # 7: the outbox of events for the chain's headquarters (pos/journal/outbox.py)
    list(OUTBOX_TABLES),
    # 8: the till's line items of a sale (AlipayCN's goodsInfo text, pos/core/goods.py)
    [
        "ALTER TABLE sales ADD COLUMN goods TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE till_sales ADD COLUMN goods TEXT NOT NULL DEFAULT ''",
    ],
    # 9: indexes for what reads the journal while it grows for years: a business day's
    # reports (by creation time, covering what they total), open items and the receipts
    # owed on start (by state, then the time of the last change), waiting till sales.
    [
        "CREATE INDEX IF NOT EXISTS sales_created ON sales (created_at, state, currency, amount_minor)",
        "CREATE INDEX IF NOT EXISTS refunds_created ON refunds (created_at, state, currency, amount_minor)",
        "DROP INDEX IF EXISTS sales_state",
        "CREATE INDEX sales_state ON sales (state, updated_at)",
        "CREATE INDEX IF NOT EXISTS refunds_state ON refunds (state, updated_at)",
        "CREATE INDEX IF NOT EXISTS till_sales_waiting ON till_sales (state) WHERE sale_id IS NULL",
    ],
    # 10: the last answer's cause, as its protocol's client classified its result code
    # (pos/core/outcomes.py Cause). Rows written before kept only the code: these are the
    # codes both protocols classified so when this step was written (a sale asking the
    # customer to confirm, a cancel refused as too late), so an upgraded open sale behaves
    # as it did.
    [
        "ALTER TABLE sales ADD COLUMN result_cause TEXT",
        "UPDATE sales SET result_cause = 'CUSTOMER_CONFIRMING' "
        "WHERE result_code IN ('USER_PAYING', 'PAYMENT_IN_PROCESS')",
        "UPDATE sales SET result_cause = 'TOO_LATE_TO_CANCEL' WHERE result_code = 'CANCEL_EXPIRED'",
    ],
    # 11: the outbox's switch: a terminal that ships nowhere writes no outbox rows (pos/journal/outbox.py)
    list(OUTBOX_SWITCH),
    # 12: a day's refunds by their local date (reconciliation by day, `pos journal list --date`), as
    # sales_date finds its sales: without it each such read scanned every refund ever made. A step
    # never rewrites it (local_date is fixed at creation: pos/journal/rows.py REFUND_FIXED).
    ["CREATE INDEX IF NOT EXISTS refunds_date ON refunds (local_date)"],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: JournalDB, terminal_id: str) -> None:
    """Bring the file to SCHEMA_VERSION; a new file gets its install id."""
    with db.transaction(crash_point=False) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{db.path} has schema version {version}, newer than this program knows "
                f"({SCHEMA_VERSION}): install the newer version of pos-terminal")
        for step in MIGRATIONS[version:]:
            for sql in step:
                conn.execute(sql)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        if conn.execute("SELECT 1 FROM meta WHERE key = 'install_id'").fetchone() is None:
            install = "".join(secrets.choice(_INSTALL_ALPHABET) for _ in range(_INSTALL_ID_LEN))
            conn.execute("INSERT INTO meta (key, value) VALUES ('install_id', ?)", (install,))
            conn.execute("INSERT INTO meta (key, value) VALUES ('created_for', ?)", (terminal_id,))
