"""The durable print queue: receipts wait in SQLite until the printer takes them.

Jobs live in table `print_jobs` of the journal's SQLite file (WAL,
synchronous=FULL), created here with CREATE TABLE IF NOT EXISTS: this module
owns the table, the journal does not touch it.

- `enqueue(job_key, receipt)` is idempotent on job_key ("sale:<id>:final"):
  a second call with the same key changes nothing. It only writes to SQLite,
  so a printer fault never blocks the caller or changes a payment.
- A worker thread prints pending jobs oldest first and marks a job done only
  after the printer accepted all of its bytes (`ReceiptPrinter.send`
  returned). On a fault the job stays pending; the worker retries every
  retry_interval and the job prints when the printer is back, once.
  A crash between "printer accepted" and "marked done" prints it again on
  restart: a duplicate receipt is better than a lost one.
- `reprint(job_key)` enqueues a copy marked REPRINT under a new key.
- `on_status("printer_away" | "printer_back")` lets the terminal tell the
  cashier (message keys of the catalogue).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.printer import PrinterError, ReceiptPrinter, load_escpos, quiet_stdout
from devices.receipt import ReceiptData, encode_text, render_receipt

__all__ = ["PrintQueue", "PrintJob", "UnknownJob", "SCHEMA"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS print_jobs (
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
);
CREATE INDEX IF NOT EXISTS print_jobs_pending ON print_jobs (state, id);
"""


class UnknownJob(KeyError):
    """No print job with that key."""


@dataclass(frozen=True)
class PrintJob:
    job_key: str
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    printed_at: float | None
    reprint_of: str | None


class PrintQueue:
    def __init__(self, db_path: str | Path, printer: ReceiptPrinter,
                 clock: Callable[[], float] = time.time, *,
                 printer_settings: Any = None, catalogue: Any = None,
                 retry_interval: float | None = None,
                 on_status: Callable[[str], None] | None = None) -> None:
        self.db_path = str(db_path)
        self.printer = printer
        self._clock = clock
        self._settings = printer_settings
        self._catalogue = catalogue
        self._retry = retry_interval if retry_interval is not None else (
            printer_settings.retry_interval if printer_settings is not None else 5.0)
        self._on_status = on_status
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.printer_away = False

    # -- the caller's side -------------------------------------------------
    def _render(self, data: ReceiptData) -> bytes:
        if self._settings is None or self._catalogue is None:
            raise ValueError("PrintQueue needs printer_settings and catalogue to print a ReceiptData")
        one = render_receipt(data, self._settings, self._catalogue)
        return one * int(getattr(self._settings, "copies", 1))

    def enqueue(self, job_key: str, receipt: bytes | ReceiptData, *, reprint_of: str | None = None) -> bool:
        """Queue a receipt once per job_key. Returns False if the key was already queued."""
        if isinstance(receipt, ReceiptData):
            data, record = self._render(receipt), json.dumps(receipt.to_dict(), ensure_ascii=False)
        elif isinstance(receipt, (bytes, bytearray)):
            data, record = bytes(receipt), None
        else:
            raise TypeError("receipt must be bytes or ReceiptData, not free text")
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO print_jobs (job_key, created_at, data, record, reprint_of) "
                "VALUES (?, ?, ?, ?, ?)", (job_key, self._clock(), data, record, reprint_of))
            added = cur.rowcount == 1
        if added:
            log.info("receipt queued job=%s bytes=%d", job_key, len(data))
            self._wake.set()
        return added

    def reprint(self, job_key: str) -> str:
        """Queue a copy of job_key marked REPRINT; returns the new job's key."""
        with self._lock:
            row = self._db.execute("SELECT data, record FROM print_jobs WHERE job_key = ?",
                                   (job_key,)).fetchone()
            count = self._db.execute("SELECT COUNT(*) FROM print_jobs WHERE reprint_of = ?",
                                     (job_key,)).fetchone()[0]
        if row is None:
            raise UnknownJob(f"no receipt {job_key!r} in the print queue")
        data, record = row
        new_key = f"{job_key}:reprint:{count + 1}"
        if record is not None:
            self.enqueue(new_key, ReceiptData.from_dict(json.loads(record)).as_reprint(), reprint_of=job_key)
        else:
            self.enqueue(new_key, self._reprint_banner() + bytes(data), reprint_of=job_key)
        return new_key

    def _reprint_banner(self) -> bytes:
        escpos = load_escpos()
        p = escpos.Dummy()
        encoding = getattr(self._settings, "encoding", "GB18030")
        text = self._catalogue.receipt("reprint") if self._catalogue is not None else "*** REPRINT ***"
        with quiet_stdout():
            p.hw("INIT")
            p.set(align="center", bold=True)
            p._raw(encode_text(text, encoding) + b"\n")
            p.set(align="left", bold=False)
        return bytes(p.output)

    def job(self, job_key: str) -> PrintJob | None:
        with self._lock:
            row = self._db.execute(
                "SELECT job_key, state, attempts, last_error, created_at, printed_at, reprint_of "
                "FROM print_jobs WHERE job_key = ?", (job_key,)).fetchone()
        return PrintJob(*row) if row else None

    def pending(self) -> list[PrintJob]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_key, state, attempts, last_error, created_at, printed_at, reprint_of "
                "FROM print_jobs WHERE state = 'pending' ORDER BY id").fetchall()
        return [PrintJob(*r) for r in rows]

    # -- the worker --------------------------------------------------------
    def print_pending(self) -> int:
        """Print pending jobs in order until the queue is empty or the printer fails.

        Returns the number printed. Safe to call from one thread at a time
        (the worker, or a test / CLI without the worker).
        """
        printed = 0
        while not self._stop.is_set():
            with self._lock:
                row = self._db.execute("SELECT id, job_key, data FROM print_jobs WHERE state = 'pending' "
                                       "ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return printed
            job_id, job_key, data = row
            try:
                self.printer.send(bytes(data))
            except PrinterError as exc:
                with self._lock:
                    self._db.execute("UPDATE print_jobs SET attempts = attempts + 1, last_error = ? "
                                     "WHERE id = ?", (str(exc), job_id))
                if not self.printer_away:
                    self.printer_away = True
                    log.warning("printer away job=%s error=%s (the receipt waits)", job_key, exc)
                    self._status("printer_away")
                return printed
            with self._lock:
                self._db.execute("UPDATE print_jobs SET state = 'done', attempts = attempts + 1, "
                                 "last_error = NULL, printed_at = ? WHERE id = ?", (self._clock(), job_id))
            printed += 1
            log.info("receipt printed job=%s", job_key)
            if self.printer_away:
                self.printer_away = False
                log.info("printer back")
                self._status("printer_back")
        return printed

    def _status(self, key: str) -> None:
        if self._on_status is not None:
            try:
                self._on_status(key)
            except Exception:  # noqa: BLE001 - a bad handler must not stop printing
                log.exception("print queue status handler failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.print_pending()
            if self._stop.is_set():
                break
            # Away: retry after retry_interval. Idle: look again after the same
            # interval, since `pos reprint` queues jobs from another process.
            self._wake.wait(self._retry)

    def start(self) -> "PrintQueue":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="print-queue", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._db.close()

    def __enter__(self) -> "PrintQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
