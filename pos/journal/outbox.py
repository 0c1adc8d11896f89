"""The outbox: what the terminal still has to ship to the chain's headquarters.

Every row of the event log (sales, refunds, each state change, reversals) and
every print outcome is copied into `hq_outbox` by a trigger, inside the very
transaction that wrote it, so nothing the journal records can miss the outbox
and nothing reaches it that the journal did not commit. Each row's `seq`
(AUTOINCREMENT: never reused, even after rows are deleted) is the event's
sequence number for headquarters, which stores each (terminal, install, seq)
once: shipping is at-least-once, the store exactly-once.

Rows are deleted once headquarters has acknowledged them; the event log itself
keeps everything. Bodies carry what the journal holds: masked codes only.

A terminal that ships nowhere ([hq] off, the default) writes no outbox rows: the
daemon turns the triggers off (`set_writing`), remembering the last event the
outbox had, so that nothing grows without end and no commit pays for rows nobody
reads. Turned on again, the outbox first takes the events written meanwhile,
each once, in order (print outcomes of that time are not shipped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pos.journal.db import JournalDB

__all__ = ["OUTBOX_TABLES", "OUTBOX_SWITCH", "OutboxEvent", "acknowledge", "backlog", "pending", "set_writing"]

_SALE = "(SELECT {col} FROM sales WHERE sale_id = {e}.item_id)"
_REFUND = "(SELECT {col} FROM refunds WHERE refund_id = {e}.item_id)"


def _pick(e: str, col: str, refund_col: str | None = None) -> str:
    return (f"CASE {e}.item_kind WHEN 'sale' THEN {_SALE.format(col=col, e=e)} "
            f"ELSE {_REFUND.format(col=refund_col or col, e=e)} END")


def _event_body(e: str) -> str:
    """The shipped form of the event row `e` (NEW in the trigger, a table alias in the backfill)."""
    return f"""json_object(
            'event_id', {e}.event_id, 'item_kind', {e}.item_kind, 'item_id', {e}.item_id,
            'trigger', {e}.trigger, 'source', {e}.source, 'dest', {e}.dest, 'detail', {e}.detail,
            'ref', {_pick(e, 'merchant_trans_id', 'merchant_refund_id')},
            'sale_ref', CASE {e}.item_kind WHEN 'sale' THEN {_SALE.format(col='merchant_trans_id', e=e)}
                ELSE (SELECT s.merchant_trans_id FROM refunds r JOIN sales s ON s.sale_id = r.sale_id
                      WHERE r.refund_id = {e}.item_id) END,
            'amount_minor', {_pick(e, 'amount_minor')}, 'currency', {_pick(e, 'currency')},
            'acquirement_id', {_pick(e, 'acquirement_id')}, 'local_date', {_pick(e, 'local_date')},
            'code_masked', CASE {e}.item_kind WHEN 'sale' THEN {_SALE.format(col='code_masked', e=e)} END)"""


OUTBOX_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS hq_outbox (
        seq   INTEGER PRIMARY KEY AUTOINCREMENT,
        at    REAL NOT NULL,
        kind  TEXT NOT NULL,
        body  TEXT NOT NULL
    )""",
    # A journal from before the outbox ships its history first (the items' current state:
    # what a sale looked like at each past step is in `detail`).
    f"""INSERT INTO hq_outbox (at, kind, body)
        SELECT e.at, 'event', {_event_body('e')} FROM events e
        WHERE NOT EXISTS (SELECT 1 FROM hq_outbox) ORDER BY e.event_id""",
    f"""CREATE TRIGGER IF NOT EXISTS hq_outbox_event AFTER INSERT ON events BEGIN
        INSERT INTO hq_outbox (at, kind, body) VALUES (NEW.at, 'event', {_event_body('NEW')});
    END""",
    """CREATE TRIGGER IF NOT EXISTS hq_outbox_print AFTER UPDATE OF state ON print_jobs
       WHEN NEW.state != OLD.state BEGIN
        INSERT INTO hq_outbox (at, kind, body) VALUES (COALESCE(NEW.printed_at, NEW.created_at), 'print',
            json_object('job_key', NEW.job_key, 'state', NEW.state, 'attempts', NEW.attempts,
                        'reprint_of', NEW.reprint_of, 'receipt', json(NEW.record)));
    END""",
)


_WRITING = "(SELECT writing FROM hq_outbox_switch WHERE id = 1) = 1"

# Migration 11: the switch, and the triggers again, each firing only while the switch is on.
# A journal starts with it on (as before the switch); the daemon sets it from [hq] at every start.
OUTBOX_SWITCH: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS hq_outbox_switch (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        writing          INTEGER NOT NULL,
        off_after_event  INTEGER
    )""",
    "INSERT OR IGNORE INTO hq_outbox_switch (id, writing) VALUES (1, 1)",
    "DROP TRIGGER IF EXISTS hq_outbox_event",
    f"""CREATE TRIGGER hq_outbox_event AFTER INSERT ON events WHEN {_WRITING} BEGIN
        INSERT INTO hq_outbox (at, kind, body) VALUES (NEW.at, 'event', {_event_body('NEW')});
    END""",
    "DROP TRIGGER IF EXISTS hq_outbox_print",
    f"""CREATE TRIGGER hq_outbox_print AFTER UPDATE OF state ON print_jobs
       WHEN NEW.state != OLD.state AND {_WRITING} BEGIN
        INSERT INTO hq_outbox (at, kind, body) VALUES (COALESCE(NEW.printed_at, NEW.created_at), 'print',
            json_object('job_key', NEW.job_key, 'state', NEW.state, 'attempts', NEW.attempts,
                        'reprint_of', NEW.reprint_of, 'receipt', json(NEW.record)));
    END""",
)


def set_writing(db: JournalDB, on: bool) -> int:
    """Turn the outbox's triggers on (the terminal ships to headquarters) or off (it does not).

    Off remembers the last event written so far; on first copies every event written since
    then into the outbox, in order, in the same transaction. Returns how many it copied."""
    with db.transaction() as conn:
        row = conn.execute("SELECT writing, off_after_event FROM hq_outbox_switch WHERE id = 1").fetchone()
        if row is None or bool(row[0]) == on:
            return 0
        if not on:
            conn.execute("UPDATE hq_outbox_switch SET writing = 0, off_after_event = "
                         "(SELECT COALESCE(MAX(event_id), 0) FROM events) WHERE id = 1")
            return 0
        copied = conn.execute(
            f"INSERT INTO hq_outbox (at, kind, body) SELECT e.at, 'event', {_event_body('e')} FROM events e "
            "WHERE e.event_id > ? ORDER BY e.event_id", (int(row[1] or 0),)).rowcount
        conn.execute("UPDATE hq_outbox_switch SET writing = 1, off_after_event = NULL WHERE id = 1")
        return int(copied)


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    at: float
    kind: str
    body: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "body": self.body}


def pending(db: JournalDB, limit: int) -> list[OutboxEvent]:
    """The oldest `limit` events not yet acknowledged, oldest first."""
    rows = db.rows("SELECT seq, at, kind, body FROM hq_outbox ORDER BY seq LIMIT ?", (limit,))
    return [OutboxEvent(int(r["seq"]), float(r["at"]), str(r["kind"]), json.loads(r["body"])) for r in rows]


def acknowledge(db: JournalDB, upto: int) -> int:
    """Headquarters holds every event up to `upto`: forget them here. Returns how many went."""
    return db.write("DELETE FROM hq_outbox WHERE seq <= ?", (upto,))


def backlog(db: JournalDB) -> int:
    return int(db.value("SELECT COUNT(*) FROM hq_outbox") or 0)
