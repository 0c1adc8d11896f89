"""What one paid sale's journal transactions cost, step by step, beside the floor's commit.

    python -m tests.bench_steps [--sales 300] [--warmup 50] [--till] [--outbox] [--trace] [--history N]

A till sale (`--till`: linked to a till row, as a sale over the till API is) is
paid through the real PaymentRunner and journal file with the sandbox's ledger
in process (DirectGateway) and the terminal's receipt writer (Receipts queuing
the receipt in the outcome's transaction, the print queue's worker not started).
Every journal transaction is metered: BEGIN..COMMIT time, the part before the
COMMIT (Python and SQL) and the COMMIT alone, statements (BEGIN and COMMIT
counted; "triggered": a trigger's statements, the outbox's, which the trace
reports again), and WAL frames (the -wal file's growth with autocheckpoint off,
4096-byte pages + 24-byte frame headers). After each sale the floor (one
INSERT of a 3-column row, same pragmas) commits once, so both see the same load.
The outbox is off unless `--outbox` (a terminal without [hq] url writes none).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.printer import DummyPrinter
from pos.config import Config
from pos.core.money import Money
from pos.journal import outbox
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs
from pos.journal.till import TillLinks
from pos.payments.runner import PaymentRunner
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import make_code
from pos.terminal.receipts import Receipts, outcome_receipt
from tests import bench_journal

FRAME = 4096 + 24


@dataclass
class Step:
    kind: str
    seconds: float
    commit_seconds: float
    frames: float
    statements: list[str] = field(default_factory=list)
    wal_span: tuple[int, int] = (0, 0)   # where its frames are in the -wal file


class Meter:
    """Wraps the journal's transactions: each becomes a Step (statements traced on its connection)."""

    def __init__(self, journal: Journal) -> None:
        self.db = journal.db
        self.wal = Path(f"{self.db.path}-wal")
        self.steps: list[Step] = []
        self._open: list[str] | None = None
        self._t0 = self._tc = 0.0
        inner = self.db.transaction
        self.db.conn.set_trace_callback(self._trace)

        @contextmanager
        def transaction(**kw: Any) -> Iterator[Any]:
            with inner(**kw) as conn:   # the lock is held from here to the end
                w0 = self.wal.stat().st_size
                yield conn
            t1 = time.perf_counter()
            stmts, self._open = self._open or [], None
            w1 = self.wal.stat().st_size
            self.steps.append(Step(_kind(stmts), t1 - self._t0, t1 - self._tc, (w1 - w0) / FRAME, stmts, (w0, w1)))

        self.db.transaction = transaction  # type: ignore[method-assign]

    def _trace(self, sql: str) -> None:
        # Every statement on the connection runs under the journal's lock: none from another
        # thread can fall inside a transaction.
        now = time.perf_counter()
        if sql.startswith("BEGIN"):
            self._open, self._t0 = [], now
        elif sql.startswith("COMMIT"):
            self._tc = now
        if self._open is not None:
            self._open.append(sql)


def _kind(stmts: list[str]) -> str:
    text = " ".join(stmts)
    if "INSERT INTO sales" in text:
        return "create"
    if "print_jobs" in text:
        return "outcome"
    if "till_sales" in text:
        return "till"
    return "other"


class Floor:
    """One INSERT of a 3-column row per commit, the journal's pragmas."""

    def __init__(self, path: Path) -> None:
        import sqlite3
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        for p in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "wal_autocheckpoint=0"):
            self.conn.execute(f"PRAGMA {p}")
        self.conn.execute("CREATE TABLE t (a INTEGER, b REAL, c TEXT)")
        self.wal = Path(f"{path}-wal")
        self.times: list[float] = []
        self.frames: list[float] = []

    def commit(self, i: int) -> None:
        w0 = self.wal.stat().st_size
        t0 = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i, time.time(), "x"))
        self.conn.execute("COMMIT")
        self.times.append(time.perf_counter() - t0)
        self.frames.append((self.wal.stat().st_size - w0) / FRAME)


def run(sales: int, warmup: int, till: bool, with_outbox: bool, trace: bool, history: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate({"terminal": {"terminal_id": "BENCH", "state_dir": tmp}})
        if history:   # past sales, so the indexes have the shape of a store's journal
            bench_journal.build(Path(tmp) / "journal.db", sales=history, day_sales=min(history, 10_000),
                                open_sales=0, progress=False)
        journal = Journal.open(Path(tmp) / "journal.db", terminal_id="BENCH")
        outbox.set_writing(journal.db, with_outbox)
        journal.db.conn.execute("PRAGMA wal_autocheckpoint=0")
        payments = PaymentRunner(journal, DirectGateway(Ledger(), time.time), cfg.payment)
        queue = PrintQueue(JournalPrintJobs(journal), DummyPrinter(), printer_settings=cfg.printer,
                           catalogue=Catalogue.load("en"), receipt_of=partial(outcome_receipt, cfg, journal))
        receipts = Receipts(cfg, journal, queue, {}, time.time)
        assert receipts.in_outcome_transaction
        payments.write_receipts(receipts.queue_with_outcome)
        payments.recover()
        links = TillLinks(journal)
        floor = Floor(Path(tmp) / "floor.db")
        meter: Meter | None = None
        for i in range(warmup + sales):
            if i == warmup:
                meter = Meter(journal)
                floor.times.clear()
                floor.frames.clear()
            till_id = links.new_sale(Money(250, "USD"), f"R{i}", "", time.time()).till_id if till else None
            if meter is not None:
                meter.steps = [s for s in meter.steps if s.kind != "till"]
            sale_id = payments.start_sale(Money(250, "USD"), make_code("00"), time.time(), reference=f"R{i}",
                                          till_id=till_id)
            sale = payments.wait(sale_id, 10)
            assert sale is not None and sale.state.value == "PAID", sale
            payments.wait_idle(10)
            floor.commit(i)
        payments.stop()
        pages = _pages_written(journal, meter) if trace and meter is not None else {}
        journal.close()
    assert meter is not None
    ms = 1000.0
    print(f"{sales} paid sales after {warmup} warm-up ({'till sales' if till else 'keypad sales'}, "
          f"outbox {'on' if with_outbox else 'off'}, {history:,} past sales); times in ms")
    print(f"{'transaction':<12} {'n':>4} {'BEGIN..COMMIT':>13} {'p90':>6} {'before COMMIT':>13} {'COMMIT':>7} "
          f"{'frames':>7} {'statements':>10} {'triggered':>9}")
    for kind in ("create", "outcome", "till", "other"):
        steps = [s for s in meter.steps if s.kind == kind]
        if not steps:
            continue
        secs = sorted(s.seconds for s in steps)
        own = Counter(len(_own(s.statements)) for s in steps).most_common(1)[0][0]
        fired = Counter(len(s.statements) - len(_own(s.statements)) for s in steps).most_common(1)[0][0]
        print(f"{kind:<12} {len(steps):>4} {statistics.median(secs) * ms:>13.3f} "
              f"{secs[int(len(secs) * 0.9)] * ms:>6.3f} "
              f"{statistics.median(s.seconds - s.commit_seconds for s in steps) * ms:>13.3f} "
              f"{statistics.median(s.commit_seconds for s in steps) * ms:>7.3f} "
              f"{statistics.mean(s.frames for s in steps):>7.2f} {own:>10} {fired:>9}")
        if trace:
            for sql in _own(steps[len(steps) // 2].statements):
                print(f"    {' '.join(sql.split())[:110]}")
            print(f"    pages written: {', '.join(pages.get(kind, []))}")
    ft = sorted(floor.times)
    print(f"{'floor':<12} {len(ft):>4} {statistics.median(ft) * ms:>13.3f} {ft[int(len(ft) * 0.9)] * ms:>6.3f} "
          f"{'':>13} {'':>7} {statistics.mean(floor.frames):>7.2f} {3:>10} {0:>9}")


def _pages_written(journal: Journal, meter: Meter) -> dict[str, list[str]]:
    """The b-tree (table or index) of every page the middle transaction of each kind wrote (dbstat)."""
    owner = dict(journal.db.conn.execute("SELECT pageno, name FROM dbstat").fetchall())
    wal = meter.wal.read_bytes()
    found: dict[str, list[str]] = {}
    for kind in ("create", "outcome"):
        steps = [s for s in meter.steps if s.kind == kind]
        if steps:
            w0, w1 = steps[len(steps) // 2].wal_span
            found[kind] = [str(owner.get(int.from_bytes(wal[at:at + 4], "big"), "?"))
                           for at in range(w0, w1, FRAME)]
    return found


def _own(statements: list[str]) -> list[str]:
    """The statements run, without the repeats the trace reports for a trigger firing (the same text again)."""
    return [s for i, s in enumerate(statements) if i == 0 or s != statements[i - 1]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench_steps", description=__doc__.splitlines()[0])
    p.add_argument("--sales", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--till", action="store_true", help="till sales (each linked to a till row)")
    p.add_argument("--outbox", action="store_true", help="the outbox on (a terminal with [hq] url)")
    p.add_argument("--trace", action="store_true", help="print one transaction's statements of each kind")
    p.add_argument("--history", type=int, default=0,
                   help="past sales in the journal first (tests/bench_journal.py's layout), e.g. 200000")
    a = p.parse_args(argv)
    run(a.sales, a.warmup, a.till, a.outbox, a.trace, a.history)


if __name__ == "__main__":
    main()
