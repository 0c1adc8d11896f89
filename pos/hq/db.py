"""Headquarters' database: PostgreSQL through psycopg 3. The only module of pos/hq that speaks SQL.

One `HqDB` per process holds a small pool of connections (the HTTP server
answers on several threads). Every write is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import queue
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pos.core.errors import EXIT_UNAVAILABLE, UserError
from pos.hq.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["HqDB", "HqError", "Terminal", "hash_password", "check_password", "token_hash"]

Row = dict[str, Any]
TOKEN_PREFIX = "hq1_"


class HqError(UserError):
    """Headquarters' database cannot be reached or refuses a request."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    except ValueError:
        return False
    return secrets.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    store_id: str


class HqDB:
    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self._pool: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._size = pool_size
        self._made = 0
        self._lock = threading.Lock()
        self._days: set[date] = set()

    # ------------------------------------------------------------ connections

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.dsn, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise HqError(f"cannot reach headquarters' database ({_first_line(exc)}): check the DSN "
                          "(--dsn or POS_HQ_DSN) and that PostgreSQL is running", exit_code=EXIT_UNAVAILABLE) from None

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection; committed if the body returns."""
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            conn.close()
            raise HqError(f"headquarters' database failed: {_first_line(exc)}", exit_code=EXIT_UNAVAILABLE) from None
        except BaseException:
            if conn.closed:
                raise
            self._pool.put(conn)
            raise
        self._pool.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        with self.tx() as conn:
            return list(conn.execute(sql, params).fetchall())

    # ------------------------------------------------------------ schema

    def migrate(self) -> tuple[int, int]:
        """Bring the database to SCHEMA_VERSION; returns (from, to)."""
        with self.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(4242001)")
            conn.execute("CREATE TABLE IF NOT EXISTS hq_schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM hq_schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO hq_schema_version VALUES (0)")
            start = version = int(row["version"]) if row else 0
            if version > SCHEMA_VERSION:
                raise HqError(f"the database has schema version {version}, newer than this program knows "
                              f"({SCHEMA_VERSION}): install the newer version of pos-terminal")
            for step in MIGRATIONS[version:]:
                for sql in step:
                    conn.execute(sql)
                version += 1
            conn.execute("UPDATE hq_schema_version SET version = %s", (version,))
        return start, version

    def check_schema(self) -> None:
        try:
            found = self.rows("SELECT version FROM hq_schema_version")
        except psycopg.errors.UndefinedTable:
            found = []
        if not found or int(found[0]["version"]) != SCHEMA_VERSION:
            raise HqError("headquarters' database has no (or an older) schema: run 'pos hq init-db' first")

    # ------------------------------------------------------------ terminals and users

    def add_terminal(self, terminal_id: str, store_id: str, store_name: str = "", *,
                     cert_sha256: str | None = None) -> str:
        """Register a terminal; returns its token (stored only as a hash: shown once).

        With `cert_sha256` (the SHA-256 fingerprint of a client certificate issued
        for it) the terminal authenticates with that certificate alone: no token,
        and "" is returned.
        """
        token = "" if cert_sha256 else TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.tx() as conn:
            conn.execute("INSERT INTO stores (store_id, name) VALUES (%s, %s) ON CONFLICT (store_id) DO UPDATE "
                         "SET name = CASE WHEN EXCLUDED.name = '' THEN stores.name ELSE EXCLUDED.name END",
                         (store_id, store_name))
            row = conn.execute("SELECT revoked_at FROM terminals WHERE terminal_id = %s", (terminal_id,)).fetchone()
            if row is not None and row["revoked_at"] is None:
                raise HqError(f"terminal {terminal_id} is already registered: 'pos hq revoke {terminal_id}' "
                              "first to give it a new credential")
            conn.execute("INSERT INTO terminals (terminal_id, store_id, token_sha256, cert_sha256) "
                         "VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT (terminal_id) DO UPDATE SET store_id = EXCLUDED.store_id, "
                         "token_sha256 = EXCLUDED.token_sha256, cert_sha256 = EXCLUDED.cert_sha256, "
                         "revoked_at = NULL",
                         (terminal_id, store_id, token_hash(token) if token else None, cert_sha256))
        return token

    def revoke(self, terminal_id: str) -> bool:
        with self.tx() as conn:
            cur = conn.execute("UPDATE terminals SET revoked_at = now() WHERE terminal_id = %s "
                               "AND revoked_at IS NULL", (terminal_id,))
            return cur.rowcount == 1

    def authenticate(self, token: str) -> Terminal | None:
        found = self.rows("SELECT terminal_id, store_id FROM terminals WHERE token_sha256 = %s "
                          "AND revoked_at IS NULL", (token_hash(token),))
        return Terminal(found[0]["terminal_id"], found[0]["store_id"]) if found else None

    def authenticate_cert(self, cert_sha256: str) -> Terminal | None:
        """The terminal a (CA-verified) client certificate was issued to, unless revoked."""
        found = self.rows("SELECT terminal_id, store_id FROM terminals WHERE cert_sha256 = %s "
                          "AND revoked_at IS NULL", (cert_sha256,))
        return Terminal(found[0]["terminal_id"], found[0]["store_id"]) if found else None

    def add_user(self, name: str, password: str, role: str) -> None:
        with self.tx() as conn:
            conn.execute("INSERT INTO users (name, pw_hash, role) VALUES (%s, %s, %s) ON CONFLICT (name) "
                         "DO UPDATE SET pw_hash = EXCLUDED.pw_hash, role = EXCLUDED.role",
                         (name, hash_password(password), role))

    def user_role(self, name: str, password: str) -> str | None:
        found = self.rows("SELECT pw_hash, role FROM users WHERE name = %s", (name,))
        if not found or not check_password(password, found[0]["pw_hash"]):
            return None
        return str(found[0]["role"])

    # ------------------------------------------------------------ dashboard sessions

    def new_session(self, name: str, seconds: int) -> str:
        """A session for a logged-in user; returns the cookie's value (only its hash is stored)."""
        cookie = secrets.token_urlsafe(32)
        with self.tx() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < now()")
            conn.execute("INSERT INTO sessions (id_sha256, name, expires_at) "
                         "VALUES (%s, %s, now() + make_interval(secs => %s))", (token_hash(cookie), name, seconds))
        return cookie

    def session_user(self, cookie: str) -> tuple[str, str] | None:
        """(name, role) of a session that has not expired nor been ended; the role as the user has it now."""
        found = self.rows("SELECT u.name, u.role FROM sessions s JOIN users u USING (name) "
                          "WHERE s.id_sha256 = %s AND s.expires_at > now()", (token_hash(cookie),))
        return (str(found[0]["name"]), str(found[0]["role"])) if found else None

    def end_session(self, cookie: str) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM sessions WHERE id_sha256 = %s", (token_hash(cookie),))

    # ------------------------------------------------------------ ingest

    def _ensure_partitions(self, days: set[date]) -> None:
        """Each day's partition and its per-store tables (schema step 3's hq_events_partition), once."""
        missing = days - self._days
        if not missing:
            return
        with self.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(4242002)")
            for day in sorted(missing):
                conn.execute("SELECT hq_events_partition(%s)", (day,))
        self._days |= missing

    def ingest(self, terminal: Terminal, install_id: str, events: list[dict[str, Any]],
               heartbeat: dict[str, Any]) -> tuple[int, int]:
        """Store a batch once: returns (new events, duplicates). Replays change nothing."""
        if events:
            self._ensure_partitions({datetime.fromtimestamp(e["at"], tz=UTC).date() for e in events})
        with self.tx() as conn:
            stored = 0
            if events:
                row = conn.execute(_INGEST, {"events": json.dumps(events), "terminal": terminal.terminal_id,
                                             "install": install_id, "store": terminal.store_id}).fetchone()
                stored = int(row["stored"]) if row else 0
            conn.execute("UPDATE terminals SET last_seen = now(), last_health = %s, backlog = %s "
                         "WHERE terminal_id = %s",
                         (json.dumps(heartbeat.get("health") or {}), int(heartbeat.get("backlog") or 0),
                          terminal.terminal_id))
        return stored, len(events) - stored

    # ------------------------------------------------------------ receipts

    def ping(self) -> None:
        """One round trip to the database (raises when it is unreachable)."""
        self.rows("SELECT 1")

    def paid_totals(self, day: date) -> list[Row]:
        """(currency, total) of the chain's PAID sales on a business day."""
        return self.rows("SELECT currency, SUM(amount_minor) AS total FROM items WHERE item_kind = 'sale' "
                         "AND state = 'PAID' AND local_date = %s GROUP BY currency", (day,))

    def terminal_board(self) -> list[Row]:
        """Every terminal with its store, last heartbeat (and its age in seconds), health and backlog."""
        return self.rows(
            "SELECT t.terminal_id, t.store_id, s.name AS store_name, t.last_seen, t.backlog, t.revoked_at, "
            "t.last_health->>'status' AS status, t.last_health->>'open_items' AS open_items, "
            "t.last_health->>'last_alarm' AS last_alarm, "
            "EXTRACT(EPOCH FROM now() - t.last_seen) AS age FROM terminals t JOIN stores s USING (store_id) "
            "ORDER BY t.store_id, t.terminal_id")

    def items_in_states(self, states: Iterable[str]) -> list[Row]:
        """The chain's sales and refunds in these states, with their store's name, oldest change first."""
        return self.rows("SELECT i.*, s.name AS store_name FROM items i JOIN stores s USING (store_id) "
                         "WHERE state = ANY(%s) ORDER BY updated_at", (list(states),))

    def item(self, terminal_id: str, ref: str) -> Row | None:
        """One sale or refund (merchantTransId / merchantRefundId) of a terminal."""
        found = self.rows("SELECT * FROM items WHERE terminal_id = %s AND ref = %s", (terminal_id, ref))
        return found[0] if found else None

    def item_events(self, terminal_id: str, ref: str) -> list[Row]:
        """A sale's or refund's history as the terminal shipped it, in order."""
        return self.rows("SELECT seq, at, body FROM events WHERE terminal_id = %s AND body->>'ref' = %s "
                         "ORDER BY seq", (terminal_id, ref))

    def receipts_of(self, terminal_id: str, ref: str) -> list[Row]:
        """The print outcomes (with the receipt's data) of a sale or refund, newest first."""
        return self.rows("SELECT seq, install_id, body FROM events WHERE terminal_id = %s AND kind = 'print' "
                         "AND body->'receipt'->>'merchant_trans_id' = %s AND body->>'state' = 'done' "
                         "ORDER BY at DESC", (terminal_id, ref))

    def receipt(self, terminal_id: str, install_id: str, seq: int) -> dict[str, Any] | None:
        found = self.rows("SELECT body->'receipt' AS receipt FROM events WHERE terminal_id = %s AND install_id = %s "
                          "AND seq = %s AND kind = 'print'", (terminal_id, install_id, seq))
        return dict(found[0]["receipt"]) if found and found[0]["receipt"] else None

    # ------------------------------------------------------------ reconciliation

    def items_for_day(self, day: str, refs: list[str]) -> list[Row]:
        """Every sale and refund of a local date, and those of other dates that Alipay's rows name."""
        return self.rows("SELECT * FROM items WHERE local_date = %s OR ref = ANY(%s) ORDER BY terminal_id, ref",
                         (date.fromisoformat(day), refs))

    def store_reconciliation(self, day: str, result: dict[str, Any]) -> None:
        with self.tx() as conn:
            conn.execute("INSERT INTO reconciliations (day, result) VALUES (%s, %s) ON CONFLICT (day) DO UPDATE "
                         "SET result = EXCLUDED.result, created_at = now()",
                         (date.fromisoformat(day), json.dumps(result)))

    def reconciliation(self, day: str) -> dict[str, Any] | None:
        found = self.rows("SELECT result FROM reconciliations WHERE day = %s", (date.fromisoformat(day),))
        return dict(found[0]["result"]) if found else None


_INGEST = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%(events)s::jsonb) AS x(seq BIGINT, at DOUBLE PRECISION, kind TEXT, body JSONB)
), ins AS (
    INSERT INTO events (day, terminal_id, install_id, seq, store_id, at, kind, body)
    SELECT (to_timestamp(at) AT TIME ZONE 'UTC')::date, %(terminal)s, %(install)s, seq, %(store)s, at, kind, body
    FROM incoming
    -- The key without the store (a terminal re-registered in another store may send an old batch again).
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.day = (to_timestamp(incoming.at) AT TIME ZONE 'UTC')::date
                      AND e.terminal_id = %(terminal)s AND e.install_id = %(install)s AND e.seq = incoming.seq)
    ON CONFLICT DO NOTHING
    RETURNING seq, at, kind, body
), latest AS (
    SELECT DISTINCT ON (body->>'ref') seq, at, body,
           min(at) OVER (PARTITION BY body->>'ref') AS first_at
    FROM ins
    WHERE kind = 'event' AND body->>'ref' IS NOT NULL AND body->>'amount_minor' IS NOT NULL
    ORDER BY body->>'ref', seq DESC
), up AS (
    INSERT INTO items AS it (terminal_id, ref, store_id, item_kind, sale_ref, amount_minor, currency, state,
                             local_date, acquirement_id, code_masked, created_at, updated_at, last_seq)
    SELECT %(terminal)s, body->>'ref', %(store)s, body->>'item_kind', COALESCE(body->>'sale_ref', ''),
           (body->>'amount_minor')::bigint, body->>'currency', body->>'dest', (body->>'local_date')::date,
           body->>'acquirement_id', body->>'code_masked', first_at, at, seq
    FROM latest
    ON CONFLICT (terminal_id, ref) DO UPDATE SET
        state = CASE WHEN it.last_seq < EXCLUDED.last_seq THEN EXCLUDED.state ELSE it.state END,
        updated_at = GREATEST(it.updated_at, EXCLUDED.updated_at),
        created_at = LEAST(it.created_at, EXCLUDED.created_at),
        acquirement_id = COALESCE(CASE WHEN it.last_seq < EXCLUDED.last_seq THEN EXCLUDED.acquirement_id END,
                                  it.acquirement_id, EXCLUDED.acquirement_id),
        last_seq = GREATEST(it.last_seq, EXCLUDED.last_seq)
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS stored, (SELECT count(*) FROM up) AS items
"""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
