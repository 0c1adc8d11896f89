"""The journal at scale: a 1,000,000-sale journal, and what reads it timed in process.

    python -m tests.bench_journal [--sales N] [--day N] [--open N] [--path FILE]

`build_journal` writes the journal with the product's own API
(`Journal.bulk_insert`, then `TillLinks` for the business days): `sales` past
sales over `sales / day` business days of `day` sales each (the last day still
open), one refund in 50, and `open_sales` sales left open (PAYING/QUERYING,
spread over the history) for recovery to find. The file is cached by its
parameters (a second run reuses it).

`measure` times, on that file: the X and Z reports of the open day (the Z
report is built, the day is not closed), the open-item counts `/v1/health`
reads, the open-item read recovery does on start, and a sale's two durable
commits. Figures are printed (and returned), never asserted: speed lives in
`make bench`, not in tests.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.journal.journal import Journal
from pos.journal.print_jobs import missing_receipts
from pos.journal.till import TillLinks
from pos.terminal.business_day import BusinessDay
from pos.terminal.receipts import RECEIPT_CATCH_UP

DAY_SECONDS = 86_400.0
START = 1_700_000_000.0          # the first business day opens here (epoch seconds)
_FINAL_MIX = [SaleState.PAID] * 90 + [SaleState.DECLINED] * 5 + [SaleState.CANCELLED] * 4 + [SaleState.REVERSED]


def _sales(count: int, per_day: int, open_sales: int) -> Iterator[SaleRecord]:
    days = max(1, count // per_day)
    open_every = max(1, count // open_sales) if open_sales else 0
    spacing = DAY_SECONDS / 2 / per_day          # a day's sales over twelve hours
    for i in range(1, count + 1):
        day = min((i - 1) // per_day, days - 1)
        at = START + day * DAY_SECONDS + 3600 + ((i - 1) % per_day) * spacing
        if open_every and i % open_every == 0 and i // open_every <= open_sales:
            state = SaleState.QUERYING if i % 2 else SaleState.PAYING
        else:
            state = _FINAL_MIX[i % len(_FINAL_MIX)]
        final = state in (SaleState.PAID, SaleState.DECLINED, SaleState.CANCELLED, SaleState.REVERSED)
        yield SaleRecord(
            sale_id=i, merchant_trans_id=f"BENCH-{time.strftime('%Y%m%d', time.gmtime(at))}-BENCH0-{i:07d}",
            amount=Money(100 + i % 9_900, "USD" if i % 10 else "SGD"), code_masked=f"**************{i % 10_000:04d}",
            order_title="bench", reference=f"R{i}", state=state, created_at=at, updated_at=at + 1.0,
            local_date=time.strftime("%Y-%m-%d", time.gmtime(at)), scanned_at=at - 0.5, pay_sent_at=at,
            acquirement_id=f"2027{i:012d}" if state in (SaleState.PAID, SaleState.REVERSED) else None,
            result_code="SUCCESS" if state is SaleState.PAID else None,
            next_request=None if final else "query", next_at=None if final else at + 5,
            querying_since=at if state is SaleState.QUERYING else None, finished_at=at + 1.0 if final else None)


def _refunds(count: int, per_day: int) -> Iterator[RefundRecord]:
    days = max(1, count // per_day)
    spacing = DAY_SECONDS / 2 / per_day
    refund_id = 0
    for i in range(50, count + 1, 50):
        if _FINAL_MIX[i % len(_FINAL_MIX)] is not SaleState.PAID:
            continue
        refund_id += 1
        day = min((i - 1) // per_day, days - 1)
        at = START + day * DAY_SECONDS + 3600 + ((i - 1) % per_day) * spacing + 60
        state = RefundState.REFUNDED if refund_id % 20 else RefundState.REFUND_DECLINED
        yield RefundRecord(refund_id=refund_id, sale_id=i, merchant_refund_id=f"BENCH-BENCH0-R{refund_id:07d}",
                           acquirement_id=f"2027{i:012d}", amount=Money(50, "USD" if i % 10 else "SGD"),
                           reason="bench", state=state, created_at=at, updated_at=at + 1.0,
                           local_date=time.strftime("%Y-%m-%d", time.gmtime(at)), attempts=1, finished_at=at + 1.0)


def build_journal(path: Path | None = None, *, sales: int = 1_000_000, day: int = 10_000,
                  open_sales: int = 100) -> Path:
    """The benchmark journal (built once, then reused); returns its path."""
    if path is None:
        path = Path(tempfile.gettempdir()) / f"pos-bench-journal-{sales}-{day}-{open_sales}" / "journal.db"
    done = path.with_name(path.name + ".built")
    if done.exists() and path.exists():
        return path
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    journal = Journal.open(path, terminal_id="BENCH", timezone="UTC")
    try:
        journal.bulk_insert(_sales(sales, day, open_sales), _refunds(sales, day))
        links = TillLinks(journal)
        links.open_day()
        for d in range(1, max(1, sales // day)):
            links.close_day(d, START + d * DAY_SECONDS)
    finally:
        journal.close()
    done.touch()
    return path


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(path: Path, *, repeat: int = 5) -> dict[str, float]:
    """Milliseconds for each read on the journal at `path` (median of `repeat` runs)."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    journal = Journal.open(path, terminal_id="BENCH", timezone="UTC")
    figures["open_ms"] = (time.perf_counter() - start) * 1000
    try:
        business = BusinessDay(journal, TillLinks(journal), None, ZoneInfo("UTC"),   # type: ignore[arg-type]
                               time.time)
        now = time.time()
        figures["x_report_ms"] = _median_ms(lambda: business.x_report(print_it=False), repeat)
        figures["z_report_ms"] = _median_ms(lambda: business._build("Z", now), repeat)
        figures["health_counts_ms"] = _median_ms(journal.open_counts, repeat * 4)
        figures["recovery_read_ms"] = _median_ms(journal.open_items, repeat)
        figures["start_reads_ms"] = _median_ms(lambda: _start_reads(journal), repeat)
        figures["open_items"] = float(len(journal.open_items()))
        figures["day_sales"] = float(sum(t.sales_count + t.cancels_count + t.declines_count + t.reversals_count
                                         for t in business.x_report(print_it=False).totals.values()))
    finally:
        journal.close()
    return figures


def _start_reads(journal: Journal) -> None:
    """What a start reads before recovery: waiting till sales, receipts owed, open items."""
    TillLinks(journal).close_stale(START)
    missing_receipts(journal, time.time() - RECEIPT_CATCH_UP)
    journal.open_items()


def measure_terminal(path: Path, *, repeat: int = 20) -> dict[str, float]:
    """On a copy of the journal at `path`: a whole terminal in process (tests/test_terminal.py's rig,
    the sandbox ledger in process) started on it until recovery has settled every open item,
    then `/v1/health` as the till service answers it, and a paid sale's durable commits."""
    from devices.scanner import Scan
    from pos.sandbox.scenarios import make_code
    from tests.test_terminal import Rig

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(path, Path(tmp) / "journal.db")
        start = time.perf_counter()
        rig = Rig(Path(tmp))
        figures["terminal_up_ms"] = (time.perf_counter() - start) * 1000
        try:
            rig.payments.wait_recovered(timeout=120)
            figures["recovered_ms"] = (time.perf_counter() - start) * 1000
            figures["health_ms"] = _median_ms(rig.terminal.till.health, repeat)
            rig.keys("E")
            commits = rig.journal.db._commits
            view = rig.terminal.create_sale(Money(500, "SGD"), "bench", "Tea")
            rig.terminal.on_scanner_event(Scan(make_code("00")))
            rig.settle(view["id"])
            figures["paid_sale_commits"] = float(rig.journal.db._commits - commits - 1)   # less the till sale's
        finally:
            rig.close()
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--day", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=100, dest="open_sales")
    parser.add_argument("--path", type=Path, default=None)
    parser.add_argument("--terminal", action="store_true",
                        help="also start a whole terminal on a copy (recovery, /v1/health, a paid sale)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build_journal(args.path, sales=args.sales, day=args.day, open_sales=args.open_sales)
    print(f"journal {path} ({args.sales} sales, {args.day} a day, {args.open_sales} open): "
          f"ready in {time.perf_counter() - start:.1f} s")
    figures = measure(path)
    if args.terminal:
        figures.update(measure_terminal(path))
    for name, value in figures.items():
        print(f"  {name:<20} {value:10.2f}")
    return figures


if __name__ == "__main__":
    main()
