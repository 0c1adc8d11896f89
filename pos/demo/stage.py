"""`pos demo`: the whole product on one machine, with no account and no hardware.

A `Stage` sets up what a store would have, all local and real:
  - the sandbox gateway on 127.0.0.1 (real HTTP, real signatures) with fresh keys,
  - pty twins of the scanner, the customer display, the cashier display and the
    keypad (the daemon drives them through pyserial exactly as real devices),
  - a network receipt printer twin on 127.0.0.1 (python-escpos output),
  - the daemon itself, `pos run`, as a separate process,
and the till's side of the HTTP interface. The demo plays seven scenarios
and narrates what the cashier, the customer and the manager see; the
end-to-end tests use the same Stage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from devices.emulated import EmulatedDisplay, EmulatedKeypad, EmulatedNetworkPrinter, EmulatedScanner
from devices.keypad import Key
from devices.messages import text_width
from devices.receipt_code import receipt_code
from pos.config import _toml_value
from pos.gateway.keys import ALIPAY_PRIVATE, MERCHANT_PUBLIC, generate_key_folder
from pos.gateway.signing import load_private_key, load_public_key
from pos.terminal.pin import hash_pin
from pos.sandbox.scenarios import SandboxOptions, make_code
from pos.sandbox.server import SandboxServer

__all__ = ["Stage", "play", "pad", "SCENARIO_CODES", "DEMO_PIN"]

REPO = Path(__file__).resolve().parents[2]
DEMO_PIN = "2468"
# The sandbox's test codes (README "Gateway and sandbox"): "28" + scenario + 14 digits.
SCENARIO_CODES = {
    "paid at once": "00", "insufficient balance": "01", "risk reject": "02", "expired code": "03",
    "confirm in the wallet": "10", "charged but the answer is lost": "11", "never created": "12",
    "query errors": "13", "cancel answers U first": "14", "cancel refused": "15",
    "bad response signature": "16", "success after the client gave up": "17", "never confirmed": "18",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dump_toml(data: dict[str, dict[str, Any]]) -> str:
    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        out.append("")
    return "\n".join(out)


class Stage:
    """Sandbox + device twins + `pos run`, in a temporary folder. Use as a context manager."""

    def __init__(self, *, base_config: Path | None = None, payment: dict[str, Any] | None = None,
                 sandbox_options: SandboxOptions | None = None, keep: bool = False,
                 daemon_env: dict[str, str] | None = None, max_wait: float = 60.0) -> None:
        self.max_wait = max_wait
        self.dir = Path(tempfile.mkdtemp(prefix="pos-demo-"))
        self.keep = keep
        self.base_config = base_config or REPO / "config" / "sandbox.toml"
        self.payment_overrides = payment or {}
        self.options = sandbox_options or SandboxOptions(wallet_confirm_after=2.0, slow_response=6.0,
                                                         late_success_after=30.0)
        self.daemon_env = daemon_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox: SandboxServer | None = None
        self._log: Any = None
        self.receipts_seen = 0

    # ------------------------------------------------------------ set-up

    def __enter__(self) -> "Stage":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        keys = self.dir / "keys"
        generate_key_folder(keys)
        self.sandbox = SandboxServer(merchant_public_key=load_public_key(keys / MERCHANT_PUBLIC),
                                     alipay_private_key=load_private_key(keys / ALIPAY_PRIVATE),
                                     options=self.options).start()
        devdir = self.dir / "dev"
        devdir.mkdir()
        self.scanner = EmulatedScanner("scanner", devdir)
        self.customer = EmulatedDisplay("customer-display", devdir)
        self.cashier = EmulatedDisplay("cashier-display", devdir)
        self.keypad = EmulatedKeypad("keypad", devdir)
        self.printer = EmulatedNetworkPrinter()
        self.ecr_port = _free_port()
        self.config_path = self.dir / "terminal.toml"
        self.config_path.write_text(self._config_text(keys))
        state = self.dir / "state"
        self.till_token = (state / "ecr.token")
        self.manager_token = (state / "ecr-manager.token")
        self._log = open(self.dir / "daemon.log", "ab")
        self._spawn()
        self.wait_ready()

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.daemon_env}
        self.proc = subprocess.Popen([sys.executable, "-m", "pos", "run", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=str(self.dir))

    def restart(self, *, kill: bool = False) -> None:
        """Stop the daemon (SIGTERM, or SIGKILL as a power cut would) and start it again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.last_exit = self.proc.wait(timeout=30)
        self._spawn()
        self.wait_ready()

    def _config_text(self, keys: Path) -> str:
        base = tomllib.loads(self.base_config.read_text())
        base.setdefault("terminal", {})["state_dir"] = str(self.dir / "state")
        gw = base.setdefault("gateway", {})
        gw.update(url=self.sandbox.url if self.sandbox else "", private_key=str(keys / "merchant_private.pem"),
                  merchant_public_key=str(keys / "merchant_public.pem"),
                  alipay_public_key=str(keys / "alipay_public.pem"), sandbox=True,
                  read_timeout=min(float(gw.get("read_timeout", 5.0)), 3.0))
        base.setdefault("payment", {}).update(self.payment_overrides)
        base["scanner"] = {"kind": "serial", "url": str(self.scanner.path), "dedupe_window": 0.0,
                           "reconnect_min": 0.1, "reconnect_max": 0.5}
        base["display"] = {"kind": "serial", "url": str(self.customer.path)}
        base["cashier_display"] = {"kind": "serial", "url": str(self.cashier.path)}
        base["keypad"] = {"kind": "serial", "url": str(self.keypad.path)}
        base["printer"] = {"kind": "network", "host": "127.0.0.1", "port": self.printer.port,
                           "retry_interval": 0.5}
        base["ecr"] = {"listen": f"127.0.0.1:{self.ecr_port}", "token_file": str(self.till_token_path()),
                       "manager_token_file": str(self.manager_token_path()), "max_wait": self.max_wait}
        base["manager"] = {"pin_hash": hash_pin(DEMO_PIN), "refund_limit": "1000"}
        return _dump_toml(base)

    def till_token_path(self) -> Path:
        return self.dir / "state" / "ecr.token"

    def manager_token_path(self) -> Path:
        return self.dir / "state" / "ecr-manager.token"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ecr_port}"

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pos run exited with {self.proc.returncode}:\n{self.daemon_log()}")
            try:
                if self.till_token_path().exists():
                    health = self.till("GET", "/v1/health").json()
                    if health.get("status") in ("ok", "degraded"):
                        return health
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"pos run did not become ready in {timeout} s:\n{self.daemon_log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for name in ("scanner", "customer", "cashier", "keypad", "printer"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def daemon_log(self) -> str:
        path = self.dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ the till and the devices

    def till(self, method: str, path: str, body: Any = None, *, manager: bool = False,
             token: str | None = None, timeout: float = 70.0) -> requests.Response:
        if token is None:
            token = (self.manager_token_path() if manager else self.till_token_path()).read_text().strip()
        return requests.request(method, self.url + path, json=body, timeout=timeout,
                                headers={"Authorization": f"Bearer {token}"})

    def start_sale(self, amount: str, **extra: Any) -> dict[str, Any]:
        r = self.till("POST", "/v1/sales", {"amount": amount, **extra})
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/sales answered {r.status_code}: {r.text}")
        return r.json()

    def wait_sale(self, sale_id: str, seconds: float = 30.0) -> dict[str, Any]:
        return self.till("GET", f"/v1/sales/{sale_id}?wait={seconds}").json()

    def scan(self, code: str) -> None:
        self.scanner.scan(code)

    def scan_receipt(self, merchant_trans_id: str) -> None:
        self.scanner.scan(receipt_code(merchant_trans_id))

    def press(self, *keys: Key) -> None:
        self.keypad.press(*keys)

    def type(self, text: str) -> None:
        self.keypad.type(text)

    def displays(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """(cashier lines, customer lines) as the two displays show them now."""
        return self.cashier.poll(0.2), self.customer.poll(0.2)

    def wait_display(self, predicate: Callable[[tuple[str, str]], bool], *, who: str = "cashier",
                     timeout: float = 20.0) -> tuple[str, str]:
        display = self.cashier if who == "cashier" else self.customer
        lines = display.wait_for(predicate, timeout=timeout)
        if not predicate(lines):
            raise AssertionError(f"the {who} display never showed what was expected; it shows {lines}")
        return lines

    def new_receipts(self, count: int = 1, timeout: float = 15.0) -> list[str]:
        """Wait for `count` more printed receipts and return them as text."""
        want = self.receipts_seen + count
        self.printer.wait_for_jobs(want, timeout=timeout)
        texts = self.printer.texts()
        fresh = texts[self.receipts_seen:want]
        self.receipts_seen = min(len(texts), want)
        return fresh

    def ledger(self) -> dict[str, Any]:
        assert self.sandbox is not None
        return requests.get(self.sandbox.url + "/sandbox/ledger", timeout=10).json()


# ================================================================ the narrated demo

def pad(text: str, columns: int = 20) -> str:
    """Pad to display columns (a CJK character takes two)."""
    return text + " " * max(0, columns - text_width(text))


def _box(title: str, lines: tuple[str, str]) -> str:
    return f"    {title:<9}|{pad(lines[0])}|\n    {'':<9}|{pad(lines[1])}|"


class _Narrator:
    def __init__(self, stage: Stage, out: Callable[[str], None]) -> None:
        self.stage, self.out = stage, out

    def say(self, text: str = "") -> None:
        self.out(text)

    def screens(self, note: str = "") -> None:
        cashier, customer = self.stage.displays()
        if note:
            self.out(f"  {note}")
        self.out(_box("cashier", cashier))
        self.out(_box("customer", customer))

    def receipt(self, text: str) -> None:
        width = max([42] + [len(line) for line in text.splitlines()])
        self.out("    ." + "-" * (width + 2) + ".")
        for line in text.splitlines():
            self.out(f"    | {line:<{width}} |")
        self.out("    '" + "-" * (width + 2) + "'")


def _wait_state(stage: Stage, sale_id: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sale = stage.till("GET", f"/v1/sales/{sale_id}").json()
        if sale["state"] in states or time.monotonic() > deadline:
            return sale
        time.sleep(0.1)


def _scenes(stage: Stage, n: "_Narrator", expect: Callable[[str, Any, Any], None]) -> None:
    """The seven scenarios; raises when the terminal does not do what the story says."""
    n.say(f"  daemon ready; till interface on {stage.url}; sandbox gateway on {stage.sandbox.url}")  # type: ignore[union-attr]
    n.screens()

    n.say("\n1. A sale paid at once")
    n.say("   The till sends 12.50; the cashier scans the customer's code.")
    sale = stage.start_sale("12.50", reference="till-0001", orderTitle="Flat white x2")
    stage.wait_display(lambda l: "Scan" in l[0])
    n.screens("the terminal asks for the code:")
    stage.scan(make_code("00"))
    paid = stage.wait_sale(sale["id"])
    n.say(f"   -> {paid['state']}  merchantTransId {paid['merchantTransId']}  acquirementId {paid['acquirementId']}")
    expect("sale 1", paid["state"], "PAID")
    n.screens()
    n.say("   The receipt (its QR code carries the merchantTransId, for refunds):")
    first_receipt = stage.new_receipts(1)
    n.receipt(first_receipt[0] if first_receipt else "(no receipt printed)")

    n.say("\n2. A decline: the customer's balance is not enough")
    sale = stage.start_sale("48.00", orderTitle="Groceries")
    stage.scan(make_code("01"))
    declined = stage.wait_sale(sale["id"])
    n.say(f"   -> {declined['state']}: cashier reads {declined['message']['cashier']}")
    expect("sale 2", declined["state"], "DECLINED")
    n.screens()

    n.say("\n3. The customer confirms in the wallet: unknown at first, then queries, then paid")
    sale = stage.start_sale("7.80", orderTitle="Cake")
    stage.scan(make_code("10"))
    stage.wait_display(lambda l: "Checking" in l[0], timeout=10)
    n.screens("while the answer is unknown:")
    confirmed = stage.wait_sale(sale["id"])
    expect("sale 3", confirmed["state"], "PAID")
    n.say(f"   -> {confirmed['state']} after the wallet confirmed")
    n.screens()
    stage.new_receipts(1)

    n.say("\n4. The customer never confirms: the terminal queries until its time limit, then cancels")
    sale = stage.start_sale("23.00", orderTitle="Lunch set")
    stage.scan(make_code("18"))
    stage.wait_display(lambda l: "Checking" in l[0], timeout=10)
    n.screens("checking:")
    stage.wait_display(lambda l: "Cancelling" in l[0] or "cancelled" in l[0].lower(), timeout=20)
    n.screens("past the query time limit the terminal sends payCancel:")
    cancelled = stage.wait_sale(sale["id"])
    expect("sale 4", cancelled["state"], "CANCELLED")
    n.say(f"   -> {cancelled['state']}: no money was taken")

    n.say("\n5. A partial refund by the manager, on the terminal's keypad with a PIN")
    n.say(f"   REFUND, PIN {DEMO_PIN}, scan the receipt of sale 1, type 5.00, ENTER")
    stage.press(Key.REFUND)
    stage.wait_display(lambda l: "PIN" in l[0].upper(), timeout=5)
    stage.type(DEMO_PIN)
    stage.press(Key.ENTER)
    stage.wait_display(lambda l: "receipt" in (l[0] + l[1]).lower() or "scan" in l[0].lower(), timeout=5)
    n.screens("PIN accepted:")
    stage.scan_receipt(paid["merchantTransId"])
    stage.wait_display(lambda l: "refund" in l[0].lower(), timeout=5)
    n.screens("the sale is found:")
    stage.type("5.00")
    stage.press(Key.ENTER)
    refunded = _wait_state_refund(stage, paid["id"])
    n.say(f"   -> refund {refunded}")
    expect("refund", refunded, "REFUNDED")
    n.screens()
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no receipt printed)")

    n.say("\n6. A reprint of sale 1 (REPRINT, PIN, scan the receipt)")
    stage.press(Key.REPRINT)
    stage.wait_display(lambda l: "PIN" in l[0].upper(), timeout=5)
    stage.type(DEMO_PIN)
    stage.press(Key.ENTER)
    time.sleep(0.3)
    stage.scan_receipt(paid["merchantTransId"])
    receipts = stage.new_receipts(1)
    reprint = receipts[0] if receipts else ""
    expect("reprint marked", "REPRINT" in reprint, True)
    n.receipt(reprint or "(no receipt printed)")

    n.say("\n7. The Z report closes the business day (manager token on the till interface)")
    report = stage.till("POST", "/v1/reports/z", manager=True).json()
    for c in report.get("currencies", []):
        n.say(f"   {c['currency']}: sales {c['sales']['count']} = {c['sales']['amount']['text']}, "
              f"refunds {c['refunds']['count']} = {c['refunds']['amount']['text']}, "
              f"cancels {c['cancels']['count']}, declines {c['declines']['count']}, "
              f"net {c['net']['text']}")
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no report printed)")

    ledger = stage.ledger()
    charged = [p for p in ledger.get("payments", []) if p.get("status") == "SUCCESS"]
    n.say(f"\nThe sandbox's ledger agrees: {len(charged)} payments charged, "
          f"{len(ledger.get('refunds', []))} refund(s).")


def play(out: Callable[[str], None] = print) -> int:
    """Run the seven demo scenarios; returns 0 when every one ended as it should."""
    started = time.monotonic()
    n = _Narrator(Stage(payment={"query_first_delay": 0.5, "query_interval_min": 1.0, "query_interval_max": 1.5,
                                 "query_deadline": 6.0, "cancel_interval": 0.5}), out)
    problems: list[str] = []

    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: expected {want}, got {got}")
            n.say(f"  !! {what}: expected {want}, got {got}")

    n.say("pos demo: a sandbox gateway, pty device twins and the real daemon (`pos run`), all on 127.0.0.1.")
    try:
        with n.stage as stage:
            try:
                _scenes(stage, n, expect)
            except (AssertionError, RuntimeError, requests.RequestException) as exc:
                problems.append(str(exc))
                n.say(f"\n  !! the demo stopped: {exc}")
                n.say("  last lines of the daemon's log:")
                for line in stage.daemon_log().splitlines()[-15:]:
                    n.say(f"    {line}")
    except (RuntimeError, OSError) as exc:  # the stage itself did not come up
        problems.append(str(exc))
        n.say(f"pos demo: could not start: {exc}")
    took = time.monotonic() - started
    if problems:
        n.say(f"\npos demo: {len(problems)} scenario(s) did not end as expected ({took:.0f} s).")
        return 1
    n.say(f"\npos demo: all seven scenarios done in {took:.0f} s.")
    return 0


def _wait_state_refund(stage: Stage, sale_id: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sale = stage.till("GET", f"/v1/sales/{sale_id}").json()
        refunds = sale.get("refunds", [])
        if refunds and refunds[-1]["final"] or (refunds and refunds[-1]["state"] == "REFUND_PENDING"):
            return refunds[-1]["state"]
        time.sleep(0.1)
    return "no refund"

