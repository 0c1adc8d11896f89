"""The benchmark's large journal, built with the journal's bulk path, and what reads it timed in process.

    python -m tests.bench_journal [--sales N] [--day N] [--open N] [--seed N] [--path FILE] [--terminal]

`build` writes the journal with the product's own API: `Journal.bulk_insert`
(whole SaleRecords and RefundRecords in one transaction, ids and sequences
included), `TillLinks.open_day/close_day` for the business days and
`JournalPrintJobs` for the receipts. The one liberty taken for speed is
`PRAGMA synchronous=OFF` on the builder's own connection (the file is built
under another name and renamed when done; the daemon reopens it with its own
pragmas). What it holds, for `make bench`'s figures (tests/bench_daemon.py):

- `sales - day` past sales in closed business days of `day` sales (each
  closed by a Z), over twelve hours of each day: 90 in 100 PAID, 5 DECLINED,
  4 CANCELLED, 1 REVERSED; one PAID sale in 50 has a refund (1 in 20 of them
  REFUND_DECLINED);
- `open_sales` sales left open (QUERYING: the pay was sent, its answer never
  came; a payQuery is due) in the last closed day: recovery finds and queries
  them on start;
- the open business day: the last `day` sales, ending a minute before the
  build (the X/Z report's day);
- print jobs (printed) only for the receipts the daemon would still owe on
  start: the PAID sales and REFUNDED refunds of the last 24 hours
  (RECEIPT_CATCH_UP), that is the open day's; older history has none (a
  receipt job per sale made the old file 2.6 GB and changes no figure: start-up
  looks for owed receipts in the last 24 hours only). No events rows: bulk
  rows carry none, and no figure reads the events of past sales.

Amounts come from `random.Random(seed)`; the file is cached under
.pos-state/bench/ by its sizes, seed, schema version and builder version
(`BUILD`) and rebuilt only when one of them changes.

`measure` times, on such a file: the X and Z reports of the open day (the Z
report is built, the day is not closed), the open-item counts `/v1/health`
reads, the open-item read recovery does on start, and a start's reads;
`measure_terminal` (`--terminal`) starts a whole terminal in process on a copy.
Figures are printed (and returned), never asserted: speed lives in `make bench`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos.core.money import Money
from pos.core.outcomes import Cause
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.redact import mask_code
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs, missing_receipts
from pos.journal.schema import MIGRATIONS
from pos.journal.till import TillLinks
from pos.sandbox.scenarios import make_code
from pos.terminal.business_day import BusinessDay
from pos.terminal.receipts import RECEIPT_CATCH_UP

__all__ = ["TERMINAL_ID", "TIMEZONE", "BUILD", "CACHE", "build", "cached_journal", "measure", "measure_terminal"]

TERMINAL_ID = "DEMO01"          # config/sandbox.toml's terminal: the daemon opens the copy as its own
TIMEZONE = "Asia/Singapore"
CURRENCY = "SGD"
BUILD = 4                       # bump when what the builder writes changes: the cache is rebuilt
CACHE = Path(__file__).resolve().parents[1] / ".pos-state" / "bench"
DAY = 86_400.0
_FINAL_MIX = [SaleState.PAID] * 90 + [SaleState.DECLINED] * 5 + [SaleState.CANCELLED] * 4 + [SaleState.REVERSED]
# A receipt's ESC/POS bytes are about this long (the daemon's own receipts: 700-750 bytes).
_RECEIPT = b"\x1b@" + b"Sandbox Coffee Demo Street 1 receipt line padding" * 14 + b"\x1dV\x00"


class _Layout:
    """When each sale happens, its local date and its ids: the same for sales and their refunds."""

    def __init__(self, journal: Journal, *, sales: int, day: int, open_sales: int, now: float) -> None:
        self.day = min(day, sales)
        self.history = sales - self.day
        self.days = max(-(-self.history // self.day), 1) if self.history else 0
        self.open_sales = open_sales
        self.first = now - (self.days + 1) * DAY        # the first closed day starts here
        self.open_day_start = now - DAY / 2 - 60.0      # the open day's sales end a minute before now
        self.prefix = f"{journal.terminal_id}-{{}}-{journal.install_id}-"
        self._zone = ZoneInfo(TIMEZONE)
        self._dates: dict[int, str] = {}

    def date(self, at: float) -> str:
        hour = int(at // 3600)
        got = self._dates.get(hour)
        if got is None:
            got = self._dates[hour] = datetime.fromtimestamp(hour * 3600, self._zone).strftime("%Y-%m-%d")
        return got

    def day_start(self, d: int) -> float:
        return self.first + d * DAY

    def times(self) -> Iterator[tuple[float, str]]:
        """(time, kind) of every sale in id order: 'past', 'open' (left QUERYING) and 'today'."""
        for d in range(self.days):
            count = min(self.day, self.history - d * self.day)
            for i in range(count):
                yield self.day_start(d) + 3600 + i * (DAY / 2 / count), "past"
            if d == self.days - 1:
                for i in range(self.open_sales):
                    yield self.day_start(d) + 3600 + DAY / 2 + 60 + i, "open"
        for i in range(self.day):
            yield self.open_day_start + i * (DAY / 2 / self.day), "today"


def _records(layout: _Layout, seed: int, refunds: list[RefundRecord], today: list[int]) -> Iterator[SaleRecord]:
    """The sales, in id order; fills `refunds` and `today` (the open day's sale ids) as it goes."""
    rng = random.Random(seed)
    masked = mask_code(make_code("00"))
    for sale_id, (at, kind) in enumerate(layout.times(), start=1):
        date = layout.date(at)
        amount = Money(150 + rng.randrange(5000), CURRENCY)
        state = SaleState.QUERYING if kind == "open" else _FINAL_MIX[sale_id % len(_FINAL_MIX)]
        final = state is not SaleState.QUERYING
        acquired = state in (SaleState.PAID, SaleState.REVERSED)
        if kind == "today":
            today.append(sale_id)
        yield SaleRecord(
            sale_id=sale_id, merchant_trans_id=layout.prefix.format(date.replace("-", "")) + f"{sale_id:06d}",
            amount=amount, code_masked=masked, order_title="", reference="", state=state,
            created_at=at, updated_at=at + (0.3 if final else 5.0), local_date=date, scanned_at=at,
            pay_sent_at=at + 0.01, querying_since=None if final else at + 5.0,
            acquirement_id=f"2026{sale_id:024d}" if acquired else None,
            result_code={SaleState.PAID: "SUCCESS", SaleState.REVERSED: "SUCCESS",
                         SaleState.DECLINED: "USER_BALANCE_NOT_ENOUGH", SaleState.CANCELLED: "SUCCESS",
                         SaleState.QUERYING: "USER_PAYING"}[state],
            result_cause=None if final else Cause.CUSTOMER_CONFIRMING,
            next_request=None if final else "query", next_at=None if final else at + 5.0,
            finished_at=at + 0.3 if final else None)
        if state is SaleState.PAID and sale_id % 50 == 0:
            rid = len(refunds) + 1
            back = at + 120.0
            refunds.append(RefundRecord(
                refund_id=rid, sale_id=sale_id,
                merchant_refund_id=layout.prefix.format(layout.date(back).replace("-", "")) + f"R{rid:06d}",
                acquirement_id=f"2026{sale_id:024d}", amount=Money(min(100, amount.minor), CURRENCY),
                reason="bench", state=RefundState.REFUND_DECLINED if rid % 20 == 0 else RefundState.REFUNDED,
                created_at=back, updated_at=back + 0.3, local_date=layout.date(back), attempts=1,
                result_code="SUCCESS", finished_at=back + 0.3))


def build(path: Path, *, sales: int, day_sales: int, open_sales: int, seed: int = 0,
          progress: bool = True) -> dict[str, Any]:
    """Write the journal at `path` (replaced); returns what the benchmark needs to know about it."""
    tmp = path.with_suffix(".building")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    start = time.perf_counter()
    now = time.time()
    journal = Journal.open(tmp, terminal_id=TERMINAL_ID, timezone=TIMEZONE)
    try:
        journal.db.conn.execute("PRAGMA synchronous=OFF")   # bulk build only: see the module docstring
        layout = _Layout(journal, sales=sales, day=day_sales, open_sales=open_sales, now=now)
        refunds: list[RefundRecord] = []
        today: list[int] = []
        journal.bulk_insert(_records(layout, seed, refunds, today), [])
        journal.bulk_insert((), refunds)
        if progress:
            print(f"  journal build: {sales + open_sales:,} sales and {len(refunds):,} refunds inserted, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        links = TillLinks(journal)
        day, _ = links.open_day()
        for d in range(layout.days):                     # each past day closed by its Z
            links.close_day(day, layout.day_start(d) + DAY - 400.0)
            day += 1
        # The receipts of the last 24 hours were queued and printed, as the daemon leaves them.
        jobs = JournalPrintJobs(journal)
        owed = missing_receipts(journal, now - RECEIPT_CATCH_UP)
        for sale_id, refund_id in owed:
            key = f"sale:{sale_id}" if refund_id is None else f"refund:{refund_id}"
            jobs.add(key, _RECEIPT, record=None, reprint_of=None, created_at=now - 60.0)
            job = jobs.next_pending()
            if job is not None:
                jobs.mark_done(job.job_id, now - 59.0)
        journal.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    tmp.replace(path)
    info = {"sales": sales + open_sales, "day_sales": layout.day,
            "open_sales": open_sales, "past_days": layout.days, "refunds": len(refunds),
            "print_jobs": len(owed), "first_day_sale_id": today[0] if today else None, "seed": seed,
            "schema_version": len(MIGRATIONS), "build": BUILD,
            "build_seconds": round(time.perf_counter() - start, 1), "bytes": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def cached_journal(*, sales: int, day_sales: int, open_sales: int, seed: int = 0,
                   cache: Path = CACHE) -> tuple[Path, dict[str, Any]]:
    """The cached journal file for these sizes, seed and schema, built first when missing.
    Files of another schema version or builder in `cache` are removed (other sizes are kept)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"journal-{sales}-{day_sales}-{open_sales}-s{seed}-v{len(MIGRATIONS)}-b{BUILD}.db"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        info["cached"] = True
        return path, info
    current = f"-v{len(MIGRATIONS)}-b{BUILD}."
    for stale in cache.glob("journal-*"):
        if current not in stale.name:
            stale.unlink()
    print(f"building the benchmark journal ({sales:,} sales, {open_sales} open, seed {seed}; cached in {cache}) ...",
          flush=True)
    info = build(path, sales=sales, day_sales=day_sales, open_sales=open_sales, seed=seed)
    info["cached"] = False
    print(f"  built in {info['build_seconds']:.0f} s ({info['bytes'] / 1e6:.0f} MB)", flush=True)
    return path, info


# ---------------------------------------------------------------- reads timed in process

def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class _NoPaper:
    def print_report(self, report: Any) -> None:
        pass


def measure(path: Path, *, repeat: int = 5) -> dict[str, float]:
    """Milliseconds for each read on the journal at `path` (median of `repeat` runs)."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    journal = Journal.open(path, terminal_id=TERMINAL_ID, timezone=TIMEZONE)
    figures["open_ms"] = (time.perf_counter() - start) * 1000
    try:
        business = BusinessDay(journal, TillLinks(journal), _NoPaper(), ZoneInfo(TIMEZONE),  # type: ignore[arg-type]
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
    TillLinks(journal).close_stale(time.time())
    missing_receipts(journal, time.time() - RECEIPT_CATCH_UP)
    journal.open_items()


def measure_terminal(path: Path, *, repeat: int = 20) -> dict[str, float]:
    """On a copy of the journal at `path`: a whole terminal in process (tests/test_terminal.py's rig,
    the sandbox ledger in process) started on it until recovery has settled every open item,
    then `/v1/health` as the till service answers it, and a paid sale's durable commits."""
    from devices.scanner import Scan
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
    parser = argparse.ArgumentParser(prog="python -m tests.bench_journal", description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=1_000_000, help="sales in the journal [1000000]")
    parser.add_argument("--day", "--day-sales", type=int, default=10_000, dest="day",
                        help="sales of each business day, the open one included [10000]")
    parser.add_argument("--open", type=int, default=100, dest="open_sales", help="sales left QUERYING [100]")
    parser.add_argument("--seed", type=int, default=0, help="the amounts' random seed [0]")
    parser.add_argument("--path", type=Path, default=None,
                        help="build here (replaced) instead of the cache, .pos-state/bench/")
    parser.add_argument("--terminal", action="store_true",
                        help="also start a whole terminal on a copy (recovery, /v1/health, a paid sale)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.path is not None:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        info = build(args.path, sales=args.sales, day_sales=args.day, open_sales=args.open_sales, seed=args.seed)
        path = args.path
    else:
        path, info = cached_journal(sales=args.sales, day_sales=args.day, open_sales=args.open_sales,
                                    seed=args.seed)
    print(f"journal {path}: {json.dumps(info)}; ready in {time.perf_counter() - start:.1f} s")
    figures = measure(path)
    if args.terminal:
        figures.update(measure_terminal(path))
    for name, value in figures.items():
        print(f"  {name:<20} {value:10.2f}")
    return figures


if __name__ == "__main__":
    main()
