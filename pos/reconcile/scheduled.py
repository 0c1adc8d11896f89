"""The daemon's end of day with Alipay: at [reconcile] fetch_at, fetch and report the previous day.

Runs in its own thread. A day that matches is logged; anything that does not
match, or a fetch or file that fails, raises an alarm (logged at ERROR as
"alarm", shown in the till's health as last_alarm) and, when there is a
printer, the short summary is printed. A failed run is tried again every
`retry` seconds until the day is done or the calendar moves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pos.config import Config
from pos.core.errors import UserError
from pos.journal.db import JournalError
from pos.journal.journal import Journal
from pos.reconcile.match import Reconciliation
from pos.reconcile.parse import FileError
from pos.reconcile.service import fetch, import_and_report, queue_summary

__all__ = ["due_day", "ReconcileScheduler"]

log = logging.getLogger("pos.reconcile")


def due_day(now_local: datetime, fetch_at: str, done: set[str]) -> str | None:
    """The day to reconcile now (yesterday, once fetch_at has passed today), or None."""
    if not fetch_at:
        return None
    hour, minute = (int(x) for x in fetch_at.split(":"))
    if (now_local.hour, now_local.minute) < (hour, minute):
        return None
    day = (now_local.date() - timedelta(days=1)).isoformat()
    return None if day in done else day


class ReconcileScheduler:
    """Fetch + report at the configured time; `alarm(text)` is called when something needs the manager."""

    def __init__(self, cfg: Config, journal: Journal, *, clock: Callable[[], float],
                 alarm: Callable[[str], None], retry: float = 600.0) -> None:
        self.cfg = cfg
        self.journal = journal
        self.clock = clock
        self.alarm = alarm
        self.retry = retry
        self.done: set[str] = set()
        self._failed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pos-reconcile", daemon=True)
        self.last: Reconciliation | None = None

    def start(self) -> ReconcileScheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(5.0):
            now = self.clock()
            if self._failed_at is not None and now - self._failed_at < self.retry:
                continue
            local = datetime.fromtimestamp(now, ZoneInfo(self.cfg.terminal.timezone))
            day = due_day(local, self.cfg.reconcile.fetch_at, self.done)
            if day is not None:
                self.run(day)

    def run(self, day: str) -> Reconciliation | None:
        """Fetch, import and match one day; alarms on any problem. Returns the result when there is one."""
        try:
            got = fetch(self.cfg, day, say=lambda line: log.info("reconcile fetch", extra={"kv": {"line": line}}))
            if not got:
                raise UserError(f"no reconciliation files for {day} on Alipay's SFTP server yet")
            _, rec = import_and_report(self.cfg, self.journal, day, self.clock())
        except (UserError, FileError, JournalError, OSError) as exc:
            self._failed_at = self.clock()
            self.alarm(f"reconciliation of {day} failed: {exc}")
            return None
        self._failed_at = None
        self.done.add(day)
        self.last = rec
        try:
            queue_summary(self.cfg, self.journal, rec, self.clock())
        except Exception as exc:  # a printer fault never stops the report
            log.warning("reconciliation summary not queued", extra={"kv": {"error": str(exc)}})
        if rec.all_matched:
            log.info("reconciliation matched", extra={"kv": {"date": day, "items": len(rec.items)}})
        else:
            classes = sorted({i.cls.value for i in rec.problems})
            self.alarm(f"reconciliation of {day}: {len(rec.problems)} item(s) do not match ({', '.join(classes)}): "
                       f"see 'pos reconcile report --date {day}'")
        return rec
