"""`pos doctor`: the technician's checklist, one line per check.

Each check is a small function that takes the validated configuration (and
its thresholds as keyword arguments, so tests can shorten or tighten them)
and returns a `CheckResult`; nothing here raises for a broken installation,
it reports it. `run_checks` runs them in the order a technician fixes
things: config, keys, clock, network (and one signed query through the
configured protocol's client), devices, tokens, journal, disk.

    OK   gateway: open-sea.alipay.com:443 reachable, TLS ok, 38 ms
    FAIL printer: cannot open /dev/pos-printer: No such file or directory — check the cable and [printer] url
    WARN printer: online, paper unknown (no answer to the status query)

The device checks live in device_checks.py, the result type in checks.py;
this module is the whole list, in order.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from pos.backoffice.registration import sales_refusal
from pos.config import Config, LoadedConfig, load_config
from pos.core.errors import ConfigError, UserError
from pos.journal.backoffice import BackOfficeJournal
from pos.journal.journal import Journal, JournalError, journal_path
from pos.ops.checks import CheckResult, Level
from pos.ops.checks import fail as _fail
from pos.ops.checks import ok as _ok
from pos.ops.checks import warn as _warn
from pos.ops.device_checks import (
    check_cashier_display,
    check_display,
    check_keypad,
    check_printer,
    check_receipt_code,
    check_receipt_font,
    check_scanner,
)

__all__ = [
    "Level", "CheckResult", "DoctorReport", "run_checks", "load_for_doctor",
    "check_key_files", "check_key_pair", "check_alipay_key", "check_clock", "check_gateway", "check_gateway_answer",
    "check_scanner", "check_printer", "check_receipt_font",
    "check_receipt_code", "check_display", "check_cashier_display", "check_keypad",
    "check_ecr_tokens", "check_journal",
    "check_disk", "check_open_items", "check_merchant_registration",
    "open_items_needing_manager", "count_open_items", "MIN_FREE_BYTES",
]

# A receipt queue and a year of journal fit in a few MB; below 50 MB SQLite
# may fail a commit mid-sale (and "write before you send" then stops sales).
MIN_FREE_BYTES = 50 * 1024 * 1024
# Signatures carry no timestamp the gateway checks, but receipts, the business
# day and TLS certificate validation do: a clock before this year is a board
# without RTC battery that booted at 1970 or 2000.
EARLIEST_SANE_YEAR = 2024
LATEST_SANE_YEAR = 2100
MAX_CLOCK_SKEW = 300.0  # seconds against the gateway's Date header
MIN_KEY_BITS = 2048     # reference §4.1, RSA2


@dataclass
class DoctorReport:
    results: list[CheckResult]

    @property
    def exit_code(self) -> int:
        return 1 if any(r.level is Level.FAIL for r in self.results) else 0

    def text(self) -> str:
        return "\n".join(r.line() for r in self.results)


# ---------------------------------------------------------------------------
# configuration and keys

def load_for_doctor(path: str | os.PathLike[str]) -> tuple[CheckResult, LoadedConfig | None]:
    try:
        loaded = load_config(path)
    except UserError as exc:
        return _fail("config", str(exc), "fix the file, then run 'pos config check PATH'"), None
    detail = f"{loaded.path} is valid"
    if loaded.warnings:
        detail += f" ({len(loaded.warnings)} warning(s) follow in the checks below)"
    return _ok("config", detail), loaded


def _describe_key_error(exc: Exception) -> str:
    return str(exc)


def check_key_files(cfg: Config) -> CheckResult:
    """The three key files exist, parse as RSA >= 2048, the private one is 0600."""
    from pos.gateway.signing import load_private_key, load_public_key
    name = "keys"
    gw = cfg.gateway
    for key, path in (("private_key", gw.private_key), ("merchant_public_key", gw.merchant_public_key),
                      ("alipay_public_key", gw.alipay_public_key)):
        if not Path(path).is_file():
            if gw.sandbox:
                return _warn(name, f"[gateway] {key} {path} not found yet: a sandbox config generates "
                                   "its keys at the first start")
            todo = ("run 'pos keys generate DIR' (sandbox) or copy it from your Alipay integration"
                    if key != "alipay_public_key" else "download Alipay's public key from the developer portal")
            return _fail(name, f"[gateway] {key} {path} not found", todo)
    mode = stat.S_IMODE(Path(gw.private_key).stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return _fail(name, f"private key {gw.private_key} has mode {mode:04o} (others can read it)",
                     f"run 'chmod 600 {gw.private_key}'")
    try:
        private = load_private_key(gw.private_key)
        load_public_key(gw.merchant_public_key)
        load_public_key(gw.alipay_public_key)
    except UserError as exc:
        return _fail(name, _describe_key_error(exc), "replace the file with a PEM RSA key of at least 2048 bits")
    return _ok(name, f"3 key files present, private key mode {mode:04o}, RSA {private.key_size} bits")


def check_key_pair(cfg: Config) -> CheckResult:
    """Sign a test text with the private key and verify it with merchant_public_key."""
    from pos.gateway.signing import load_private_key, load_public_key, sign_text, verify
    name = "key pair"
    try:
        private = load_private_key(cfg.gateway.private_key)
        public = load_public_key(cfg.gateway.merchant_public_key)
    except UserError as exc:
        return _fail(name, f"cannot self-test: {exc}", "fix the 'keys' check first")
    text = '{"doctor":"self-test"}'
    if not verify(text, sign_text(text, private), public):
        return _fail(name, f"private key {cfg.gateway.private_key} does not match merchant_public_key "
                           f"{cfg.gateway.merchant_public_key}",
                     "install the public half of this private key, and upload the same one to Alipay")
    return _ok(name, "private key signs, merchant_public_key verifies (RSA2 self-test)")


def check_credentials(cfg: Config) -> CheckResult:
    """Sandbox credentials never against a production gateway, production ones never against the sandbox."""
    from pos.gateway.keys import credential_problems
    problems = credential_problems(cfg)
    if problems:
        return _fail("credentials", "; ".join(problems), "change what is named, then run 'pos doctor' again")
    return _ok("credentials", "client id, merchant id and keys fit the gateway url "
                              f"({'local sandbox' if cfg.gateway.sandbox else cfg.gateway.url})")


def check_store(cfg: Config) -> CheckResult:
    """Alipay's go-live checks look for the store's identity in every pay ([store])."""
    from pos.config import store_identity
    store = store_identity(cfg)
    if not store["id"]:
        return _warn("store", "[store] id is empty: pays carry no storeId, which Alipay's go-live checks "
                              "look for; set it (and mcc) from your onboarding pack")
    return _ok("store", f"store {store['id']} ({store['name']}), terminal {store['terminal_id']} in every pay")


def check_alipay_key(cfg: Config) -> CheckResult:
    """alipay_public_key must be Alipay's, not the merchant's own public key."""
    from pos.gateway.signing import load_private_key, load_public_key
    name = "alipay key"
    try:
        alipay = load_public_key(cfg.gateway.alipay_public_key).public_numbers()
        own = {load_private_key(cfg.gateway.private_key).public_key().public_numbers()}
        own.add(load_public_key(cfg.gateway.merchant_public_key).public_numbers())
    except UserError as exc:
        return _fail(name, f"cannot compare: {exc}", "fix the 'keys' check first")
    if alipay in own:
        return _fail(name, f"alipay_public_key {cfg.gateway.alipay_public_key} is the merchant's own public key "
                           "(every answer would fail to verify)",
                     "download Alipay's public key from the developer portal and install it there")
    return _ok(name, "alipay_public_key differs from the merchant's key")


# ---------------------------------------------------------------------------
# clock and gateway

def check_clock(now: dt.datetime | None = None, *, gateway_date: dt.datetime | None = None,
                max_skew: float = MAX_CLOCK_SKEW) -> CheckResult:
    name = "clock"
    now = now or dt.datetime.now(dt.UTC)
    todo = "set the time (timedatectl set-ntp true), check the RTC battery"
    if now.year < EARLIEST_SANE_YEAR:
        return _fail(name, f"system time {now:%Y-%m-%d %H:%M} UTC is before {EARLIEST_SANE_YEAR}", todo)
    if now.year >= LATEST_SANE_YEAR:
        return _fail(name, f"system time {now:%Y-%m-%d %H:%M} UTC is far in the future", todo)
    if gateway_date is not None:
        skew = (now - gateway_date).total_seconds()
        if abs(skew) > max_skew:
            return _fail(name, f"system time is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} "
                               f"the gateway's clock", todo)
        return _ok(name, f"{now:%Y-%m-%d %H:%M:%S} UTC, {abs(skew):.0f} s from the gateway's clock")
    return _ok(name, f"{now:%Y-%m-%d %H:%M:%S} UTC")


def check_gateway(cfg: Config, *, timeout: float | None = None) -> CheckResult:
    """DNS, TCP connect (timed), TLS for https, then one HTTP request for its Date header."""
    name = "gateway"
    parts = urlsplit(cfg.gateway.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = timeout or cfg.gateway.connect_timeout
    where = f"{host} port {port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return _fail(name, f"cannot resolve {host} ({exc.strerror})",
                     "check DNS (/etc/resolv.conf) and [gateway] url")
    family, _, _, _, address = infos[0]
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        todo = ("start the sandbox: pos sandbox --config <this file>" if cfg.gateway.sandbox
                else "check [gateway] url, the network cable/Wi-Fi and the firewall")
        return _fail(name, f"cannot connect to {where} ({reason})", todo)
    latency_ms = (time.monotonic() - started) * 1000
    tls = ""
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                return _fail(name, f"TLS certificate of {where} not accepted ({exc.verify_message})",
                             "check the clock and the CA certificates (apt install ca-certificates)")
            except (ssl.SSLError, OSError) as exc:
                return _fail(name, f"TLS handshake with {where} failed ({exc})", "check [gateway] url and any proxy")
            tls = f", {sock.version()}"
    finally:
        sock.close()
    date = _gateway_date(cfg.gateway.url, timeout, cfg.gateway.proxy)
    return _ok(name, f"{host}:{port} reachable{tls}, {latency_ms:.0f} ms", latency_ms=latency_ms, date=date)


def check_gateway_answer(cfg: Config) -> CheckResult:
    """One signed status query for an order that cannot exist, through the configured protocol's client.

    Proves what a TCP connect cannot: the gateway accepts our signature and
    client id, and its answer verifies with alipay_public_key. It only reads:
    a query for an unknown order moves no money and creates nothing.
    """
    import secrets

    from pos.core.outcomes import Failed, Succeeded
    from pos.gateway.factory import open_gateway
    name = "gateway answer"
    probe = f"DOCTOR-{cfg.terminal.terminal_id}-{secrets.token_hex(6)}"
    try:
        client = open_gateway(cfg)
    except UserError as exc:
        return _fail(name, f"cannot build the [gateway] {cfg.gateway.protocol} client: {exc}",
                     "fix the 'keys' check first")
    try:
        result = client.query(merchant_trans_id=probe)
        latency_ms = (client.health().last_latency or 0) * 1000
    finally:
        client.close()
    if isinstance(result, Succeeded) or (isinstance(result, Failed) and result.code in cfg.payment.not_found_codes):
        return _ok(name, f"a signed {cfg.gateway.protocol} query was answered and verified "
                         f"({result.code}), {latency_ms:.0f} ms")
    if isinstance(result, Failed):
        return _fail(name, f"the gateway refused a signed query: {result.code} {result.message}".rstrip(),
                     "check [gateway] client_id and merchant_id, and that merchant_public_key is the key "
                     "uploaded to Alipay")
    if "signature" in result.reason:
        return _fail(name, f"the gateway's answer did not verify ({result.reason})",
                     "install Alipay's public key as [gateway] alipay_public_key")
    return _warn(name, f"no answer to trust from the gateway ({result.reason}); payments would be queried "
                       "and cancelled until it answers")


def _gateway_date(url: str, timeout: float, proxy: str = "") -> dt.datetime | None:
    import requests

    from pos.gateway.transport import proxy_for

    # The way the gateway clients go: [gateway] proxy, else the proxy environment, never for loopback.
    via = proxy_for(url, proxy)
    try:
        answer = requests.head(url + "/", timeout=timeout, allow_redirects=False,
                               proxies={"http": via, "https": via} if via else {"http": "", "https": ""})
    except requests.RequestException:
        return None
    try:
        return parsedate_to_datetime(answer.headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------
# secrets, journal, disk

def check_ecr_tokens(cfg: Config) -> CheckResult:
    name = "ecr tokens"
    if not cfg.ecr.enabled:
        return _ok(name, "till interface disabled")
    for path_text in (cfg.ecr.token_file, cfg.ecr.manager_token_file):
        path = Path(path_text)
        if not path.exists():
            if cfg.gateway.sandbox:
                return _warn(name, f"{path} not found yet: generated at the first start (sandbox)")
            return _fail(name, f"{path} not found", "run systemd/install.sh again (it creates the tokens)")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return _fail(name, f"{path} has mode {mode:04o} (others can read the till's password)",
                         f"run 'chmod 600 {path}'")
        try:
            if not path.read_text().strip():
                return _fail(name, f"{path} is empty", "delete it and run systemd/install.sh again")
        except OSError as exc:
            return _fail(name, f"{path} cannot be read ({exc.strerror})", "check its owner (chown pos)")
    return _ok(name, "token files present and private (0600)")


def _open_journal(cfg: Config) -> Journal:
    # Read-only on purpose: run as root, a read-write open would leave
    # root-owned -wal/-shm files the pos user cannot open afterwards.
    return Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                        timezone=cfg.terminal.timezone, read_only=True)


def check_journal(cfg: Config) -> CheckResult:
    name = "journal"
    path = journal_path(cfg.terminal.state_dir)
    todo = "stop the service, copy the file aside for support, restore the last backup"
    if not path.exists():
        return _warn(name, f"{path} does not exist yet (created at the first start of the service)")
    try:
        journal = _open_journal(cfg)
        try:
            problems = journal.file_integrity(limit=3)
        finally:
            journal.close()
    except JournalError as exc:
        return _fail(name, f"{path} cannot be read as SQLite ({exc})", todo)
    answer = "; ".join(problems)
    if answer != "ok":
        return _fail(name, f"{path} is damaged: {answer}", todo)
    size = path.stat().st_size
    return _ok(name, f"{path} integrity ok, {size / 1024:.0f} KiB", journal_bytes=size)


def check_disk(cfg: Config, *, min_free_bytes: int = MIN_FREE_BYTES) -> CheckResult:
    name = "disk"
    folder = Path(cfg.terminal.state_dir)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    mb = free / 1024 / 1024
    if free < min_free_bytes:
        return _fail(name, f"only {mb:.0f} MB free for {folder} (need {min_free_bytes / 1024 / 1024:.0f} MB)",
                     "free some space (journalctl --vacuum-size=100M, old files in /var/log)")
    return _ok(name, f"{mb:.0f} MB free for {folder}")


def open_items_needing_manager(cfg: Config) -> list[tuple[str, str]] | None:
    """(merchantTransId/merchantRefundId, state) of items in MANUAL_REVIEW, PAID_LATE or REFUND_PENDING.

    Reads the journal read-only; None when there is no journal yet. JournalError when it cannot be read.
    """
    if not journal_path(cfg.terminal.state_dir).exists():
        return None
    journal = _open_journal(cfg)
    try:
        return journal.items_needing_manager()
    finally:
        journal.close()


def count_open_items(cfg: Config) -> int | None:
    """Sales and refunds not in a final state (what the daemon resumes on start); None without a journal."""
    if not journal_path(cfg.terminal.state_dir).exists():
        return None
    journal = _open_journal(cfg)
    try:
        return journal.count_open_items()
    finally:
        journal.close()


def check_open_items(cfg: Config) -> CheckResult:
    name = "open items"
    try:
        items = open_items_needing_manager(cfg)
    except JournalError as exc:
        return _warn(name, f"cannot list open items ({exc}); see the journal check")
    if items is None:
        return _ok(name, "none (no journal yet)")
    if not items:
        return _ok(name, "nothing waits for a manager")
    listed = ", ".join(f"{ident} {state}" for ident, state in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return _warn(name, f"{len(items)} need a manager: {listed}{more} "
                       "(check each with Alipay, then resolve it in the manager menu)", count=len(items))


def check_merchant_registration(cfg: Config) -> CheckResult:
    """[merchant] registration_required: are sales open (the latest registration SUCCESSFUL)?"""
    name = "merchant registration"
    if not journal_path(cfg.terminal.state_dir).exists():
        return _warn(name, "sales closed: no journal yet, so no registration: run 'pos merchant register'")
    try:
        journal = _open_journal(cfg)
        try:
            refusal = sales_refusal(BackOfficeJournal(journal.db, journal.install_id), required=True)
        finally:
            journal.close()
    except JournalError as exc:
        return _warn(name, f"cannot read the registration ({exc}); see the journal check")
    if refusal is None:
        return _ok(name, "approved: sales open")
    return _warn(name, f"sales closed: {refusal}")


# ---------------------------------------------------------------------------

def run_checks(loaded: LoadedConfig, *, min_free_bytes: int = MIN_FREE_BYTES,
               device_timeout: float = 0.5, gateway_timeout: float | None = None,
               now: dt.datetime | None = None) -> list[CheckResult]:
    cfg = loaded.config
    results: list[CheckResult] = []
    keys = check_key_files(cfg)
    results += [check_credentials(cfg), check_store(cfg), keys]
    if keys.level is Level.OK:
        results += [check_key_pair(cfg), check_alipay_key(cfg)]
    gateway = check_gateway(cfg, timeout=gateway_timeout)
    results.append(check_clock(now, gateway_date=gateway.data.get("date")))
    results.append(gateway)
    if keys.level is Level.OK and gateway.level is Level.OK:
        results.append(check_gateway_answer(cfg))
    results += [
        check_scanner(cfg, timeout=device_timeout),
        check_printer(cfg, timeout=device_timeout),
        check_receipt_font(cfg),
        check_receipt_code(cfg),
        check_display(cfg, timeout=device_timeout),
        check_cashier_display(cfg, timeout=device_timeout),
        check_keypad(cfg, timeout=device_timeout),
        check_ecr_tokens(cfg),
        check_journal(cfg),
        check_disk(cfg, min_free_bytes=min_free_bytes),
        check_open_items(cfg),
    ]
    if cfg.merchant.registration_required:
        results.append(check_merchant_registration(cfg))
    if cfg.hq.url:
        results.append(check_hq(cfg, timeout=gateway_timeout))
    return results


def check_hq(cfg: Config, *, timeout: float | None = None) -> CheckResult:
    """[hq]: the credential is there and private, headquarters answers, and how much waits to be shipped."""
    import requests

    from pos.journal import outbox
    from pos.ops.hq_shipper import read_hq_cert, read_hq_token

    name = "headquarters"
    cert: tuple[str, str] | None = None
    if cfg.hq.cert_file:
        try:
            cert = read_hq_cert(cfg.hq)
        except ConfigError as exc:
            return _fail(name, str(exc), "run 'pos hq add-terminal --cert' at headquarters and copy both files")
    else:
        try:
            read_hq_token(cfg.hq.token_file)
        except ConfigError as exc:
            return _fail(name, str(exc), "run 'pos hq add-terminal' at headquarters and put the credential in "
                                         "the file")
        mode = stat.S_IMODE(Path(cfg.hq.token_file).stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return _fail(name, f"{cfg.hq.token_file} has mode {mode:04o}", f"run 'chmod 600 {cfg.hq.token_file}'")
    waiting: int | None = None
    try:
        journal = _open_journal(cfg)
        try:
            waiting = outbox.backlog(journal.db)
        finally:
            journal.close()
    except UserError:
        waiting = None
    try:
        r = requests.get(f"{cfg.hq.url}/v1/health", timeout=timeout or cfg.hq.timeout, verify=cfg.hq.ca_file or True,
                         cert=cert)
        reachable = r.status_code == 200
        why = f"answered {r.status_code}"
    except requests.RequestException as exc:
        reachable, why = False, type(exc).__name__
    backlog = "" if waiting is None else f"; {waiting} events wait to be shipped"
    if not reachable:
        return _warn(name, f"{cfg.hq.url} is not reachable ({why}){backlog}: the terminal keeps selling and "
                           "ships when it is back")
    return _ok(name, f"{cfg.hq.url} answers{backlog}")


def iter_lines(results: Iterable[CheckResult]) -> Iterable[str]:
    return (r.line() for r in results)
