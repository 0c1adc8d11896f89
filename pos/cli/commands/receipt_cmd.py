"""`pos receipt show ID --config PATH [--png FILE]`: a sale's receipt, as text or as the dashboard's picture."""

from __future__ import annotations

import argparse

from pos.config import load_config
from pos.core.errors import EXIT_CONFIG, UserError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    receipt = subparsers.add_parser("receipt", help="show a sale's receipt (text, or a PNG picture)")
    sub = receipt.add_subparsers(dest="receipt_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser(
        "show", help="show a sale's receipt as printed; --png writes it as a picture",
        description="Show the receipt of a sale from the journal: the receipt data the print queue printed "
                    "(or, if it was never printed, built from the journal's record). With --png the picture "
                    "is the same PNG headquarters' dashboard shows for that receipt.")
    show.add_argument("id", metavar="ID", help="sale number, merchantTransId or till sale id")
    show.add_argument("--config", required=True, help="the terminal's config file")
    show.add_argument("--png", metavar="FILE", default=None, help="write the receipt as a PNG picture to FILE")
    show.add_argument("--lang", default="en", choices=["en", "zh-CN"],
                      help="the language of the labels (default en, as on the dashboard)")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from functools import partial
    from pathlib import Path

    from devices.messages import Catalogue
    from devices.print_queue import stored_receipt
    from devices.receipt_image import CJK_PACKAGE, receipt_lines, receipt_png, undrawable
    from pos.cli.commands.reprint_cmd import find_sale
    from pos.journal.journal import Journal, journal_path
    from pos.journal.print_jobs import JournalPrintJobs
    from pos.terminal.receipts import outcome_job, outcome_receipt, receipt_for

    cfg = load_config(args.config).config
    journal = Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                           timezone=cfg.terminal.timezone, create=False)
    try:
        sale = find_sale(journal, args.id.strip())
        # The data the printer got (and the print outcome shipped to headquarters), else the journal's record:
        # as the print queue will build it for a job queued by its key and not printed yet.
        job = outcome_job(sale.sale_id, None)
        stored = JournalPrintJobs(journal).receipt_of(job)
        kept = stored_receipt(stored, job, partial(outcome_receipt, cfg, journal)) if stored is not None else None
        data = kept or receipt_for(cfg, journal, sale)
    finally:
        journal.close()
    catalogue = Catalogue.load(args.lang)
    if args.png is None:
        for text, _ in receipt_lines(data, catalogue):
            print(text)
        return 0
    png = receipt_png(data, catalogue)
    path = Path(args.png)
    try:
        path.write_bytes(png)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}: give a file in a folder you may write to",
                        exit_code=EXIT_CONFIG) from None
    print(f"receipt of {sale.merchant_trans_id} written to {path} ({len(png)} bytes, PNG)")
    missing = undrawable(data, catalogue)
    if missing:
        import sys
        print(f"warning: no installed font has {missing[:10]!r}: the picture shows them as boxes; "
              f"install a font with Chinese characters (apt-get install {CJK_PACKAGE})", file=sys.stderr)
    return 0
