"""Headquarters' PostgreSQL schema: plain versioned SQL, applied in order by `pos hq init-db`.

Never edit a released step; append a new one. `events` is partitioned by day
and store (from step 3): RANGE on `day`, each day sub-partitioned by HASH of
`store_id` into EVENT_STORE_BUCKETS tables. A day's partitions are created
when its first event arrives (the SQL function `hq_events_partition`), so old
days can be detached, archived or moved to other storage with the usual
PostgreSQL tools, and a query naming a day and a store reads one table;
`items` is the current state of every sale and refund, kept from the events
in the same transaction.
"""

from __future__ import annotations

__all__ = ["EVENT_STORE_BUCKETS", "MIGRATIONS", "SCHEMA_VERSION"]

# Each day's events are spread over this many tables by a hash of the store id (fixed by step 3).
EVENT_STORE_BUCKETS = 8

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
    # 3: events partitioned by day AND store. The rows of step 1's table move into the new layout.
    [
        f"""CREATE FUNCTION hq_events_partition(d DATE) RETURNS VOID LANGUAGE plpgsql AS $$
        DECLARE
            parent TEXT := 'events_' || to_char(d, 'YYYYMMDD');
        BEGIN
            IF to_regclass(parent) IS NOT NULL THEN
                RETURN;
            END IF;
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L) '
                           'PARTITION BY HASH (store_id)', parent, d, d + 1);
            FOR n IN 0 .. {EVENT_STORE_BUCKETS - 1} LOOP
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS {EVENT_STORE_BUCKETS}, '
                               'REMAINDER %s)', parent || '_s' || n, parent, n);
            END LOOP;
        END $$""",
        "CREATE TABLE events_moving AS SELECT * FROM events",
        "DROP TABLE events",
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
            PRIMARY KEY (day, terminal_id, install_id, seq, store_id)
        ) PARTITION BY RANGE (day)""",
        "CREATE TABLE events_default PARTITION OF events DEFAULT",
        "CREATE INDEX events_store ON events (store_id, day)",
        "SELECT hq_events_partition(day) FROM (SELECT DISTINCT day FROM events_moving) AS days",
        """INSERT INTO events (day, terminal_id, install_id, seq, store_id, at, kind, body, received_at)
           SELECT day, terminal_id, install_id, seq, store_id, at, kind, body, received_at FROM events_moving""",
        "DROP TABLE events_moving",
    ],
    # 4: dashboard sessions outlive a restart of the service (only a hash of the cookie is kept)
    [
        """CREATE TABLE sessions (
            id_sha256   TEXT PRIMARY KEY,
            name        TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at  TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX sessions_expiry ON sessions (expires_at)",
    ],
    # 5: a terminal may authenticate with a client certificate (its SHA-256 fingerprint) instead of a token
    [
        "ALTER TABLE terminals ALTER COLUMN token_sha256 DROP NOT NULL",
        "ALTER TABLE terminals ADD COLUMN cert_sha256 TEXT UNIQUE",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
