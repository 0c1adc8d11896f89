"""The print queue's jobs in the journal file: `JournalPrintJobs` is the `PrintJobStore`
of devices/print_jobs.py over table `print_jobs` (pos/journal/schema.py, migration 2).

It writes through the journal's own connection and lock, so a daemon has one
connection for every write. Each call is one statement, committed on its own
(durable with synchronous=FULL) and not counted by the POS_CRASH_AT hook,
which steps through the engine's commits only, with two exceptions:

- `add` called inside a journal transaction on the same thread is part of that
  transaction: the terminal queues a PAID sale's or REFUNDED refund's receipt in
  the very transaction that records the outcome (PaymentRunner.write_receipts),
  so no crash can leave the outcome without its receipt;
- `mark_done` does not wait for the disk: a "printed" mark lost with the power
  only prints the receipt once more after the restart, which a crash between
  the printer taking the bytes and the mark already does (at least once).

Jobs another process adds to the file (`pos reprint`) are seen by the next
`next_pending`: WAL readers see every commit made before their read began.
"""

from __future__ import annotations

from devices.print_jobs import NextJob, PrintJob, StoredReceipt
from pos.journal.db import Row
from pos.journal.journal import Journal

__all__ = ["JournalPrintJobs", "missing_receipts"]

_JOB_COLUMNS = "job_key, state, attempts, last_error, created_at, printed_at, reprint_of"


def _job(row: Row) -> PrintJob:
    return PrintJob(job_key=row["job_key"], state=row["state"], attempts=row["attempts"],
                    last_error=row["last_error"], created_at=row["created_at"], printed_at=row["printed_at"],
                    reprint_of=row["reprint_of"])


class JournalPrintJobs:
    """Print jobs stored in the journal (satisfies devices.print_jobs.PrintJobStore)."""

    def __init__(self, journal: Journal) -> None:
        self._db = journal.db

    def writes_through(self, journal: Journal) -> bool:
        """Whether this store writes through `journal`'s connection (so `add` can join its transaction)."""
        return self._db is journal.db

    def add(self, job_key: str, data: bytes, *, record: str | None, reprint_of: str | None,
            created_at: float) -> bool:
        return self._db.write(
            "INSERT OR IGNORE INTO print_jobs (job_key, created_at, data, record, reprint_of) VALUES (?, ?, ?, ?, ?)",
            (job_key, created_at, data, record, reprint_of)) == 1

    def job(self, job_key: str) -> PrintJob | None:
        row = self._db.one(f"SELECT {_JOB_COLUMNS} FROM print_jobs WHERE job_key = ?", (job_key,))
        return _job(row) if row else None

    def pending(self) -> list[PrintJob]:
        return [_job(r) for r in self._db.rows(
            f"SELECT {_JOB_COLUMNS} FROM print_jobs WHERE state = 'pending' ORDER BY id")]

    def next_pending(self) -> NextJob | None:
        row = self._db.one("SELECT id, job_key, data, record FROM print_jobs WHERE state = 'pending' "
                           "ORDER BY id LIMIT 1")
        return NextJob(row["id"], row["job_key"], bytes(row["data"]), row["record"]) if row else None

    def mark_done(self, job_id: int, printed_at: float, *, record: str | None = None) -> None:
        # Not durable on purpose (see the module docstring): at worst a reprint after a power loss. A
        # record kept here is lost only with the mark: the job is pending again and its receipt built again.
        self._db.write("UPDATE print_jobs SET state = 'done', attempts = attempts + 1, last_error = NULL, "
                       "printed_at = ?, record = COALESCE(?, record) WHERE id = ?",
                       (printed_at, record, job_id), durable=False)

    def mark_failed(self, job_id: int, error: str, *, record: str | None = None) -> None:
        self._db.write("UPDATE print_jobs SET attempts = attempts + 1, last_error = ?, record = COALESCE(?, record) "
                       "WHERE id = ?", (error, record, job_id))

    def receipt_of(self, job_key: str) -> StoredReceipt | None:
        row = self._db.one("SELECT data, record FROM print_jobs WHERE job_key = ?", (job_key,))
        return StoredReceipt(bytes(row["data"]), row["record"]) if row else None

    def reprint_count(self, job_key: str) -> int:
        return int(self._db.value("SELECT COUNT(*) FROM print_jobs WHERE reprint_of = ?", (job_key,)))


def missing_receipts(journal: Journal, since: float) -> list[tuple[int, int | None]]:
    """(sale_id, refund_id) of receipts owed and never queued: PAID sales and REFUNDED refunds
    updated since `since` without their job (`sale:N` / `refund:N`). A daemon that died between
    the commit and the enqueue left them so."""
    db = journal.db
    sales = db.rows("SELECT sale_id FROM sales WHERE state = 'PAID' AND updated_at >= ? AND NOT EXISTS "
                    "(SELECT 1 FROM print_jobs WHERE job_key = 'sale:' || sales.sale_id) ORDER BY sale_id",
                    (since,))
    refunds = db.rows("SELECT sale_id, refund_id FROM refunds WHERE state = 'REFUNDED' AND updated_at >= ? "
                      "AND NOT EXISTS (SELECT 1 FROM print_jobs WHERE job_key = 'refund:' || refunds.refund_id) "
                      "ORDER BY refund_id", (since,))
    return [(int(r["sale_id"]), None) for r in sales] + [(int(r["sale_id"]), int(r["refund_id"])) for r in refunds]
