"""Import Alipay's files into the journal and build a day's reconciliation from it.

A file is parsed whole before anything is written, and written in one journal
transaction: a bad file changes nothing. The same content imports once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path

from pos.core.records import RefundRecord, SaleRecord
from pos.journal.journal import Journal
from pos.journal.reconcile_files import ReconcileFiles
from pos.reconcile.match import Reconciliation, reconcile
from pos.reconcile.parse import AlipayRow, FileError, parse_file

__all__ = ["Imported", "check_day", "day_stamp", "files_of_day", "import_file", "import_folder", "day_report"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_day(day: str) -> str:
    """YYYY-MM-DD, or ValueError saying what to type."""
    try:
        if not _DAY.match(day):
            raise ValueError
        Date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"date {day!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-30") from None
    return day


def day_stamp(day: str) -> str:
    return check_day(day).replace("-", "")


def files_of_day(folder: Path, day: str) -> list[Path]:
    """The day's reconciliation files in a folder (name carries YYYYMMDD, ends .csv)."""
    stamp = day_stamp(day)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".csv" and stamp in p.name)


@dataclass(frozen=True)
class Imported:
    name: str
    new: bool
    rows: int
    role: str


def import_file(journal: Journal, day: str, path: Path, now: float) -> Imported:
    """Parse and store one file; FileError (file, line, reason) if it cannot be read whole."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise FileError(path.name, line, "not UTF-8 text (damaged file?)") from None
    parsed = parse_file(path.name, text)
    rows = json.dumps([r.as_json() for r in parsed.rows], sort_keys=True)
    new = ReconcileFiles(journal).add(day=check_day(day), name=path.name, sha256=hashlib.sha256(data).hexdigest(),
                                      size=len(data), family=parsed.family, role=parsed.role,
                                      row_count=len(parsed.rows), rows=rows, now=now)
    return Imported(path.name, new, len(parsed.rows), parsed.role)


def import_folder(journal: Journal, day: str, folder: Path, now: float) -> list[Imported]:
    """Import every file of the day; each file is all-or-nothing (the first bad file stops the import)."""
    return [import_file(journal, day, p, now) for p in files_of_day(folder, day)]


def day_report(journal: Journal, day: str, *, store_id: str = "") -> Reconciliation:
    """The day's stored files against the journal's sales and refunds of that local date.

    A row whose sale or refund the journal has on another date (the files follow Alipay's
    calendar day, GMT+8) is matched against it all the same.
    """
    check_day(day)
    stored = ReconcileFiles(journal).of_day(day)
    by_role: dict[str, list[AlipayRow]] = {"transaction": [], "settlement": [], "summary": []}
    for f in stored:
        by_role[f.role].extend(AlipayRow.from_json(d) for d in json.loads(f.rows))
    tx, st = by_role["transaction"], by_role["settlement"]
    sales: list[SaleRecord] = journal.list_sales(date=day)
    refunds: list[RefundRecord] = journal.list_refunds(date=day)
    known_sales = {s.merchant_trans_id for s in sales}
    known_refunds = {r.merchant_refund_id for r in refunds}
    for row in tx:
        if row.kind == "REFUND" and row.merchant_trans_id not in known_refunds:
            refund = journal.get_refund(row.merchant_trans_id)
            if refund is not None and refund.merchant_refund_id == row.merchant_trans_id:
                refunds.append(refund)
                known_refunds.add(refund.merchant_refund_id)
        elif row.kind != "REFUND" and row.merchant_trans_id not in known_sales:
            sale = journal.get_sale(row.merchant_trans_id)
            if sale is not None and sale.merchant_trans_id == row.merchant_trans_id:
                sales.append(sale)
                known_sales.add(sale.merchant_trans_id)
    return reconcile(day, tx, st, sales, refunds, store_id=store_id, terminal_id=journal.terminal_id,
                     files=[f.name for f in stored], summary=by_role["summary"])
