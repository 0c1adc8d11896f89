"""Crash test: real sales over HTTP in a subprocess, SIGKILLed at every commit in turn.

tests/crash_driver.py runs Journal + PaymentRunner + OfflineGateway against the
sandbox server of this process. POS_CRASH_AT=before:N / after:N (pos/journal.py)
kills it at its N-th commit; a second run recovers. Every sale must then end
where the ledger says, none lost, none charged twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pos.config import Config
from pos.core.records import REFUND_SETTLED_FOR_MANAGER, SALE_SETTLED_FOR_CASHIER, RefundState, SaleState
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs
from pos.sandbox.ledger import as_datetime
from pos.sandbox.server import SandboxServer
from pos.terminal.receipts import outcome_receipt
from tests.sandbox_fixtures import *  # noqa: F403  (sandbox_server, sandbox_keys, ...)
from tests.sandbox_fixtures import SandboxKeys, make_code

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["00", "01", "18", "16"]   # paid; declined; unknown then cancelled; bad signature then paid
pytestmark = pytest.mark.slow


def driver(journal: Path, server: SandboxServer, keys: SandboxKeys, codes: list[str],
           crash: str | None = None, refund: bool = False) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POS_CRASH_AT", "POS_CRASH_REFUND")}
    if crash:
        env["POS_CRASH_AT"] = crash
    if refund:
        env["POS_CRASH_REFUND"] = "1"
    return subprocess.Popen([sys.executable, "-m", "tests.crash_driver", str(journal), server.url,
                             str(keys.folder), *codes], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_against_ledger(journal_file: Path, server: SandboxServer, clock_now: object) -> int:
    journal = Journal.open(journal_file)
    try:
        at = as_datetime(clock_now())  # type: ignore[operator]
        sales = journal.list_sales()
        mine = {p.merchant_trans_id: p for p in server.ledger.payments(at)
                if f"-{journal.install_id}-" in p.merchant_trans_id}
        # None lost: every payment the gateway knows of has its sale in the journal.
        assert set(mine) <= {s.merchant_trans_id for s in sales}
        for s in sales:
            assert s.state in SALE_SETTLED_FOR_CASHIER, s
            p = mine.get(s.merchant_trans_id)
            if s.state is not SaleState.MANUAL_REVIEW:
                assert (s.state is SaleState.PAID) == (p is not None and p.status == "SUCCESS"), (s, p)
        # Refunds: made once or not at all, as the journal says (a pending one is left for a manager).
        ledger_refunds = Counter(r.merchant_refund_id for r in server.ledger.refunds())
        assert all(n == 1 for n in ledger_refunds.values())
        for r in journal.list_refunds():
            assert r.state in REFUND_SETTLED_FOR_MANAGER, r
            if r.state is not RefundState.REFUND_PENDING:
                assert (r.state is RefundState.REFUNDED) == (r.merchant_refund_id in ledger_refunds), r
        assert journal.integrity_check() == "ok"
        return len(sales)
    finally:
        journal.close()


def check_receipts_queued(journal_file: Path) -> None:
    """Every PAID sale and REFUNDED refund has its receipt's print job, whatever commit the
    process died at: the job is committed in the very transaction of the outcome. The job holds
    its key alone; the receipt the print queue builds from it is that sale's or refund's."""
    journal = Journal.open(journal_file)
    try:
        jobs = JournalPrintJobs(journal)
        for sale in journal.list_sales():
            if sale.state is SaleState.PAID:
                assert jobs.job(f"sale:{sale.sale_id}") is not None, sale
                receipt = outcome_receipt(Config(), journal, f"sale:{sale.sale_id}")
                assert (receipt.merchant_trans_id, receipt.amount.minor) == (sale.merchant_trans_id,
                                                                             sale.amount.minor)
        for refund in journal.list_refunds():
            if refund.state is RefundState.REFUNDED:
                assert jobs.job(f"refund:{refund.refund_id}") is not None, refund
                receipt = outcome_receipt(Config(), journal, f"refund:{refund.refund_id}")
                assert receipt.amount.minor == refund.amount.minor
                assert refund.merchant_refund_id in [line.merchant_refund_id for line in receipt.refunds]
    finally:
        journal.close()


def test_kill_at_every_commit_then_recover(tmp_path: Path, sandbox_server: SandboxServer,
                                           sandbox_keys: SandboxKeys, sandbox_clock: object) -> None:
    crashed = 0
    for n in range(1, 60):
        for point in ("after", "before") if n <= 3 else ("after",):
            journal = tmp_path / f"{point}-{n}" / "journal.db"
            codes = [make_code(s) for s in SCENARIOS]
            first = driver(journal, sandbox_server, sandbox_keys, codes, crash=f"{point}:{n}")
            out, err = first.communicate(timeout=60)
            if first.returncode == 0:
                assert point == "after" and n > 1
                break                                   # the run had fewer than n commits
            assert first.returncode == -signal.SIGKILL, err
            crashed += 1
            check_receipts_queued(journal)
            second = driver(journal, sandbox_server, sandbox_keys, [])
            _, err2 = second.communicate(timeout=60)
            assert second.returncode == 0, err2
            check_against_ledger(journal, sandbox_server, sandbox_clock)
            check_receipts_queued(journal)
        else:
            continue
        break
    assert crashed >= 10                               # every commit point of four sales was hit


def test_kill_at_random_moments_then_recover(tmp_path: Path, sandbox_server: SandboxServer,
                                             sandbox_keys: SandboxKeys, sandbox_clock: object) -> None:
    rng = random.Random(7)
    for i in range(3):
        journal = tmp_path / f"random-{i}" / "journal.db"
        proc = driver(journal, sandbox_server, sandbox_keys, [make_code(s) for s in SCENARIOS])
        time.sleep(rng.uniform(0.3, 1.5))              # imports take most of the first 0.5 s
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        again = driver(journal, sandbox_server, sandbox_keys, [make_code("00")])
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert out.strip().endswith("PAID")            # a new sale is taken after recovery
        check_against_ledger(journal, sandbox_server, sandbox_clock)


def test_kill_at_every_commit_of_a_sale_and_its_refund(tmp_path: Path, sandbox_server: SandboxServer,
                                                        sandbox_keys: SandboxKeys, sandbox_clock: object) -> None:
    crashed = 0
    for n in range(1, 40):
        journal = tmp_path / f"refund-after-{n}" / "journal.db"
        first = driver(journal, sandbox_server, sandbox_keys, [make_code("00")], crash=f"after:{n}", refund=True)
        _, err = first.communicate(timeout=60)
        if first.returncode == 0:
            break                                       # the run had fewer than n commits
        assert first.returncode == -signal.SIGKILL, err
        crashed += 1
        check_receipts_queued(journal)
        second = driver(journal, sandbox_server, sandbox_keys, [])
        _, err2 = second.communicate(timeout=60)
        assert second.returncode == 0, err2
        check_against_ledger(journal, sandbox_server, sandbox_clock)
        check_receipts_queued(journal)
    assert crashed >= 4                                # the sale's and the refund's commits were hit
