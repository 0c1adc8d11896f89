"""`pos reprint ID --config PATH`: print a sale's receipt again, marked REPRINT."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pos.config import load_config
from pos.core.errors import UserError

if TYPE_CHECKING:
    from pos.core.records import SaleRecord
    from pos.journal.journal import Journal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reprint = subparsers.add_parser(
        "reprint", help="print a sale's receipt again, marked REPRINT",
        description="Queue a copy of a sale's receipt, marked REPRINT, in the terminal's print queue. "
                    "The running terminal prints it within [printer] retry_interval seconds (or on its next "
                    "start). ID is the sale number, its merchantTransId (printed on the receipt) or the "
                    "till's sale id.")
    reprint.add_argument("id", metavar="ID", help="sale number, merchantTransId or till sale id")
    reprint.add_argument("--config", required=True, help="the terminal's config file")
    reprint.set_defaults(func=run)


def find_sale(journal: Journal, key: str) -> SaleRecord:
    """A sale by its number, its merchantTransId or the till's sale id; a clear error when none."""
    from pos.journal.till import TillLinks

    sale = journal.get_sale(key)
    if sale is None:
        # a till sale id (S + 12 hex digits) points at the journal's sale
        till = TillLinks(journal).get(key)
        if till is not None and till.sale_id is not None:
            sale = journal.get_sale(till.sale_id)
    if sale is None:
        raise UserError(f"no sale {key!r} in the journal: give the sale number or the merchantTransId "
                        "printed on the receipt ('pos journal list' shows them)")
    return sale


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from devices.messages import Catalogue
    from devices.print_queue import PrintQueue
    from devices.printer import NullPrinter
    from pos.journal.journal import Journal, journal_path
    from pos.journal.print_jobs import JournalPrintJobs
    from pos.terminal.receipts import outcome_job, outcome_receipt, receipt_for

    cfg = load_config(args.config).config
    if cfg.printer.kind == "none":
        raise UserError("[printer] kind is \"none\": this terminal prints nothing; set a printer first")
    journal = Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                           timezone=cfg.terminal.timezone, create=False)
    try:
        sale = find_sale(journal, args.id.strip())
        # The queue is only written here; the daemon's worker does the printing.
        queue = PrintQueue(JournalPrintJobs(journal), NullPrinter(), printer_settings=cfg.printer,
                           catalogue=Catalogue.load(cfg.terminal.language),
                           receipt_of=partial(outcome_receipt, cfg, journal))
        try:
            job = outcome_job(sale.sale_id, None)
            if queue.job(job) is not None:
                new = queue.reprint(job)
            else:
                new = f"sale:{sale.sale_id}:reprint"
                if not queue.enqueue(new, receipt_for(cfg, journal, sale, reprint=True)):
                    new = queue.reprint(new)
        finally:
            queue.close()
    finally:
        journal.close()
    print(f"reprint of {sale.merchant_trans_id} ({sale.state.value}, {sale.amount.receipt()}) queued as {new}")
    return 0
