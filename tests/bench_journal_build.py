"""The benchmark's large journal: N past sales in business days of D sales, plus O sales left open.

Built with the product's own journal API (Journal.create_sale, Journal.record,
TillLinks.open_day/close_day): every sale is created (CREATED), sent (PAYING)
and answered (PAID, one in twenty DECLINED), each step committed as the
daemon commits it. The one liberty taken for speed is `PRAGMA synchronous=OFF`
on the builder's own connection (the file is thrown away if the build does
not finish; the daemon reopens it with its own pragmas).

The last D sales form the open business day (the X/Z report's day); every PAID
sale has its printed receipt (a print job of ~730 bytes, as the daemon
leaves it); the O open sales (QUERYING: the pay was sent, its answer never came) sit in the day
before it. The file is cached under .pos-state/bench/ and rebuilt only when
the sizes or the journal's schema version change. Run alone:
`python -m tests.bench_journal_build --sales 1000000`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pos.core.events import LogEntry, Record
from pos.core.money import Money
from pos.core.outcomes import Cause
from pos.core.records import SaleState
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs
from pos.journal.schema import MIGRATIONS
from pos.journal.till import TillLinks
from pos.sandbox.scenarios import make_code

__all__ = ["cached_journal", "TERMINAL_ID", "TIMEZONE"]

TERMINAL_ID = "DEMO01"          # config/sandbox.toml's terminal: the daemon opens the copy as its own
TIMEZONE = "Asia/Singapore"
CURRENCY = "SGD"
BUILD = 3                       # bump when what the builder writes changes: the cache is rebuilt
CACHE = Path(__file__).resolve().parents[1] / ".pos-state" / "bench"


# A receipt's ESC/POS bytes are about this long (the daemon's own receipts: 700-750 bytes).
_RECEIPT = b"\x1b@" + b"Sandbox Coffee Demo Street 1 receipt line padding" * 14 + b"\x1dV\x00"


def _sale(journal: Journal, jobs: JournalPrintJobs, at: float, n: int, state: SaleState) -> int:
    amount = Money(150 + (n * 37) % 5000, CURRENCY)
    sale = journal.create_sale(amount=amount, code=make_code("00"), scanned_at=at, now=at)
    paying = replace(sale, state=SaleState.PAYING, pay_sent_at=at + 0.01, updated_at=at + 0.01)
    journal.record(Record(sales=(paying,), log=(LogEntry(at + 0.01, "sale", sale.sale_id, "send_pay", "CREATED",
                                                        "PAYING"),)))
    if state is SaleState.QUERYING:
        done = replace(paying, state=state, querying_since=at + 5.0, updated_at=at + 5.0, result_code="USER_PAYING",
                       result_cause=Cause.CUSTOMER_CONFIRMING)
        trigger = "pay_unknown"
    elif state is SaleState.DECLINED:
        done = replace(paying, state=state, result_code="USER_BALANCE_NOT_ENOUGH", finished_at=at + 0.3,
                       updated_at=at + 0.3)
        trigger = "pay_failed"
    else:
        done = replace(paying, state=state, result_code="SUCCESS", finished_at=at + 0.3, updated_at=at + 0.3,
                       acquirement_id=f"2026{sale.sale_id:024d}")
        trigger = "pay_succeeded"
    journal.record(Record(sales=(done,), log=(LogEntry(done.updated_at, "sale", sale.sale_id, trigger, "PAYING",
                                                       state.value),)))
    if state is SaleState.PAID:   # its receipt was queued and printed, as the daemon does
        jobs.add(f"sale:{sale.sale_id}", _RECEIPT, record=None, reprint_of=None, created_at=done.updated_at)
        job = jobs.next_pending()
        if job is not None:
            jobs.mark_done(job.job_id, done.updated_at + 1.0)
    return sale.sale_id


def build(path: Path, *, sales: int, day_sales: int, open_sales: int, progress: bool = True) -> dict[str, Any]:
    """Write the journal at `path` (replaced); returns what the benchmark needs to know about it."""
    tmp = path.with_suffix(".building")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    start = time.perf_counter()
    journal = Journal.open(tmp, terminal_id=TERMINAL_ID, timezone=TIMEZONE)
    journal.db.conn.execute("PRAGMA synchronous=OFF")   # bulk build only: see the module docstring
    links = TillLinks(journal)
    jobs = JournalPrintJobs(journal)
    history = max(sales - day_sales, 0)
    days = max(-(-history // day_sales), 1)
    now = time.time()
    first = now - (days + 1) * 86400.0          # the history's first day
    n = 0
    for d in range(days):
        day_start = first + d * 86400.0
        count = min(day_sales, history - d * day_sales)
        for i in range(count):
            at = day_start + i * (43200.0 / max(count, 1))
            _sale(journal, jobs, at, n, SaleState.DECLINED if n % 20 == 19 else SaleState.PAID)
            n += 1
        if d == days - 1:
            for i in range(open_sales):
                _sale(journal, jobs, day_start + 43300.0 + i, n, SaleState.QUERYING)
                n += 1
        day, _ = links.open_day()
        links.close_day(day, day_start + 86000.0)
        if progress and d % 10 == 9:
            print(f"  journal build: {n:,} sales, {time.perf_counter() - start:.0f} s", flush=True)
    day_start = now - 43200.0 - 60.0            # the open business day: its sales end a minute before now
    first_id = None
    for i in range(min(day_sales, sales)):
        sid = _sale(journal, jobs, day_start + i * (43200.0 / day_sales), n,
                    SaleState.DECLINED if n % 20 == 19 else SaleState.PAID)
        first_id = first_id or sid
        n += 1
    journal.close()
    tmp.replace(path)
    info = {"sales": n, "day_sales": min(day_sales, sales), "open_sales": open_sales, "first_day_sale_id": first_id,
            "schema_version": len(MIGRATIONS), "build_seconds": round(time.perf_counter() - start, 1),
            "bytes": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def cached_journal(*, sales: int, day_sales: int, open_sales: int, cache: Path = CACHE) -> tuple[Path, dict[str, Any]]:
    """The cached journal file for these sizes and this schema, built first when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"journal-{sales}-{day_sales}-{open_sales}-v{len(MIGRATIONS)}-b{BUILD}.db"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        info["cached"] = True
        return path, info
    print(f"building the benchmark journal ({sales:,} sales, {open_sales} open; cached in {cache}) ...", flush=True)
    info = build(path, sales=sales, day_sales=day_sales, open_sales=open_sales)
    info["cached"] = False
    print(f"  built in {info['build_seconds']:.0f} s ({info['bytes'] / 1e6:.0f} MB)", flush=True)
    return path, info


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--day-sales", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(cached_journal(sales=args.sales, day_sales=args.day_sales, open_sales=args.open)[1]))
