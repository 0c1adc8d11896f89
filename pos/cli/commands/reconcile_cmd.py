"""`pos reconcile fetch|report`: end of day with Alipay (see README, "End of day with Alipay").

fetch downloads the day's transaction and settlement files over SFTP into the
archive; report imports them into the journal (a file once, whole or not at all)
and matches them against the journal's sales and refunds of the day.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pos.config import load_config
from pos.core.errors import EXIT_FAIL, UsageError, UserError
from pos.journal.journal import Journal, journal_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "reconcile", help="fetch Alipay's reconciliation files and match them against the journal",
        description="End of day with Alipay: 'fetch' downloads the day's transaction and settlement files "
                    "from Alipay's SFTP server ([reconcile] in the config); 'report' matches them against "
                    "the journal and says what to do about each difference.")
    sub = p.add_subparsers(dest="reconcile_command", metavar="ACTION", required=True)
    fetch = sub.add_parser("fetch", help="download the day's files over SFTP (resumes, skips complete files)",
                           description="Download the day's files into the archive folder. A file already "
                                       "complete is not fetched again; a partial one resumes.")
    report = sub.add_parser("report", help="match the day's files against the journal",
                            description="Import the day's fetched files (each once, whole or not at all) and "
                                        "match them against the journal. Exit status 0: everything matches; "
                                        "1: something needs attention (listed with what to do).")
    for cmd in (fetch, report):
        cmd.add_argument("--date", metavar="YYYY-MM-DD", help="the business day (default: yesterday)")
        cmd.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    report.add_argument("--csv", metavar="PATH", help="also write every item as CSV to PATH ('-' = stdout)")
    report.add_argument("--json", action="store_true", help="print JSON instead of text")
    report.add_argument("--print", action="store_true", dest="print_summary",
                        help="queue a short summary for the receipt printer")
    fetch.set_defaults(func=run_fetch)
    report.set_defaults(func=run_report)


def _day(args: argparse.Namespace, tz: str) -> str:
    from pos.reconcile.store import check_day
    if args.date is None:
        return (datetime.now(UTC).astimezone(ZoneInfo(tz)).date() - timedelta(days=1)).isoformat()
    try:
        return check_day(args.date)
    except ValueError as exc:
        raise UsageError(f"--date: {exc}") from None


def run_fetch(args: argparse.Namespace) -> int:
    from pos.reconcile.fetch import Progress
    from pos.reconcile.service import fetch

    cfg = load_config(args.config).config
    day = _day(args, cfg.terminal.timezone)
    # On a terminal a progress bar per file; the lines (resuming, refetching, complete) go to stderr either way.
    got = fetch(cfg, day, say=lambda line: print(line, file=sys.stderr, flush=True), progress=Progress(sys.stderr))
    if not got:
        print(f"no files for {day} on the server yet (Alipay publishes them after the day closes)")
        return EXIT_FAIL
    for f in got:
        print(f"{f.name}: {f.how}, {f.size} bytes")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pos.reconcile.parse import FileError
    from pos.reconcile.report import render_csv, render_text
    from pos.reconcile.service import import_and_report, queue_summary

    cfg = load_config(args.config).config
    day = _day(args, cfg.terminal.timezone)
    journal = Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                           timezone=cfg.terminal.timezone, create=False)
    try:
        try:
            imported, rec = import_and_report(cfg, journal, day, time.time())
        except FileError as exc:
            raise UserError(f"{exc}: nothing of this file was imported; fetch it again "
                            f"('pos reconcile fetch --date {day}') or ask Alipay for a corrected file") from None
        if not rec.files:
            raise UserError(f"no reconciliation files for {day}: run 'pos reconcile fetch --date {day}' first")
        job = queue_summary(cfg, journal, rec, time.time()) if args.print_summary else None
    finally:
        journal.close()
    if args.json:
        print(json.dumps(rec.as_json(), indent=2))
    else:
        for f in imported:
            print(f"imported {f.name}: {f.rows} rows" if f.new else f"{f.name}: already imported")
        print(render_text(rec), end="")
    if args.csv:
        text = render_csv(rec)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            Path(args.csv).write_text(text, encoding="utf-8")
    if args.print_summary:
        print("summary queued for the printer" if job else "no printer configured ([printer] kind = \"none\")",
              file=sys.stderr)
    return 0 if rec.all_matched else EXIT_FAIL
