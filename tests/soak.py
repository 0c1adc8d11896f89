"""The soak: many sales and refunds through the payment runner, the offline client, a fault
proxy and the sandbox gateway over HTTP on 127.0.0.1, with random faults; then every sale and
refund is compared with the sandbox's ledger and the printer.

    python -m tests.soak [--sales 10000] [--refunds 1000] [--fault-rate 0.05] [--seed 1]
                         [--daemon-sales 1000 --daemon-refunds 100 --kill-rate 0.05]

With --daemon-sales, a second soak follows through `pos run` as a process, SIGKILLed at random
moments and restarted (tests/daemon_soak.py); the table has a column for each.
(`make soak` runs both at full size.) The short campaigns of `make test` (tests/test_campaigns.py)
use the same rig. Real parts: the SQLite journal file, HTTP on loopback, the print queue
in the journal with a dummy printer; the gateway is the sandbox.

Faults, each drawn at --fault-rate per sale or refund:
- network (tests/fault_proxy.py): delay, drop before / after the gateway got the request,
  reset mid-answer, truncate, trickle, a stale answer; at a random exchange of the item;
- gateway: a sandbox scenario (declines, U answers, held answers, bad signatures, a late
  success, the ORDER_NOT_EXIST race);
- storage: the journal full (SQLite's page limit) when a sale starts: no sale may start;
- printer: the printer away for a while (the receipt waits and is printed after).
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.printer import DummyPrinter
from pos.config import Config, GatewaySection, PrinterSection, TerminalSection
from pos.core.engine import PrintReceipt
from pos.core.errors import UserError
from pos.core.money import Money
from pos.core.records import REFUND_SETTLED_FOR_MANAGER, SALE_SETTLED_FOR_CASHIER, RefundState, SaleState
from pos.gateway.keys import ALIPAY_PRIVATE, ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC, generate_key_folder
from pos.gateway.offline import OfflineGateway
from pos.gateway.signing import load_private_key, load_public_key
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs, missing_receipts
from pos.payments.runner import PaymentRunner, SaleRefused
from pos.sandbox.ledger import as_datetime
from pos.sandbox.scenarios import make_code
from pos.sandbox.server import SandboxServer
from pos.terminal.displays import new_device_board
from pos.terminal.receipts import Receipts, outcome_receipt
from tests.crash_driver import FAST
from tests.fault_proxy import FAULTS, FaultProxy
from tests.sandbox_fixtures import short_options

__all__ = ["FaultRig", "Figures", "main", "table"]

NETWORK_FAULTS = [f for f in FAULTS if f != "pass"]
# Sandbox scenarios that are faults of the gateway (README's scenario table); "10" and "17"
# wait seconds for a wallet, so they are drawn less often by being listed once.
GATEWAY_FAULTS = ["01", "02", "03", "04", "05", "11", "12", "13", "14", "15", "16", "18", "99", "10", "17"]


@dataclass
class Figures:
    faults: Counter[str] = field(default_factory=Counter)
    sales: int = 0
    refunds: int = 0
    refused_sales: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    discrepancies: list[str] = field(default_factory=list)
    double_charges: int = 0
    lost_sales: int = 0
    lost_receipts: int = 0
    receipts_missing: list[str] = field(default_factory=list)
    manager_items: int = 0
    integrity: str = ""
    secrets_found: list[str] = field(default_factory=list)
    restarts: int = 0
    wall_time: float = 0.0

    kills: int = 0                      # SIGKILLs of the daemon (the daemon soak)
    reprinted: int = 0                  # receipts on paper twice: killed after printing, before recording
    not_started: int = 0                # till sales the daemon died on before it read the scan
    created_then_failed: int = 0        # sales committed, then a later commit failed (journal full)

    def rows(self) -> list[tuple[str, str]]:
        rows = [("faults injected", str(sum(self.faults.values())))]
        rows += [(f"  {kind}", str(n)) for kind, n in sorted(self.faults.items())]
        rows += [("daemon kills (SIGKILL at random moments, restarted)", str(self.kills)),
                 ("sales", str(self.sales)),
                 ("  by state", ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))),
                 ("sales created, then the journal filled before their pay was sent (counted in sales; "
                  "recovery settles them)", str(self.created_then_failed)),
                 ("sales never started (the daemon died before it read the scan; nothing charged)",
                  str(self.not_started)),
                 ("sales refused (journal full)", str(self.refused_sales)),
                 ("sales refused by the runner or the till", ", ".join(f"{k} {v}" for k, v
                                                                       in sorted(self.refusals.items())) or "0"),
                 ("refunds", str(self.refunds)),
                 ("discrepancies with the ledger", str(len(self.discrepancies))),
                 ("double charges", str(self.double_charges)),
                 ("lost sales", str(self.lost_sales)),
                 ("lost receipts", str(self.lost_receipts)),
                 ("receipts printed twice (killed between print and record)", str(self.reprinted)),
                 ("items left for a manager", str(self.manager_items)),
                 ("journal integrity_check", self.integrity),
                 ("full codes, keys, signatures or tokens in log, journal, paper or displays",
                  str(len(self.secrets_found))),
                 ("wall time", f"{self.wall_time:.0f} s")]
        return rows

    def table(self) -> str:
        return table([("figure", self)])


def table(columns: list[tuple[str, Figures]]) -> str:
    """A Markdown table: one row per figure, one column per soak (fault kinds: the union)."""
    names: list[str] = []
    values: list[dict[str, str]] = []
    for _, figures in columns:
        rows = figures.rows()
        values.append(dict(rows))
        for name, _ in rows:
            if name not in names:
                names.append(name)
    kinds = sorted(n for n in names if n.startswith("  ") and n != "  by state")
    ordered = [n for n in names if not n.startswith("  ") or n == "  by state"]
    at = ordered.index("faults injected") + 1
    ordered[at:at] = kinds
    lines = ["| what | " + " | ".join(title for title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name in ordered:
        label = "&nbsp;&nbsp;" + name.strip() if name.startswith("  ") else name
        lines.append(f"| {label} | " + " | ".join(v.get(name, "0" if name.startswith("  ") else "-")
                                                  for v in values) + " |")
    return "\n".join(lines)


class FaultRig:
    """Journal + PaymentRunner + OfflineGateway -> FaultProxy -> SandboxServer, receipts to a dummy printer."""

    def __init__(self, folder: Path, *, seed: int = 1, keys: Path | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if keys is None:
            keys = folder / "keys"
            generate_key_folder(keys)
        self.rng = random.Random(seed)
        self.folder = folder
        self.keys = keys
        self.codes: list[str] = []
        self.log = io.StringIO()
        self._log_handler = logging.StreamHandler(self.log)
        self._log_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(kv)s",
                                                         defaults={"kv": ""}))
        logging.getLogger().addHandler(self._log_handler)
        logging.getLogger().setLevel(logging.INFO)
        self.server = SandboxServer(merchant_public_key=load_public_key(keys / MERCHANT_PUBLIC),
                                    alipay_private_key=load_private_key(keys / ALIPAY_PRIVATE),
                                    options=short_options(slow_response=0.4, wallet_confirm_after=0.3,
                                                          race_delay=0.3))
        self.server.start()
        self.proxy = FaultProxy(self.server.url, delay=0.05, trickle_interval=0.05).start()
        self.settings = GatewaySection(url=self.proxy.url, private_key=str(keys / MERCHANT_PRIVATE),
                                       merchant_public_key=str(keys / MERCHANT_PUBLIC),
                                       alipay_public_key=str(keys / ALIPAY_PUBLIC),
                                       connect_timeout=0.3, read_timeout=0.3, sandbox=True)
        self.gateway = OfflineGateway(self.settings)
        self.journal = Journal.open(folder / "journal.db", terminal_id="SOAK", timezone="Asia/Shanghai")
        self.printer = DummyPrinter()
        printer = PrinterSection()
        cfg = Config(terminal=TerminalSection(terminal_id="SOAK", currency="SGD", timezone="Asia/Shanghai"),
                     printer=printer)
        self.queue = PrintQueue(JournalPrintJobs(self.journal), self.printer, printer_settings=printer,
                                catalogue=Catalogue.load("en"), retry_interval=0.05,
                                receipt_of=partial(outcome_receipt, cfg, self.journal)).start()
        self.receipts = Receipts(cfg, self.journal, self.queue, new_device_board(), time.time)
        self.figures = Figures()
        self.restarts = -1
        self.runner = self._start_runner()
        self._paid: list[int] = []

    def _start_runner(self) -> PaymentRunner:
        """A new runner on the journal: what a restarted daemon does (recover, then take sales)."""
        runner = PaymentRunner(self.journal, self.gateway, FAST)
        runner.subscribe(self._command)
        runner.recover()
        runner.wait_recovered(timeout=60)
        self.restarts += 1
        return runner

    def restart(self) -> None:
        """The runner stopped itself (a commit failed: nothing more may be sent): start again."""
        self.runner.stop()
        self.runner = self._start_runner()

    def _settled(self, wait: Any, item_id: int, settled: frozenset[Any]) -> Any:
        deadline = time.monotonic() + 60
        while True:
            record = wait(item_id, timeout=0.5)
            if record is not None and record.state in settled:
                return record
            if not self.runner.journal_ok:
                return record   # the journal cannot record: the item waits, resumed when it can
            if self.runner.stopping or time.monotonic() > deadline:
                self.restart()
                return wait(item_id, timeout=60)

    def _command(self, command: Any) -> None:
        if isinstance(command, PrintReceipt):
            self.receipts.print_outcome(command.sale_id, command.refund_id)

    def close(self) -> None:
        self.runner.stop()
        self.queue.stop()
        self.journal.close()
        self.gateway.close()
        self.proxy.stop()
        self.server.stop()
        logging.getLogger().removeHandler(self._log_handler)

    # ------------------------------------------------------------ faults

    def network_fault(self, fault: str | None = None, at: int | None = None) -> None:
        """The next exchanges pass, then one gets the fault."""
        fault = fault or self.rng.choice(NETWORK_FAULTS)
        at = self.rng.randrange(3) if at is None else at
        self.proxy.script(["pass"] * at + [fault])
        self.figures.faults[f"network: {fault}"] += 1

    def printer_away(self) -> None:
        self.printer.online = False
        self.figures.faults["printer away"] += 1

    # ------------------------------------------------------------ work

    def sale(self, scenario: str = "00", amount: int = 1000) -> SaleState | None:
        if scenario != "00":
            self.figures.faults[f"gateway: scenario {scenario}"] += 1
        code = make_code(scenario)
        self.codes.append(code)
        newest = self._newest_sale()
        try:
            sale_id = self.runner.start_sale(Money(amount, "SGD"), code, self.runner.clock.now(), "soak")
        except SaleRefused as exc:
            self.figures.refusals[exc.refusal.reason] += 1
            if exc.refusal.reason == "busy" and self.figures.refusals["busy"] == 1:
                active = self.runner.engine.active_sale()
                print("BUSY", active, file=sys.stderr)
            if exc.refusal.reason in ("journal", "recovering"):
                # "Wait a moment and scan again": a moment, not the next sale at once (a burst of refused
                # sales while the runner rebuilds itself would leave the soak with too few sales).
                time.sleep(0.05)
            return None
        except UserError:   # the journal could not record: nothing was sent
            if self._newest_sale() == newest:
                self.figures.refused_sales += 1
                return None
            # The sale was committed, then a later commit failed: it is in the journal (its pay never
            # left) and recovery settles it, so it is a sale of the table like any other.
            self.figures.created_then_failed += 1
            self.figures.sales += 1
            return None
        self.figures.sales += 1
        record = self._settled(self.runner.wait, sale_id, SALE_SETTLED_FOR_CASHIER)
        if not self.printer.online:
            self.printer.online = True
        state = record.state if record else None
        if state is SaleState.PAID:
            self._paid.append(sale_id)
        return state

    def _newest_sale(self) -> int:
        return int(self.journal.db.value("SELECT COALESCE(MAX(sale_id), 0) FROM sales") or 0)

    def refund(self) -> RefundState | None:
        if not self._paid:
            return None
        sale_id = self._paid.pop(self.rng.randrange(len(self._paid)))
        try:
            refund_id = self.runner.refund(sale_id, Money(100, "SGD"), "soak")
        except UserError:   # stopping after a failed commit, or the journal is full
            self.restart()
            return None
        self.figures.refunds += 1
        record = self._settled(self.runner.wait_refund, refund_id, REFUND_SETTLED_FOR_MANAGER)
        return record.state if record else None

    def journal_full_sale(self) -> None:
        """Disk full: the journal may not grow. No sale starts; nothing is sent."""
        self.figures.faults["storage: journal full"] += 1
        db = self.journal.db
        pages = db.value("PRAGMA page_count")
        db.write(f"PRAGMA max_page_count = {int(pages)}")
        before = len(self.server.ledger.payments(as_datetime(time.time())))
        try:
            for _ in range(3):   # fill the last free pages: then every insert fails
                self.sale()
        finally:
            db.write("PRAGMA max_page_count = 1073741823")
        deadline = time.monotonic() + 30
        while not self.runner.journal_ok and time.monotonic() < deadline:
            time.sleep(0.05)   # the runner rebuilds itself from the journal once it records again
        assert len(self.server.ledger.payments(as_datetime(time.time()))) >= before

    # ------------------------------------------------------------ the comparison

    def secrets_left(self) -> list[str]:
        """Full payment codes, private key lines and answer signatures found in the log, the journal
        files (with their free pages) or the printed paper."""
        places = {"log": self.log.getvalue().encode(), "paper": b"".join(self.printer.jobs)}
        for path in self.folder.glob("journal.db*"):
            places[path.name] = path.read_bytes()
        codes = {c.encode() for c in self.codes}
        needles = []
        for name in (MERCHANT_PRIVATE, ALIPAY_PRIVATE):
            needles += [(f"a line of {name}", line.encode()) for line in _key_lines(self.keys / name)[1:3]]
        needles += [("a signature field", b'"signature"')]
        found = [f"{what} in {where}" for what, needle in needles for where, data in places.items()
                 if needle in data]
        for where, data in places.items():   # every run of 16+ digits, looked up among the codes used
            found += [f"payment code {run[i + 14:i + 18].decode()} in {where}"
                      for run in set(re.findall(rb"\d{18,}", data)) for i in range(len(run) - 17)
                      if run[i:i + 18] in codes]
        return found

    def settle_and_compare(self, timeout: float = 120.0) -> Figures:
        f = self.figures
        self.printer.online = True
        t0 = time.monotonic()
        idle = self.runner.wait_idle(timeout=timeout)
        print(f"  settled: idle={idle} after {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + timeout
        jobs = JournalPrintJobs(self.journal)
        # Receipts are queued by the runner's notifier thread and printed by the queue's: let both finish.
        settle_by = min(deadline, time.monotonic() + 15)
        while (jobs.pending() or missing_receipts(self.journal, 0)) and time.monotonic() < settle_by:
            time.sleep(0.05)
        now = as_datetime(datetime.now().astimezone())
        sales = self.journal.list_sales()
        mine = {p.merchant_trans_id: p for p in self.server.ledger.payments(now)
                if f"-{self.journal.install_id}-" in p.merchant_trans_id}
        by_mtid = {s.merchant_trans_id: s for s in sales}
        for mtid in mine:
            if mtid not in by_mtid:
                f.lost_sales += 1
                f.discrepancies.append(f"{mtid}: in the ledger, not in the journal")
        refunds = self.journal.list_refunds()
        if len(sales) != f.sales:   # the table's "by state" counts the journal: it must add up to "sales"
            f.discrepancies.append(f"the journal holds {len(sales)} sales, the soak counted {f.sales}")
        for s in sales:
            f.states[s.state.value] += 1
            p = mine.get(s.merchant_trans_id)
            charged = p is not None and p.status == "SUCCESS"
            if s.state in (SaleState.MANUAL_REVIEW, SaleState.PAID_LATE):   # the manager settles these
                f.manager_items += 1
                continue
            if (s.state is SaleState.PAID) != charged:
                f.discrepancies.append(f"{s.merchant_trans_id}: journal {s.state.value}, ledger "
                                       f"{p.status if p else 'none'}")
                if charged:
                    f.lost_sales += 1
            if s.state is SaleState.PAID and (jobs.job(f"sale:{s.sale_id}") or _NO_JOB).state != "done":
                f.lost_receipts += 1
                f.receipts_missing.append(f"sale:{s.sale_id}")
        ledger_refunds = Counter(r.merchant_refund_id for r in self.server.ledger.refunds())
        f.double_charges += sum(n - 1 for n in ledger_refunds.values() if n > 1)
        for p in mine.values():
            if p.refunded > p.amount.minor:
                f.double_charges += 1
        for r in refunds:
            in_ledger = ledger_refunds.get(r.merchant_refund_id, 0) > 0
            if r.state is RefundState.REFUND_PENDING:
                f.manager_items += 1
                continue
            if (r.state is RefundState.REFUNDED) != in_ledger:
                f.discrepancies.append(f"{r.merchant_refund_id}: journal {r.state.value}, ledger "
                                       f"{'refunded' if in_ledger else 'none'}")
            if r.state is RefundState.REFUNDED and (jobs.job(f"refund:{r.refund_id}") or _NO_JOB).state != "done":
                f.lost_receipts += 1
                f.receipts_missing.append(f"refund:{r.refund_id}")
        f.integrity = self.journal.integrity_check()
        f.secrets_found = self.secrets_left()
        f.restarts = self.restarts
        return f


def _key_lines(pem: Path) -> list[str]:
    """The base64 lines of a private key file: any of them on disk or paper is key material."""
    return [line for line in pem.read_text().splitlines() if line and not line.startswith("-----")]


@dataclass(frozen=True)
class _NoJob:
    state: str = "missing"


_NO_JOB = _NoJob()


def run(folder: Path, *, sales: int, refunds: int, fault_rate: float, seed: int = 1,
        progress: bool = False) -> Figures:
    started = time.monotonic()
    rig = FaultRig(folder, seed=seed)
    rng = rig.rng
    try:
        refund_every = max(1, sales // max(refunds, 1))
        done_refunds = 0
        for i in range(sales):
            if rng.random() < fault_rate:
                kind = rng.choice(["network", "network", "gateway", "printer", "storage"])
                if kind == "network":
                    rig.network_fault()
                elif kind == "printer":
                    rig.printer_away()
                elif kind == "storage":
                    rig.journal_full_sale()
                    continue
                rig.sale(rng.choice(GATEWAY_FAULTS) if kind == "gateway" else "00")
            else:
                rig.sale()
            if done_refunds < refunds and (i + 1) % refund_every == 0:
                if rng.random() < fault_rate:
                    rig.network_fault()
                if rig.refund() is not None:
                    done_refunds += 1
            if progress and (i + 1) % 1000 == 0:
                print(f"  {i + 1} sales, {done_refunds} refunds, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
        while done_refunds < refunds and rig.refund() is not None:   # refunds lost to faults: made up
            done_refunds += 1
        figures = rig.settle_and_compare()
    finally:
        rig.close()
    figures.wall_time = time.monotonic() - started
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=10000, help="sales through the payment runner")
    parser.add_argument("--refunds", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--daemon-sales", type=int, default=0,
                        help="then this many sales through `pos run` as a process (tests/daemon_soak.py)")
    parser.add_argument("--daemon-refunds", type=int, default=0)
    parser.add_argument("--kill-rate", type=float, default=0.05,
                        help="share of the daemon's sales and refunds during which it is SIGKILLed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    columns: list[tuple[str, Figures]] = []
    if args.sales > 0:
        with tempfile.TemporaryDirectory(prefix="pos-soak-") as tmp:
            columns.append(("through the payment runner", run(
                Path(tmp), sales=args.sales, refunds=args.refunds, fault_rate=args.fault_rate,
                seed=args.seed, progress=True)))
    if args.daemon_sales > 0:
        from tests.daemon_soak import run_daemon
        columns.append(("through the daemon (`pos run`)", run_daemon(
            sales=args.daemon_sales, refunds=args.daemon_refunds, fault_rate=args.fault_rate,
            kill_rate=args.kill_rate, seed=args.seed, progress=True)))
    print(table(columns))
    bad = False
    for _, figures in columns:
        for line in figures.discrepancies[:20] + [f"receipt missing: {r}" for r in figures.receipts_missing[:20]]:
            print("discrepancy:", line)
        for line in figures.secrets_found[:20]:
            print("secret left:", line)
        bad = bad or bool(figures.discrepancies or figures.double_charges or figures.lost_sales
                          or figures.lost_receipts or figures.secrets_found or figures.integrity != "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
