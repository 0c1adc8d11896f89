"""The end-of-day steps the CLI, the daemon and the till share: fetch, import, report, print."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.printer import NullPrinter
from devices.receipt import ReceiptData, ReceiptKind
from pos.config import Config
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs
from pos.reconcile.fetch import Fetched, Progress, SftpSettings, archive_folder, fetch_day
from pos.reconcile.match import Reconciliation
from pos.reconcile.report import printer_rows
from pos.reconcile.store import Imported, check_day, day_report, import_folder

__all__ = ["fetch", "import_and_report", "queue_summary", "PRINT_TITLE_KEY"]

log = logging.getLogger("pos.reconcile")

PRINT_TITLE_KEY = "report_reconcile"


def fetch(cfg: Config, day: str, *, say: Callable[[str], None] | None = None,
          progress: Progress | None = None) -> list[Fetched]:
    """Download the day's files into the archive (<state_dir>/reconcile/<day> unless configured)."""
    check_day(day)
    return fetch_day(SftpSettings.from_config(cfg, day), archive_folder(cfg, day), say=say, progress=progress)


def import_and_report(cfg: Config, journal: Journal, day: str, now: float) -> tuple[list[Imported], Reconciliation]:
    """Import the archive's files of the day (each whole or not at all) and match them against the journal."""
    check_day(day)
    imported = import_folder(journal, day, archive_folder(cfg, day), now)
    return imported, day_report(journal, day, store_id=cfg.reconcile.store_id)


def queue_summary(cfg: Config, journal: Journal, rec: Reconciliation, now: float) -> str | None:
    """Queue the short summary for the receipt printer (the daemon prints it); None if there is no printer."""
    if cfg.printer.kind == "none":
        return None
    term = cfg.terminal
    data = ReceiptData(kind=ReceiptKind.REPORT, merchant_name=term.merchant_name, store_name=term.store_name,
                       terminal_id=term.terminal_id, when=datetime.fromtimestamp(now, ZoneInfo(term.timezone)),
                       report_title_key=PRINT_TITLE_KEY, report_lines=tuple(printer_rows(rec)))
    queue = PrintQueue(JournalPrintJobs(journal), NullPrinter(), printer_settings=cfg.printer,
                       catalogue=Catalogue.load(term.language))
    job = f"reconcile:{rec.date}:{int(now * 1000)}"
    try:
        queue.enqueue(job, data)
    finally:
        queue.close()
    return job
