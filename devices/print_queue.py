"""The durable print queue: receipts wait in a durable store until the printer takes them.

Jobs live in a `PrintJobStore` (devices/print_jobs.py); the terminal's is
its journal file (pos/journal/print_jobs.py), so a receipt is as durable as
the sale it belongs to.

- `enqueue(job_key, receipt)` is idempotent on job_key ("sale:<id>:final"):
  a second call with the same key changes nothing. It only writes to SQLite,
  so a printer fault never blocks the caller or changes a payment. With
  `render_later` it stores the receipt's JSON only and the worker renders it
  when it prints.
- `enqueue_key(job_key)` stores the key alone: the worker builds the receipt
  (`receipt_of(job_key)`, the caller's) when it takes the job and the store
  keeps it from that first attempt on. The terminal queues an outcome's
  receipt so, in the outcome's own transaction: one INSERT there, and the
  receipt is read from the journal once the outcome is on the displays.
- A worker thread prints pending jobs oldest first and marks a job done only
  after the printer accepted all of its bytes (`ReceiptPrinter.send`
  returned). On a fault the job stays pending; the worker retries every
  retry_interval and the job prints when the printer is back, once.
  A crash between "printer accepted" and "marked done" prints it again on
  restart: a duplicate receipt is better than a lost one.
- `reprint(job_key)` enqueues a copy marked REPRINT under a new key (of the
  receipt built for it, or built now for a job the worker has not taken yet).
- `on_status("printer_away" | "printer_back")` lets the terminal tell the
  cashier (message keys of the catalogue).
- The worker also looks for new jobs every retry_interval while idle: another
  process (`pos reprint`) may have added one to the same store.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from devices.print_jobs import PrintJob, PrintJobStore, StoredReceipt
from devices.printer import PrinterError, ReceiptPrinter, escpos_buffer, quiet_stdout
from devices.receipt import Paper, ReceiptData, encode_text, render_receipt

__all__ = ["PrintQueue", "PrintJob", "PrintJobStore", "UnknownJob", "stored_receipt"]

log = logging.getLogger(__name__)


def _log_queued(job_key: str, size: int) -> None:
    log.info("receipt queued job=%s bytes=%d", job_key, size)


def stored_receipt(stored: StoredReceipt, job_key: str, build: Callable[[str], ReceiptData]) -> ReceiptData | None:
    """The receipt a stored job prints: the one kept with it, or, for a job queued by its key alone
    that the worker has not taken yet, the one `build` makes as the worker would. None for a job
    kept only as printer bytes."""
    if stored.record is not None:
        return ReceiptData.from_dict(json.loads(stored.record))
    if not stored.data:
        return build(job_key)
    return None


class UnknownJob(KeyError):
    """No print job with that key."""


class PrintQueue:
    """Prints the jobs of `store` on `printer`, oldest first, each once.

    The store is the caller's: `close()` stops the worker and leaves the
    store open.
    """

    def __init__(self, store: PrintJobStore, printer: ReceiptPrinter,
                 clock: Callable[[], float] = time.time, *,
                 printer_settings: Any = None, catalogue: Any = None,
                 retry_interval: float | None = None,
                 on_status: Callable[[str], None] | None = None,
                 receipt_of: Callable[[str], ReceiptData] | None = None) -> None:
        self.store = store
        self.printer = printer
        self._clock = clock
        self._settings = printer_settings
        self._catalogue = catalogue
        self._retry = retry_interval if retry_interval is not None else (
            printer_settings.retry_interval if printer_settings is not None else 5.0)
        self._on_status = on_status
        self._receipt_of = receipt_of
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Set by stop(): pending receipts are still printed until this monotonic time, then the worker ends.
        self._drain_until: float | None = None
        self._thread: threading.Thread | None = None
        self.printer_away = False

    # -- the caller's side -------------------------------------------------
    def _render(self, data: ReceiptData) -> bytes:
        if self._settings is None or self._catalogue is None:
            raise ValueError("PrintQueue needs printer_settings and catalogue to print a ReceiptData")
        one = render_receipt(data, self._settings, self._catalogue)
        return one * int(getattr(self._settings, "copies", 1))

    def _record(self, receipt: ReceiptData) -> tuple[ReceiptData, str]:
        """The receipt as it is kept, with the paper it is printed on (its picture is laid out so), and its JSON."""
        if self._settings is not None:
            receipt = replace(receipt, paper=Paper.of(self._settings))
        return receipt, json.dumps(receipt.to_dict(), ensure_ascii=False)

    def enqueue(self, job_key: str, receipt: bytes | ReceiptData, *, reprint_of: str | None = None,
                render_later: bool = False, wake: bool = True) -> bool:
        """Queue a receipt once per job_key. Returns False if the key was already queued.

        render_later: store a ReceiptData as its JSON only; the worker renders it when it prints
        (no python-escpos, no rendering in the caller: the terminal queues a sale's receipt inside
        the journal transaction that records its outcome). wake=False: the worker is not woken
        now but by `wake()` (the terminal wakes it once the outcome is on the displays) or its
        next look every retry_interval."""
        if isinstance(receipt, ReceiptData):
            if render_later and (self._settings is None or self._catalogue is None):
                raise ValueError("PrintQueue needs printer_settings and catalogue to print a ReceiptData")
            receipt, record = self._record(receipt)
            data = b"" if render_later else self._render(receipt)
        elif isinstance(receipt, (bytes, bytearray)):
            data, record = bytes(receipt), None
        else:
            raise TypeError("receipt must be bytes or ReceiptData, not free text")
        added = self.store.add(job_key, data, record=record, reprint_of=reprint_of, created_at=self._clock())
        if added:
            _log_queued(job_key, len(data))
            if wake:
                self._wake.set()
        return added

    def enqueue_key(self, job_key: str, *, wake: bool = True) -> bool:
        """Queue a job by its key alone, once per job_key (False if it was already queued): the
        worker builds its receipt with `receipt_of(job_key)` when it takes the job, and logs it as
        queued then. One INSERT and nothing else: the terminal queues an outcome's receipt inside
        the journal transaction that records the outcome. wake as for enqueue."""
        if self._receipt_of is None or self._settings is None or self._catalogue is None:
            raise ValueError("PrintQueue needs receipt_of, printer_settings and catalogue to queue a job by its key")
        added = self.store.add(job_key, b"", record=None, reprint_of=None, created_at=self._clock())
        if added and wake:
            self._wake.set()
        return added

    def wake(self) -> None:
        """Have the worker look for pending jobs now."""
        self._wake.set()

    def reprint(self, job_key: str) -> str:
        """Queue a copy of job_key marked REPRINT; returns the new job's key."""
        stored = self.store.receipt_of(job_key)
        if stored is None:
            raise UnknownJob(f"no receipt {job_key!r} in the print queue")
        new_key = f"{job_key}:reprint:{self.store.reprint_count(job_key) + 1}"
        receipt = stored_receipt(stored, job_key, self._build)
        if receipt is not None:
            self.enqueue(new_key, receipt.as_reprint(), reprint_of=job_key, render_later=True)
        else:
            self.enqueue(new_key, self._reprint_banner() + stored.data, reprint_of=job_key)
        return new_key

    def _build(self, job_key: str) -> ReceiptData:
        """The receipt of a job queued by its key alone (enqueue_key)."""
        if self._receipt_of is None:
            raise ValueError(f"job {job_key!r} was queued by its key, and this PrintQueue has no receipt_of to "
                             "build its receipt")
        return self._receipt_of(job_key)

    def _reprint_banner(self) -> bytes:
        p = escpos_buffer()
        encoding = getattr(self._settings, "encoding", "GB18030")
        text = self._catalogue.receipt("reprint") if self._catalogue is not None else "*** REPRINT ***"
        with quiet_stdout():
            p.hw("INIT")
            p.set(align="center", bold=True)
            p._raw(encode_text(text, encoding) + b"\n")
            p.set(align="left", bold=False)
        return bytes(p.output)

    def job(self, job_key: str) -> PrintJob | None:
        return self.store.job(job_key)

    def pending(self) -> list[PrintJob]:
        return self.store.pending()

    # -- the worker --------------------------------------------------------
    def print_pending(self) -> int:
        """Print pending jobs in order until the queue is empty or the printer fails.

        Returns the number printed. Safe to call from one thread at a time
        (the worker, or a test / CLI without the worker).
        """
        printed = 0
        while not self._stop.is_set() and not self._drained():
            job = self.store.next_pending()
            if job is None:
                return printed
            built: str | None = None
            try:
                if not job.data and job.record is None:
                    built = self._build_record(job.job_key)
                self.printer.send(job.data or self._render_stored(job.job_key, built or job.record))
            except PrinterError as exc:
                self.store.mark_failed(job.job_id, str(exc), record=built)
                if not self.printer_away:
                    self.printer_away = True
                    log.warning("printer away job=%s error=%s (the receipt waits)", job.job_key, exc)
                    self._status("printer_away")
                return printed
            self.store.mark_done(job.job_id, self._clock(), record=built)
            printed += 1
            log.info("receipt printed job=%s", job.job_key)
            if self.printer_away:
                self.printer_away = False
                log.info("printer back")
                self._status("printer_back")
        return printed

    def _build_record(self, job_key: str) -> str:
        """The JSON of the receipt of a job queued by its key alone, built now; kept with this attempt's
        outcome, and printed from that JSON as every later attempt and reprint is. A receipt that
        cannot be built now (the journal unreadable, say) waits like one the printer did not take."""
        try:
            record = self._record(self._build(job_key))[1]
        except Exception as exc:
            log.exception("receipt not built job=%s", job_key)
            raise PrinterError(f"receipt {job_key} cannot be built: {exc}") from exc
        _log_queued(job_key, 0)
        return record

    def _render_stored(self, job_key: str, record: str | None) -> bytes:
        """The bytes of a job queued with render_later or by its key. A receipt that cannot be
        rendered now (no python-escpos, say) waits like one the printer did not take."""
        try:
            if record is None:
                raise ValueError("the job has neither bytes nor a receipt")
            return self._render(ReceiptData.from_dict(json.loads(record)))
        except Exception as exc:
            log.exception("receipt not rendered job=%s", job_key)
            raise PrinterError(f"receipt {job_key} cannot be rendered: {exc}") from exc

    def _status(self, key: str) -> None:
        if self._on_status is not None:
            try:
                self._on_status(key)
            except Exception:
                log.exception("print queue status handler failed")

    def _drained(self) -> bool:
        return self._drain_until is not None and time.monotonic() >= self._drain_until

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.print_pending()
            except Exception:
                log.exception("print queue: the job store failed; trying again in %.1f s", self._retry)
            if self._stop.is_set() or self._drain_until is not None:
                break
            # Away: retry after retry_interval. Idle: look again after the same
            # interval, since `pos reprint` queues jobs from another process.
            if self._wake.wait(self._retry):
                # Woken, most often for the receipt of an outcome whose screens were just written:
                # whatever waits for this core goes first (the kernel's hand-off of the display's
                # bytes, their reader), before a millisecond of the receipt's work takes it. Without
                # this, the slowest 2% of benchmark sales waited 0.6 ms here (README, Performance).
                os.sched_yield()

    def start(self) -> PrintQueue:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="print-queue", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0, drain: float = 5.0) -> None:
        """Stop the worker (SIGTERM). Receipts still pending are printed first for up to `drain`
        seconds (plus the job in hand); whatever is left waits on disk for the next start."""
        if self._thread is not None:
            self._drain_until = time.monotonic() + drain
            self._wake.set()
            self._thread.join(drain + timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._drain_until = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> PrintQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
