"""Headquarters' PostgreSQL schema: plain versioned SQL, applied in order by `pos hq init-db`.

Never edit a released step; append a new one. `events` is partitioned by day
(RANGE on `day`; a day's partition is created when its first event arrives),
so old days can be detached, archived or moved to other storage with the
usual PostgreSQL tools; `items` is the current state of every sale and
refund, kept from the events in the same transaction.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE stores (
            store_id   TEXT PRIMARY KEY,
            name       TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE terminals (
            terminal_id   TEXT PRIMARY KEY,
            store_id      TEXT NOT NULL REFERENCES stores (store_id),
            token_sha256  TEXT NOT NULL UNIQUE,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            revoked_at    TIMESTAMPTZ,
            last_seen     TIMESTAMPTZ,
            last_health   JSONB,
            backlog       INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE events (
            day          DATE NOT NULL,
            terminal_id  TEXT NOT NULL,
            install_id   TEXT NOT NULL,
            seq          BIGINT NOT NULL,
            store_id     TEXT NOT NULL,
            at           DOUBLE PRECISION NOT NULL,
            kind         TEXT NOT NULL,
            body         JSONB NOT NULL,
            received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (day, terminal_id, install_id, seq)
        ) PARTITION BY RANGE (day)""",
        "CREATE TABLE events_default PARTITION OF events DEFAULT",
        "CREATE INDEX events_store ON events (store_id, day)",
        """CREATE TABLE items (
            terminal_id     TEXT NOT NULL,
            ref             TEXT NOT NULL,
            store_id        TEXT NOT NULL,
            item_kind       TEXT NOT NULL,
            sale_ref        TEXT NOT NULL,
            amount_minor    BIGINT NOT NULL,
            currency        TEXT NOT NULL,
            state           TEXT NOT NULL,
            local_date      DATE NOT NULL,
            acquirement_id  TEXT,
            code_masked     TEXT,
            created_at      DOUBLE PRECISION NOT NULL,
            updated_at      DOUBLE PRECISION NOT NULL,
            last_seq        BIGINT NOT NULL,
            history         JSONB NOT NULL DEFAULT '[]',
            PRIMARY KEY (terminal_id, ref)
        )""",
        "CREATE INDEX items_day ON items (local_date, store_id)",
        "CREATE INDEX items_state ON items (state)",
        """CREATE TABLE users (
            name       TEXT PRIMARY KEY,
            pw_hash    TEXT NOT NULL,
            role       TEXT NOT NULL CHECK (role IN ('viewer', 'manager'))
        )""",
    ],
    # 2: the chain-wide reconciliation of each day, as last computed (pos/hq/reconcile.py)
    [
        """CREATE TABLE reconciliations (
            day         DATE PRIMARY KEY,
            result      JSONB NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
