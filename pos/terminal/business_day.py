"""The business day: its X report (running totals) and its close (Z report).

A day runs from the last Z report to the next; the journal keeps the days
(pos/journal/till.py). Only the day's own sales and refunds are read, plus
the items still open from earlier days: a person must see those on today's
report too. A Z report always leaves paper behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from pos.core.reports import Report, build_report
from pos.journal.journal import Journal
from pos.journal.till import TillLinks
from pos.terminal.receipts import Receipts

__all__ = ["BusinessDay"]

log = logging.getLogger("pos.terminal.business_day")


class BusinessDay:
    def __init__(self, journal: Journal, links: TillLinks, receipts: Receipts, tz: ZoneInfo,
                 clock: Callable[[], float]) -> None:
        self._journal = journal
        self._links = links
        self._receipts = receipts
        self._tz = tz
        self._clock = clock

    def _iso(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self._tz).isoformat(timespec="seconds")

    def _build(self, kind: str, closed_at: float | None) -> Report:
        day, opened = self._links.open_day()
        # Only this business day is read (over the journal's index on created_at), not the
        # whole history; its final items come totalled by SQLite, the others one by one.
        figures = self._journal.day_figures(opened, closed_at)
        return build_report(kind, day, self._iso(opened) if opened else "first sale",
                            self._iso(closed_at) if closed_at is not None else None,
                            figures.open_sales + figures.earlier_open_sales, figures.open_refunds,
                            sale_totals=figures.sale_totals, refund_totals=figures.refund_totals)

    def x_report(self, *, print_it: bool) -> Report:
        """The day's running totals; the day stays open."""
        report = self._build("X", None)
        if print_it:
            self._receipts.print_report(report)
        return report

    def close(self) -> Report:
        """The Z report: the day's totals, the day closed and the next one opened, on paper."""
        now = self._clock()
        report = self._build("Z", now)
        self._links.close_day(report.business_day, now)
        log.info("business day closed", extra={"kv": {"day": report.business_day}})
        self._receipts.print_report(report)
        return report
