"""What the print queue needs from durable storage: the `PrintJobStore` protocol and its values.

The queue (devices/print_queue.py) decides what to print and when; a store
keeps the jobs on disk so a receipt survives a crash or a printer pulled
mid-receipt. The terminal's store is its journal file
(pos/journal/print_jobs.py `JournalPrintJobs`); devices know nothing of it.

A store must make `add` and `mark_failed` durable before they return, and
must let another process add jobs that `next_pending` then returns (`pos
reprint` queues a receipt while the daemon's worker prints). `mark_done` need
not be: printing is at least once already (a crash between "the printer took
the bytes" and "marked done" prints the receipt again on restart), so a
"printed" mark lost with the power only risks that same reprint.

A job added with empty `data` and its receipt as JSON in `record` is rendered
by the queue when it prints. A job added with neither is queued by its key
alone: the queue builds its receipt when it takes the job, and the store keeps
that receipt with the job's first outcome (`mark_done` or `mark_failed`), so
every later attempt and reprint reads the receipt the first one built. The
terminal queues a sale's receipt so, inside the journal transaction that
records the outcome, where building and rendering have no place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["PrintJob", "NextJob", "StoredReceipt", "PrintJobStore"]


@dataclass(frozen=True)
class PrintJob:
    """A job as the queue reports it: state is 'pending' or 'done'."""

    job_key: str
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    printed_at: float | None
    reprint_of: str | None


@dataclass(frozen=True)
class NextJob:
    """The oldest pending job and the bytes to send for it (empty: render `record`, the receipt as JSON;
    neither: the job was queued by its key alone and its receipt is built now)."""

    job_id: int
    job_key: str
    data: bytes
    record: str | None = None


@dataclass(frozen=True)
class StoredReceipt:
    """What a reprint copies: the printed bytes and, when there was one, the receipt as JSON."""

    data: bytes
    record: str | None


class PrintJobStore(Protocol):
    def add(self, job_key: str, data: bytes, *, record: str | None, reprint_of: str | None,
            created_at: float) -> bool:
        """Store a pending job; False (and nothing changed) when job_key is already stored."""
        ...

    def job(self, job_key: str) -> PrintJob | None: ...

    def pending(self) -> list[PrintJob]:
        """Pending jobs, oldest first."""
        ...

    def next_pending(self) -> NextJob | None:
        """The oldest pending job, or None."""
        ...

    def mark_done(self, job_id: int, printed_at: float, *, record: str | None = None) -> None:
        """The printer accepted every byte of the job: it never prints again (need not be durable:
        lost, the job prints once more after a restart). `record`: the receipt the queue built for
        a job queued by its key alone, kept with the job from now on."""
        ...

    def mark_failed(self, job_id: int, error: str, *, record: str | None = None) -> None:
        """One attempt failed: the job stays pending. `record` as for mark_done."""
        ...

    def receipt_of(self, job_key: str) -> StoredReceipt | None: ...

    def reprint_count(self, job_key: str) -> int:
        """How many reprints of job_key were queued so far."""
        ...
