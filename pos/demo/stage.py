"""The demo's stage: the whole product on one machine, with no account and no hardware.

A `Stage` sets up what a store would have, all local and real:
  - the sandbox gateway on 127.0.0.1 (real HTTP, real signatures) with fresh keys,
  - pty twins of the scanner, the customer display, the cashier display and the
    keypad (the daemon drives them through pyserial exactly as real devices),
  - a network receipt printer twin on 127.0.0.1 (python-escpos output),
  - the daemon itself, `pos run`, as a separate process,
and the till's side of the HTTP interface. The narrated demo (pos.demo.story),
the interactive demo and the end-to-end tests all play on a Stage.
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
from typing import Any, TypeVar

import requests

from devices.emulated import EmulatedDisplay, EmulatedKeypad, EmulatedNetworkPrinter, EmulatedScanner
from devices.keypad import Key
from devices.receipt_code import receipt_code
from pos.config import toml_value
from pos.gateway.keys import ALIPAY_PRIVATE, MERCHANT_PUBLIC, generate_key_folder
from pos.gateway.signing import load_private_key, load_public_key
from pos.sandbox.scenarios import SandboxOptions
from pos.sandbox.server import SandboxServer
from pos.sandbox.sftp import SandboxSftp
from pos.terminal.pin import hash_pin

__all__ = ["DEMO_PIN", "Stage"]

REPO = Path(__file__).resolve().parents[2]
DEMO_PIN = "2468"


T = TypeVar("T")


def _until(probe: Callable[[], T], done: Callable[[T], bool], seconds: float) -> T:
    """`probe()` every 50 ms until `done` holds for what it returned or `seconds` passed; its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The JSON object a response carries; anything else is a broken answer."""
    body = response.json()
    if not isinstance(body, dict):
        raise RuntimeError(f"{response.request.method} {response.url} answered {body!r}, not a JSON object")
    return body


def _dump_toml(data: dict[str, dict[str, Any]]) -> str:
    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        out.append("")
    return "\n".join(out)


class Stage:
    """Sandbox + device twins + `pos run`, in a temporary folder. Use as a context manager."""

    def __init__(self, *, base_config: Path | None = None, payment: dict[str, Any] | None = None,
                 manager: dict[str, Any] | None = None, reconcile: dict[str, Any] | None = None,
                 sandbox_options: SandboxOptions | None = None,
                 keep: bool = False, daemon_env: dict[str, str] | None = None, max_wait: float = 60.0,
                 protocol: str = "offline", notify: bool = False, terminal: dict[str, Any] | None = None,
                 hq: dict[str, Any] | None = None) -> None:
        self.max_wait = max_wait
        self.protocol = protocol  # [gateway] protocol: the sandbox and the daemon speak it
        self.notify_port = _free_port() if notify else None   # [notify] listen, fed by the sandbox
        self.dir = Path(tempfile.mkdtemp(prefix="pos-demo-"))
        self.keep = keep
        self.base_config = base_config or REPO / "config" / "sandbox.toml"
        self.payment_overrides = payment or {}
        self.manager_overrides = manager or {}
        self.reconcile_overrides = reconcile or {}
        self.terminal_overrides = terminal or {}
        self.hq_settings = hq or {}   # [hq]: shipping to headquarters (off when empty)
        self.options = sandbox_options or SandboxOptions(wallet_confirm_after=2.0, slow_response=6.0,
                                                         late_success_after=30.0)
        self.daemon_env = daemon_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox: SandboxServer | None = None
        self.sftp: SandboxSftp | None = None
        self.last_exit: int | None = None
        self.receipts_seen = 0

    # ------------------------------------------------------------ set-up

    def __enter__(self) -> Stage:
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
                                     options=self.options, protocol=self.protocol).start()
        # Alipay's SFTP server for the reconciliation files (seed 003), with a password file of mode 0600.
        self.sftp = SandboxSftp(self.dir / "sftp").start()
        password = self.dir / "state" / "sftp.password"
        password.parent.mkdir(parents=True, exist_ok=True)
        password.write_text(self.sftp.password + "\n")
        password.chmod(0o600)
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
        self._spawn()
        self.wait_ready()

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.daemon_env}
        # The daemon writes its log through its own copy of the descriptor; ours closes at once.
        with open(self.dir / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pos", "run", "--config", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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
        base.setdefault("terminal", {}).update(self.terminal_overrides, state_dir=str(self.dir / "state"))
        if self.hq_settings:
            base["hq"] = dict(self.hq_settings)
        gw = base.setdefault("gateway", {})
        gw.update(protocol=self.protocol, url=self.sandbox.url if self.sandbox else "",
                  private_key=str(keys / "merchant_private.pem"),
                  merchant_public_key=str(keys / "merchant_public.pem"),
                  alipay_public_key=str(keys / "alipay_public.pem"), sandbox=True,
                  read_timeout=min(float(gw.get("read_timeout", 5.0)), 3.0))
        base.setdefault("payment", {}).update(self.payment_overrides)
        if self.notify_port is not None:
            base["notify"] = {"listen": f"127.0.0.1:{self.notify_port}",
                              "public_url": f"http://127.0.0.1:{self.notify_port}"}
        base["scanner"] = {"kind": "serial", "url": str(self.scanner.path), "dedupe_window": 0.0,
                           "reconnect_min": 0.1, "reconnect_max": 0.5}
        base["display"] = {"kind": "serial", "url": str(self.customer.path)}
        base["cashier_display"] = {"kind": "serial", "url": str(self.cashier.path)}
        base["keypad"] = {"kind": "serial", "url": str(self.keypad.path)}
        base["printer"] = {"kind": "network", "host": "127.0.0.1", "port": self.printer.port,
                           "retry_interval": 0.5}
        base["ecr"] = {"listen": f"127.0.0.1:{self.ecr_port}", "token_file": str(self.till_token_path()),
                       "manager_token_file": str(self.manager_token_path()), "max_wait": self.max_wait}
        base["manager"] = {"pin_hash": hash_pin(DEMO_PIN), "refund_limit": "1000", **self.manager_overrides}
        if self.sftp is not None:
            base["reconcile"] = {"host": "127.0.0.1", "port": self.sftp.port, "username": self.sftp.username,
                                 "password_file": str(self.dir / "state" / "sftp.password"),
                                 "host_key": self.sftp.fingerprint, "timeout": 10.0,
                                 **self.reconcile_overrides}
        return _dump_toml(base)

    def till_token_path(self) -> Path:
        return self.dir / "state" / "ecr.token"

    def manager_token_path(self) -> Path:
        return self.dir / "state" / "ecr-manager.token"

    @property
    def timezone(self) -> str:
        """The terminal's time zone (the business day's calendar)."""
        return str(tomllib.loads(self.config_path.read_text()).get("terminal", {}).get("timezone", "UTC"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ecr_port}"

    @property
    def sandbox_url(self) -> str:
        if self.sandbox is None:
            raise RuntimeError("the stage's sandbox gateway is not running")
        return self.sandbox.url

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pos run exited with {self.proc.returncode}:\n{self.daemon_log()}")
            try:
                if self.till_token_path().exists():
                    health = _json_object(self.till("GET", "/v1/health"))
                    if health.get("status") in ("ok", "degraded"):
                        return health
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"pos run did not become ready in {timeout} s:\n{self.daemon_log()}")

    def stop_daemon(self) -> None:
        """SIGTERM to `pos run` (its last writes drained), SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.stop_daemon()
        for name in ("scanner", "customer", "cashier", "keypad", "printer"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.sftp is not None:
            self.sftp.stop()
            self.sftp = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def daemon_log(self) -> str:
        path = self.dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logged(self, text: str, seconds: float = 3.0) -> bool:
        """Whether the daemon's log has `text` within `seconds`: the daemon writes a line after the
        commit it tells of, so the till can read a sale's new state a moment before its log line."""
        return text in _until(self.daemon_log, lambda log: text in log, seconds)

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
        return _json_object(r)

    def sale(self, sale_id: str) -> dict[str, Any]:
        """The till's view of a sale now (GET /v1/sales/ID)."""
        return _json_object(self.till("GET", f"/v1/sales/{sale_id}"))

    def wait_sale(self, sale_id: str, seconds: float = 30.0) -> dict[str, Any]:
        return _json_object(self.till("GET", f"/v1/sales/{sale_id}?wait={seconds}"))

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

    def publish_reconciliation(self, day: str, family: str = "2.0.4") -> list[Path]:
        """Alipay closes the day: the sandbox writes its files where the SFTP server serves them."""
        if self.sandbox is None or self.sftp is None:
            raise RuntimeError("the stage's sandbox is not running")
        cfg = tomllib.loads(self.config_path.read_text())
        folder = self.sftp.root / "download" / cfg["gateway"]["merchant_id"] / day.replace("-", "")
        return self.sandbox.ledger.export_files(folder, day, family=family, merchant_id=cfg["gateway"]["merchant_id"])

    def pos(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a `pos` command against the stage's config (e.g. 'reconcile', 'report', '--date', day)."""
        return subprocess.run([sys.executable, "-m", "pos", *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout, cwd=str(self.dir),
                              stdin=subprocess.DEVNULL)

    def ledger(self) -> dict[str, Any]:
        """The sandbox's ledger: the truth about what was charged and refunded."""
        return _json_object(requests.get(self.sandbox_url + "/sandbox/ledger", timeout=10))

    def notifications(self, key: str, value: str, seconds: float = 10.0) -> list[dict[str, Any]]:
        """The sandbox's notifications whose `key` is `value`, once all are acknowledged or `seconds`
        passed: the sandbox marks one acknowledged when the daemon's answer is back, a moment after
        the daemon committed what it says (so after the sale reads PAID on the till API)."""
        return _until(lambda: [n for n in self.ledger()["notifications"] if n.get(key) == value],
                      lambda found: bool(found) and all(n["acknowledged"] for n in found), seconds)
