"""`pos run`: the daemon. Starts the parts in an order that never loses a sale.

Order of start (design rule 3):
  1. configuration (keys required; a sandbox config gets its keys generated),
  2. the journal (no journal, no sale: a terminal that cannot write before it
     sends must not take payments),
  3. recovery of every open sale and refund, before any new scan,
  4. devices (printer queue, displays, scanner, keypad),
  5. the till interface,
  6. READY=1 to systemd once recovery has finished, then WATCHDOG=1 heartbeats
     from the main loop.

SIGTERM (or Ctrl-C): no new pay is sent; calls in flight finish and their
answers are committed; exit 0. What was still open is resumed on next start.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pos.config import LoadedConfig, load_config
from pos.core.errors import EXIT_UNAVAILABLE, ConfigError, UserError
from pos.ops.logs import setup_logging
from pos.ops.systemd import SystemdNotifier, WatchdogHeartbeat, watchdog_interval

__all__ = ["Daemon", "run", "scanner_handler"]

log = logging.getLogger("pos.ops.daemon")

SWITCH_INTERVAL = 0.0005   # seconds: sys.setswitchinterval for the daemon (see Daemon.start)


def _load(path: str) -> LoadedConfig:
    loaded = load_config(path)
    from pos.gateway.keys import credential_problems
    problems = credential_problems(loaded.config)
    if problems:   # sandbox credentials against production, or production ones against the sandbox
        raise ConfigError(f"{loaded.path}: " + "; ".join(problems))
    if loaded.config.gateway.sandbox:
        from pos.gateway.keys import ensure_sandbox_keys
        for created in ensure_sandbox_keys(loaded.config):
            log.info("sandbox key generated", extra={"kv": {"path": str(created)}})
    return load_config(path, require_keys=True)


def scanner_handler(payments: Any, terminal: Any) -> Callable[[Any], None]:
    """The scanner's callback: the terminal handles the event under its lock, and the pay of a sale
    the scan starts is then sent by the scanner's own thread, once that lock is released
    (PaymentRunner.pays_sent_here): no hand-off to a gateway worker on the sale's path. A scan
    arriving meanwhile waits in the serial buffer until the pay's answer is on the displays."""
    def on_scanner_event(event: Any) -> None:
        with payments.pays_sent_here():
            terminal.on_scanner_event(event)
    return on_scanner_event


class Daemon:
    """Owns every long-lived part; `start()` then `serve()` until `stop()`."""

    def __init__(self, loaded: LoadedConfig, *, environ: dict[str, str] | None = None) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.notifier = SystemdNotifier(environ)
        self.heartbeat = WatchdogHeartbeat(self.notifier, watchdog_interval(environ))
        self._stop = threading.Event()
        # What to stop on the way out, in start order (stopped last first).
        self._parts: list[tuple[str, Callable[[], None]]] = []
        self.terminal: Any = None
        self.payments: Any = None
        self.server: Any = None

    # ---------------------------------------------------------------- start

    def start(self) -> None:
        cfg = self.cfg
        state_dir = Path(cfg.terminal.state_dir)
        try:
            if not state_dir.exists():
                state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                state_dir.chmod(0o700)  # the journal and tokens live here: private whatever the umask
        except OSError as exc:
            raise UserError(f"cannot create [terminal] state_dir {state_dir}: {exc.strerror}: "
                            "create it for the service user", exit_code=EXIT_UNAVAILABLE) from None

        self._lock_state_dir(state_dir)

        # python-escpos must find its cache before it is first imported (issue 6 trap), and loads
        # the capabilities of the configured printer profile only.
        from devices.printer import configure_escpos_cache
        configure_escpos_cache(state_dir / "cache" / "escpos", profiles=(cfg.printer.profile,))

        from devices.display import open_display
        from devices.keypad import open_keypad
        from devices.messages import Catalogue
        from devices.print_queue import PrintQueue
        from devices.printer import open_printer
        from devices.scanner import open_scanner
        from pos.gateway.factory import open_gateway
        from pos.journal import outbox
        from pos.journal.journal import Journal, journal_path
        from pos.journal.print_jobs import JournalPrintJobs
        from pos.payments.runner import PaymentRunner
        from pos.terminal.receipts import outcome_receipt
        from pos.terminal.terminal import Terminal
        from pos.till.api import Tokens, till_server

        journal = Journal.open(journal_path(state_dir), terminal_id=cfg.terminal.terminal_id,
                               timezone=cfg.terminal.timezone)
        self._parts.append(("journal", journal.close))
        # WAL checkpoints on a thread of their own, not inside a sale's commit (pos/journal/db.py).
        journal.db.start_checkpoints()
        log.info("journal open", extra={"kv": {"path": str(journal.path)}})

        gateway = open_gateway(cfg)
        self._parts.append(("gateway", gateway.close))
        self.payments = payments = PaymentRunner(journal, gateway, cfg.payment)
        cashier_text = Catalogue.load(cfg.terminal.language)
        customer_text = Catalogue.load(cfg.terminal.customer_language)
        customer_display = open_display(cfg.display, title="customer")
        cashier_display = open_display(cfg.cashier_display, title="cashier")
        printer = open_printer(cfg.printer)
        terminal_ref: list[Any] = []

        def printer_status(status: str) -> None:
            if terminal_ref:
                terminal_ref[0].on_printer_status(status)

        queue = None
        if cfg.printer.kind != "none":
            # The queue writes through the journal's connection: one connection for the daemon's writes.
            queue = PrintQueue(JournalPrintJobs(journal), printer, printer_settings=cfg.printer,
                               catalogue=cashier_text, on_status=printer_status,
                               receipt_of=partial(outcome_receipt, cfg, journal))
        self.terminal = terminal = Terminal(
            config=cfg, journal=journal, payments=payments, cashier_display=cashier_display,
            customer_display=customer_display, cashier_catalogue=cashier_text, customer_catalogue=customer_text,
            print_queue=queue, pin_state_file=state_dir / "pin-lock.json", gateway=gateway)
        terminal_ref.append(terminal)

        # Recovery first: no scan is accepted until every open sale is settled.
        open_count = payments.recover()
        log.info("recovery started", extra={"kv": {"open_items": open_count}})
        self.notifier.status(f"recovering {open_count} open items")

        scanner = open_scanner(cfg.scanner, scanner_handler(payments, terminal))
        if scanner is not None:
            scanner.start()
            self._parts.append(("scanner", scanner.stop))
        if cfg.keypad.kind != "none":
            keypad = open_keypad(cfg.keypad, terminal.on_key)
            keypad.start()
            self._parts.append(("keypad", keypad.stop))

        if cfg.ecr.enabled:
            tokens = Tokens(self._token(cfg.ecr.token_file), self._token(cfg.ecr.manager_token_file))
            host, _, port = cfg.ecr.listen.rpartition(":")
            try:
                self.server = till_server(terminal, tokens, host.strip("[]"), int(port), max_wait=cfg.ecr.max_wait)
            except OSError as exc:
                raise UserError(f"[ecr] listen = {cfg.ecr.listen}: {exc}: another program uses that address; "
                                "stop it or change [ecr] listen", exit_code=EXIT_UNAVAILABLE) from None
            self.server.start()
            log.info("till interface listening", extra={"kv": {"url": self.server.url}})

        if cfg.notify.listen:
            self._start_notify_listener(cfg, payments)
        if cfg.reconcile.fetch_at:
            from pos.reconcile.scheduled import ReconcileScheduler
            scheduler = ReconcileScheduler(cfg, journal, clock=time.time, alarm=terminal.raise_alarm).start()
            self._parts.append(("reconcile", scheduler.stop))
            log.info("reconciliation scheduled", extra={"kv": {"fetch_at": cfg.reconcile.fetch_at}})

        # The outbox is written only while the terminal ships somewhere: off, it would grow for ever.
        copied = outbox.set_writing(journal.db, bool(cfg.hq.url))
        if copied:
            log.info("outbox resumed", extra={"kv": {"events_since_it_was_off": copied}})
        if cfg.hq.url:
            from pos.ops.hq_shipper import HqShipper, read_hq_token
            token = None if cfg.hq.cert_file else read_hq_token(cfg.hq.token_file)
            shipper = HqShipper(journal.db, cfg.hq, token=token,
                                terminal_id=cfg.terminal.terminal_id, install_id=journal.install_id,
                                alarm=terminal.raise_alarm, health=terminal.health).start()
            self._parts.append(("hq shipper", shipper.stop))
            log.info("shipping to headquarters", extra={"kv": {"url": cfg.hq.url}})

        while not payments.wait_recovered(timeout=0.2):
            self.heartbeat.beat(time.monotonic())
            if self._stop.is_set():
                return
        log.info("ready", extra={"kv": {"resumed": open_count}})
        self.notifier.ready(f"ready; resumed {open_count} open items")
        # Start-up's objects (pydantic's, the modules': about 75,000 of the 82,000 the
        # collector tracks) move to the permanent generation, so a full collection walks about
        # 8,000. Measured in the daemon during benchmark sales (gc.callbacks; 6,000 sales each
        # way): a full collection came once in a few thousand sales and held the interpreter
        # 18-54 ms (a scan or a till request arriving then waits that long); frozen, 3.4 ms.
        # No effect on the sale's median or p99: no collection of any generation fell inside a
        # timed sale (all came outside the scan-to-outcome window). The collection
        # just before (20-50 ms, after READY) keeps start-up's garbage from being frozen with it.
        gc.collect()
        gc.freeze()
        # A thread woken by its socket, pty or disk sync waits for the interpreter lock while
        # another thread runs Python, up to the switch interval (5 ms by default) before the
        # holder is asked to let go; a sale runs on the scanner's thread (which sends the pay
        # itself) and the notifier, with the print queue, the checkpoints and the till's server
        # beside them.
        # 0.5 ms bounds that wait. Measured with `make bench` (1,000 sales a run, 8 interleaved
        # pairs): the sale's p99 4.03x the floor's median before, 3.76x after (lower in 5 of 8
        # pairs, 3 of 4 more pairs of 1,000 sales: 4.38x -> 3.90x); median and the daemon's CPU
        # a sale unchanged (2.58x / 2.55x; 4.76 / 4.69 ms).
        sys.setswitchinterval(SWITCH_INTERVAL)
        if queue is not None:
            # After READY: the first receipt's rendering (python-escpos's import) and printing
            # never delay the start; receipts queued meanwhile (recovered sales) print now.
            queue.start()
            self._parts.append(("print queue", queue.stop))

    def _start_notify_listener(self, cfg: Any, payments: Any) -> None:
        """[notify] listen: Alipay's notifications, verified, fed to the payments runner."""
        from pos.gateway.signing import load_private_key, load_public_key
        from pos.ops.notify_listener import build_notify_app, notify_server

        app = build_notify_app(payments, cfg, alipay_public_key=load_public_key(cfg.gateway.alipay_public_key),
                               merchant_private_key=load_private_key(cfg.gateway.private_key))
        host, _, port = cfg.notify.listen.rpartition(":")
        try:
            server = notify_server(app, host.strip("[]"), int(port))
        except OSError as exc:
            raise UserError(f"[notify] listen = {cfg.notify.listen}: {exc}: another program uses that address; "
                            "stop it or change [notify] listen", exit_code=EXIT_UNAVAILABLE) from None
        server.start()
        self._parts.append(("notify listener", server.stop))
        log.info("notification listener listening", extra={"kv": {"url": server.url}})

    def _lock_state_dir(self, state_dir: Path) -> None:
        """One daemon per journal: a second `pos run` on the same state dir would run
        a second engine over the same open sales (two cancels, two recoveries)."""
        import fcntl

        path = state_dir / "pos-run.lock"
        # 0600 whatever the umask; held open, and the lock with it, until the process ends.
        fh = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise UserError(f"{state_dir} is in use by another 'pos run' (pid {holder}): stop it first "
                            "(systemctl stop pos-terminal); one terminal daemon per journal",
                            exit_code=EXIT_UNAVAILABLE) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._run_lock = fh  # held (and the lock with it) until the process ends

    def _token(self, path_text: str) -> str:
        from pos.till.api import ensure_token, read_token

        path = Path(path_text)
        try:
            # The unit keeps /etc/pos read-only, so production tokens are made by
            # install.sh; a sandbox keeps them in its state dir and makes them here.
            return ensure_token(path) if self.cfg.gateway.sandbox else read_token(path)
        except FileNotFoundError:
            raise ConfigError(f"[ecr] token file {path} is missing: run systemd/install.sh or create it "
                              "with a random token (mode 0600)") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[ecr] token file {path}: {exc}") from None

    # ---------------------------------------------------------------- run

    def serve(self) -> None:
        """The main loop: heartbeats while the parts work in their own threads."""
        interval = self.heartbeat.interval or 1.0
        while not self._stop.wait(min(interval, 1.0)):
            self.heartbeat.beat(time.monotonic())

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.notifier.stopping("stopping: no new payments")
        log.info("stopping")
        if self.server is not None:
            self.server.stop()
        if self.payments is not None:
            self.payments.stop()
        for name, stop in reversed(self._parts):
            try:
                stop()
            except Exception as exc:
                log.warning("part did not stop cleanly", extra={"kv": {"part": name, "error": str(exc)}})
        if self.terminal is not None:
            self.terminal.close()
        log.info("stopped")


def run(config_path: str) -> int:
    loaded = _load(config_path)
    setup_logging(loaded.config.log.level, loaded.config.log.format)
    daemon = Daemon(loaded)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    try:
        daemon.start()
        daemon.serve()
    finally:
        daemon.stop()
    return 0

