"""The soak through the real daemon: `pos run` as a process (pos.demo.stage.Stage: the sandbox,
pty twins of the scanner and displays, a network printer twin), with a fault proxy between the
daemon and the sandbox, and the daemon SIGKILLed at random moments (during a sale, a refund,
a print, and during the recovery of a restart), restarted, and driven on.

    python -m tests.soak --daemon-sales 300 --daemon-refunds 30 --kill-rate 0.05

Sales are started over the till interface and paid with a code typed into the scanner pty;
refunds are sent over the till interface with an Idempotency-Key, the same key again after a
kill. Other faults, at --fault-rate per sale: the network (the fault proxy), the gateway
(sandbox scenarios) and the printer (away for a while, or pulled part way through a receipt).
At the end every sale and refund in the daemon's journal is compared with the sandbox's
ledger and the paper: 0 lost money, 0 lost receipts, 0 doubled. The state folder, the daemon's
log, the paper and both displays are grepped for full payment codes, private key lines,
answer signatures and the till's tokens.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from pos.core.records import RefundState, SaleState
from pos.demo.stage import Stage, _dump_toml
from pos.journal.journal import Journal, journal_path
from pos.sandbox.ledger import as_datetime
from pos.sandbox.scenarios import SandboxOptions, make_code
from tests.fault_proxy import FAULTS, FaultProxy
from tests.soak import Figures

__all__ = ["DaemonSoak", "run_daemon", "stage_secrets"]

NETWORK_FAULTS = [f for f in FAULTS if f != "pass"]
# Gateway scenarios that settle within the daemon's short schedule (README's scenario table).
GATEWAY_FAULTS = ["01", "02", "04", "10", "11", "12", "13", "14", "15", "16", "17", "18", "99"]

# Seed 003's schedule, about 20x shorter, so a soak of hundreds of sales takes minutes.
PAYMENT = {"query_first_delay": 0.05, "first_query_after": 0.5, "query_interval_min": 0.1,
           "query_interval_max": 0.15, "query_deadline": 1.5, "cancel_interval": 0.1, "refund_interval": 0.1,
           "background_interval": 0.5}
# Where a kill lands: right after the daemon logs one of these (or at a random time).
SALE_MOMENTS = ["sale waiting for scan", "scan accepted", "offline.pay ", "payQuery", "payCancel",
                "receipt queued job=sale", "receipt printed job=sale"]
REFUND_MOMENTS = ["refund started", "common.refund ", "receipt queued job=refund", "receipt printed job=refund"]
SANDBOX = SandboxOptions(wallet_confirm_after=0.3, slow_response=1.0, late_success_after=2.5, race_delay=0.3)


class ProxiedStage(Stage):
    """A Stage whose daemon reaches the sandbox through a fault proxy, with short gateway timeouts."""

    proxy: FaultProxy | None = None

    def _config_text(self, keys: Path) -> str:
        text = super()._config_text(keys)
        if self.sandbox is None:
            return text
        if self.proxy is None:
            self.proxy = FaultProxy(self.sandbox.url, delay=0.05, trickle_interval=0.05).start()
        config = tomllib.loads(text)
        config["gateway"].update(url=self.proxy.url, connect_timeout=0.5, read_timeout=0.5)
        return _dump_toml(config)

    def stop(self) -> None:
        super().stop()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None


class DaemonSoak:
    def __init__(self, *, seed: int = 1, fault_rate: float = 0.05, kill_rate: float = 0.05) -> None:
        self.rng = random.Random(seed)
        self.fault_rate, self.kill_rate = fault_rate, kill_rate
        self.figures = Figures()
        self.codes: list[str] = []
        self.paid: list[str] = []          # merchantTransIds of sales the till saw PAID
        self.told: dict[str, dict[str, Any]] = {}   # till sale id -> what the till was last told
        self._refund_keys = 0
        self.phase = "between sales"         # what the daemon is doing, for the kill counts
        self._op_done_at: float | None = None  # when the sale or refund a kill is armed for was answered
        self._timer: threading.Thread | threading.Timer | None = None
        self.stage = ProxiedStage(payment=PAYMENT, sandbox_options=SANDBOX, max_wait=30.0)
        self.stage.start()
        # Both displays are read all along, as a screen would: a pty nobody reads fills up and the
        # daemon's display writes time out. What they were sent is kept for the secret grep.
        self.display_bytes = bytearray()
        self._reading = True
        self._reader = threading.Thread(target=self._read_displays, name="displays", daemon=True)
        self._reader.start()
        self.till_token = self.stage.till_token_path().read_text().strip()
        self.manager_token = self.stage.manager_token_path().read_text().strip()

    def _read_displays(self) -> None:
        while self._reading:
            for display in (self.stage.cashier, self.stage.customer):
                with contextlib.suppress(OSError):
                    self.display_bytes += display.read(0.05)

    # ------------------------------------------------------------ the daemon's life

    def _kill(self, proc: subprocess.Popen[bytes], when: str | None = None) -> None:
        when = when or self.phase   # read before the kill: the main thread moves on once the daemon dies
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()                      # dead before anyone looks: poll() says so from now on
            self.figures.kills += 1
            self.figures.faults[f"process: SIGKILL {when}"] += 1

    def arm_kill(self, moments: list[str]) -> None:
        """Maybe (kill_rate) SIGKILL the daemon at one moment of what comes: right after it logs one
        of `moments` (a step of the sale or refund), or at a random time within the next 0.3 s."""
        if self.rng.random() >= self.kill_rate or self.stage.proc is None:
            return
        moment = self.rng.choice([*moments, "a random time"])
        extra = self.rng.uniform(0.0, 0.3 if moment == "a random time" else 0.005)
        log = self.stage.dir / "daemon.log"
        self._op_done_at = None
        self._timer = threading.Thread(target=self._kill_at, args=(self.stage.proc, log, log.stat().st_size,
                                                                   moment, extra), daemon=True)
        self._timer.start()

    def _kill_at(self, proc: subprocess.Popen[bytes], log: Path, offset: int, moment: str, extra: float) -> None:
        deadline = time.monotonic() + 5.0
        if moment != "a random time":
            with log.open("rb") as fh:
                fh.seek(offset)
                seen = b""
                while moment.encode() not in seen:
                    done = self._op_done_at
                    if (time.monotonic() > deadline or proc.poll() is not None
                            or (done is not None and time.monotonic() > done + 0.3)):
                        return               # the moment never came (a declined sale prints nothing)
                    seen += fh.read()
                    time.sleep(0.001)
        time.sleep(extra)
        self._kill(proc, f"after '{moment}'" if moment != "a random time" else f"at a random time ({self.phase})")

    def after_kill(self) -> None:
        """Wait for an armed kill to fire; if the daemon died, start it again (and maybe kill it
        again while it recovers)."""
        self._op_done_at = time.monotonic()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        proc = self.stage.proc
        while proc is not None and proc.poll() is not None:
            self.stage.last_exit = proc.wait()
            self.phase = "while starting and recovering"
            self.stage._spawn()
            proc = self.stage.proc
            if self.rng.random() < 0.2:      # a kill during start-up and recovery
                self._timer = threading.Timer(self.rng.uniform(0.1, 1.5), self._kill,
                                              args=(proc, "while starting and recovering"))
                self._timer.start()
            with contextlib.suppress(RuntimeError):   # killed while starting: the loop starts it again
                self.stage.wait_ready(timeout=60)
            if self._timer is not None:
                self._timer.join()
                self._timer = None
            self.phase = "between sales"
            self.figures.restarts += 1

    # ------------------------------------------------------------ the till

    def _till(self, method: str, path: str, body: Any = None, *, manager: bool = False,
              headers: dict[str, str] | None = None, timeout: float = 40.0) -> requests.Response | None:
        token = self.manager_token if manager else self.till_token
        try:
            return requests.request(method, self.stage.url + path, json=body, timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}", **(headers or {})})
        except requests.RequestException:
            return None                      # the daemon is down (killed): the caller retries after restart

    def _start_sale(self, amount: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self._till("POST", "/v1/sales", {"amount": amount})
            if r is not None and r.status_code == 201:
                return dict(r.json())
            if r is not None and r.status_code not in (409, 503):
                raise RuntimeError(f"POST /v1/sales answered {r.status_code}: {r.text}")
            if r is not None:
                self.figures.refusals[f"{r.status_code} {r.json().get('title', '')}"] += 1
            self.after_kill()
            time.sleep(0.05)
        raise RuntimeError("no sale could be started for 60 s")

    def sale(self) -> None:
        scenario = "00"
        printer = self.stage.printer
        if self.rng.random() < self.fault_rate:
            kind = self.rng.choice(["gateway", "gateway", "network", "network", "printer"])
            if kind == "gateway":
                scenario = self.rng.choice(GATEWAY_FAULTS)
                self.figures.faults[f"gateway: scenario {scenario}"] += 1
            elif kind == "network":
                assert self.stage.proxy is not None
                fault = self.rng.choice(NETWORK_FAULTS)
                self.stage.proxy.script(["pass"] * self.rng.randrange(3) + [fault])
                self.figures.faults[f"network: {fault}"] += 1
            elif self.rng.random() < 0.5:
                printer.switch_off()
                self.figures.faults["printer away"] += 1
            else:   # the printer is pulled part way through the receipt (switched on again below)
                printer.fail_after(self.rng.randrange(10, 600))
                self.figures.faults["printer pulled mid-receipt"] += 1
        self.phase = "during a sale"
        self.arm_kill(SALE_MOMENTS)
        view = self._start_sale(f"{self.rng.randrange(100, 5000) / 100:.2f}")
        code = make_code(scenario)
        self.codes.append(code)
        self.stage.scan(code)
        self.figures.sales += 1
        r = self._till("GET", f"/v1/sales/{view['id']}?wait=20")
        self.phase = "between sales"
        self.after_kill()
        if r is None:   # the daemon died meanwhile: the till asks again after the restart
            r = self._till("GET", f"/v1/sales/{view['id']}?wait=20")
        if r is not None and r.status_code == 200:
            self.told[view["id"]] = dict(r.json())
            if r.json().get("state") == "PAID":
                self.paid.append(r.json()["merchantTransId"])
        if not printer.on:                   # back after a while: the queued receipt prints then
            time.sleep(self.rng.uniform(0.0, 0.5))
            printer.switch_on()

    def refund(self) -> None:
        if not self.paid:
            return
        mtid = self.paid.pop(self.rng.randrange(len(self.paid)))
        self._refund_keys += 1
        key = {"Idempotency-Key": f"soak-{self._refund_keys}"}
        self.phase = "during a refund"
        self.arm_kill(REFUND_MOMENTS)
        for _ in range(20):        # the same request and key again until the daemon answers it
            r = self._till("POST", "/v1/refunds", {"saleId": mtid, "amount": "1.00", "reason": "soak"},
                           manager=True, headers=key)
            if r is not None and r.status_code in (200, 201):
                self.figures.refunds += 1
                break
            if r is not None and r.status_code not in (409, 503):
                self.figures.refusals[f"refund {r.status_code} {r.json().get('title', '')}"] += 1
                break
            self.after_kill()
            self.phase = "during a refund"
            time.sleep(0.1)
        self.phase = "between sales"
        self.after_kill()

    # ------------------------------------------------------------ the comparison

    def quiesce(self, timeout: float = 90.0) -> None:
        """Until nothing is open but what waits for a manager, and the printer has stopped printing."""
        self.after_kill()
        self.stage.printer.switch_on()
        deadline = time.monotonic() + timeout
        last, steady = -1, 0.0
        while time.monotonic() < deadline:
            r = self._till("GET", "/v1/health")
            jobs = len(self.stage.printer.jobs)
            state = (r.json().get("open_items") if r is not None and r.status_code == 200 else None, jobs)
            if state == last:
                steady += 0.5
                if steady >= 3.0:
                    return
            else:
                last, steady = state, 0.0   # type: ignore[assignment]
            time.sleep(0.5)

    def compare(self) -> Figures:
        f = self.figures
        stage = self.stage
        proc = stage.proc
        if proc is not None and proc.poll() is None:      # a clean stop, then the journal is read
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        texts = stage.printer.texts()
        journal = Journal.open(journal_path(stage.dir / "state"))
        try:
            ledger = stage.sandbox.ledger if stage.sandbox is not None else None
            assert ledger is not None
            now = as_datetime(datetime.now().astimezone())
            sales = journal.list_sales()
            mine = {p.merchant_trans_id: p for p in ledger.payments(now)
                    if f"-{journal.install_id}-" in p.merchant_trans_id}
            by_mtid = {s.merchant_trans_id: s for s in sales}
            for mtid in mine:
                if mtid not in by_mtid:
                    f.lost_sales += 1
                    f.discrepancies.append(f"{mtid}: in the ledger, not in the journal")
            for s in sales:
                f.states[s.state.value] += 1
                p = mine.get(s.merchant_trans_id)
                charged = p is not None and p.status == "SUCCESS"
                if s.state is SaleState.MANUAL_REVIEW:
                    f.manager_items += 1
                    continue
                if s.state is SaleState.REVERSED:      # charged after "No goods", then given back in full
                    if not (p is not None and p.refunded == p.amount.minor):
                        f.discrepancies.append(f"{s.merchant_trans_id}: REVERSED, ledger {p}")
                    continue
                if (s.state is SaleState.PAID) != charged:
                    f.discrepancies.append(f"{s.merchant_trans_id}: journal {s.state.value}, ledger "
                                           f"{p.status if p else 'none'}")
                    if charged:
                        f.lost_sales += 1
                if s.state is SaleState.PAID and not any(f"POS:{s.merchant_trans_id}]" in t for t in texts):
                    f.lost_receipts += 1
                    f.receipts_missing.append(s.merchant_trans_id)
            # What the till was told agrees with the money: never PAID uncharged, never "no money" charged.
            for till_id, view in self.told.items():
                p = mine.get(str(view.get("merchantTransId")))
                charged = p is not None and p.status == "SUCCESS"
                if (view["state"] == "PAID" and not charged) or (view["state"] in ("DECLINED", "CANCELLED")
                                                                 and charged):
                    f.discrepancies.append(f"till sale {till_id}: the till was told {view['state']}, "
                                           f"ledger {p.status if p else 'none'}")
            ledger_refunds = Counter(r.merchant_refund_id for r in ledger.refunds())
            f.double_charges += sum(n - 1 for n in ledger_refunds.values() if n > 1)
            f.double_charges += sum(1 for p in mine.values() if p.refunded > p.amount.minor)
            for r in journal.list_refunds():
                in_ledger = ledger_refunds.get(r.merchant_refund_id, 0) > 0
                if r.state is RefundState.REFUND_PENDING:
                    f.manager_items += 1
                    continue
                if (r.state is RefundState.REFUNDED) != in_ledger:
                    f.discrepancies.append(f"{r.merchant_refund_id}: journal {r.state.value}, ledger "
                                           f"{'refunded' if in_ledger else 'none'}")
                if r.state is RefundState.REFUNDED and not any(r.merchant_refund_id in t for t in texts):
                    f.lost_receipts += 1
                    f.receipts_missing.append(r.merchant_refund_id)
            f.refunds = len(journal.list_refunds())
            f.not_started = f.sales - len(sales)
            f.integrity = journal.integrity_check()
        finally:
            journal.close()
        # The same receipt twice on paper: the daemon died after printing and before recording it.
        f.reprinted = sum(n - 1 for n in Counter(texts).values() if n > 1)
        f.secrets_found = self.secrets_left()
        return f

    def secrets_left(self) -> list[str]:
        return stage_secrets(self.stage, self.codes, {"displays": bytes(self.display_bytes)})

    def close(self) -> None:
        if isinstance(self._timer, threading.Timer):
            self._timer.cancel()
        self._reading = False
        self._reader.join(timeout=5)
        self.stage.stop()


def stage_secrets(stage: Stage, codes: list[str], more: dict[str, bytes]) -> list[str]:
    """Full payment codes, the till's tokens, private key lines and answer signatures found in a
    stage's state folder (journal and WAL included, free pages too), the daemon's log, the paper
    and `more` (what the displays were sent, the narration...)."""
    tokens = {stage.till_token_path(), stage.manager_token_path()}
    places = {str(path.relative_to(stage.dir)): path.read_bytes() for path in stage.dir.rglob("*")
              if path.is_file() and "keys" not in path.parts and path not in tokens}
    places["paper"] = b"".join(stage.printer.jobs)
    places.update(more)
    key_lines = [line for pem in (stage.dir / "keys").glob("*private*.pem")
                 for line in pem.read_text().splitlines()[1:3]]
    needles = [("payment code", c) for c in codes]
    needles += [("token", path.read_text().strip()) for path in tokens if path.exists()]
    needles += [("private key line", line) for line in key_lines] + [("signature", '"signature"')]
    return [f"{what} ...{needle[-4:]} in {where}" for what, needle in needles
            for where, data in places.items() if needle.encode() in data]


def run_daemon(*, sales: int, refunds: int, fault_rate: float, kill_rate: float, seed: int = 1,
               progress: bool = False) -> Figures:
    started = time.monotonic()
    soak = DaemonSoak(seed=seed, fault_rate=fault_rate, kill_rate=kill_rate)
    try:
        refund_every = max(1, sales // max(refunds, 1))
        for i in range(sales):
            soak.sale()
            if (i + 1) % refund_every == 0 and soak.figures.refunds < refunds:
                soak.refund()
            if progress and (i + 1) % 100 == 0:
                print(f"  daemon: {i + 1} sales, {soak.figures.refunds} refunds, {soak.figures.kills} kills, "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        while soak.figures.refunds < refunds and soak.paid:
            soak.refund()
        soak.quiesce()
        figures = soak.compare()
    finally:
        soak.close()
    figures.wall_time = time.monotonic() - started
    return figures
