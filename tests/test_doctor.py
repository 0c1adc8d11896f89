"""pos doctor: every check on a real good setup (keys, local HTTP gateway, ptys, SQLite), and each one failing."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import select
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pos.cli.main import main
from pos.config import load_config
from pos.gateway.signing import generate_keypair, private_key_pem, public_key_pem
from pos.ops import doctor
from pos.ops.doctor import Level
from pos.sandbox.ledger import as_datetime
from tests.sandbox_fixtures import *  # noqa: F403 - the sandbox fixtures

# --- real parts -------------------------------------------------------------

class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_gateway() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class PtyPrinter:
    """The far end of a pty answering ESC/POS DLE EOT status queries like a receipt printer."""

    def __init__(self, online: int | None = 0x12, paper: int | None = 0x12) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave = slave
        self.answers = {1: online, 4: paper}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 64)
            except OSError:
                return
            while len(buf) >= 3:
                if buf[:2] == b"\x10\x04":
                    answer = self.answers.get(buf[2])
                    if answer is not None:
                        os.write(self.master, bytes([answer]))
                    buf = buf[3:]
                else:
                    buf = buf[1:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pty_printer() -> Iterator[type[PtyPrinter]]:
    made: list[PtyPrinter] = []

    def make(**kw: int | None) -> PtyPrinter:
        p = PtyPrinter(**kw)
        made.append(p)
        return p

    yield make  # type: ignore[misc]
    for p in made:
        p.close()


def _write_key(path: Path, pem: bytes, mode: int) -> None:
    path.write_bytes(pem)
    path.chmod(mode)


@pytest.fixture(scope="module")
def key_pems() -> dict[str, bytes]:
    merchant, merchant_pub = generate_keypair()
    alipay, alipay_pub = generate_keypair()
    other, _ = generate_keypair()
    return {"merchant_private": private_key_pem(merchant), "merchant_public": public_key_pem(merchant_pub),
            "alipay_public": public_key_pem(alipay_pub), "other_public": public_key_pem(other.public_key())}


@pytest.fixture
def setup(tmp_path, key_pems, http_gateway, pty_printer):
    """A complete good installation in tmp_path; returns a function that writes the config."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    _write_key(keys / "merchant_private.pem", key_pems["merchant_private"], 0o600)
    _write_key(keys / "merchant_public.pem", key_pems["merchant_public"], 0o644)
    _write_key(keys / "alipay_public.pem", key_pems["alipay_public"], 0o644)
    state = tmp_path / "state"
    state.mkdir()
    for name in ("ecr.token", "ecr-manager.token"):
        _write_key(tmp_path / name, b"s3cret-token\n", 0o600)
    db = sqlite3.connect(state / "journal.db")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    scanner_master, scanner_slave = os.openpty()
    printer = pty_printer()
    with socket.socket() as s:   # nothing listens here: the daemon is "not running"
        s.bind(("127.0.0.1", 0))
        ecr_port = s.getsockname()[1]

    def write(extra: str = "", *, printer_section: str | None = None, gateway_url: str = http_gateway) -> Path:
        cfg = tmp_path / "terminal.toml"
        if printer_section is None:
            printer_section = f'kind = "serial"\nurl = "{printer.path}"'
        cfg.write_text(f"""
[terminal]
state_dir = "state"
[gateway]
url = "{gateway_url}"
private_key = "keys/merchant_private.pem"
merchant_public_key = "keys/merchant_public.pem"
alipay_public_key = "keys/alipay_public.pem"
connect_timeout = 1.0
[scanner]
kind = "serial"
url = "{os.ttyname(scanner_slave)}"
[printer]
{printer_section}
[display]
kind = "none"
[ecr]
listen = "127.0.0.1:{ecr_port}"
token_file = "ecr.token"
manager_token_file = "ecr-manager.token"
{extra}
""")
        return cfg

    yield write
    os.close(scanner_master)
    os.close(scanner_slave)


def _cfg(path: Path):
    return load_config(path).config


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["doctor", *argv])
    out = capsys.readouterr().out
    return code, out.splitlines()


# --- the whole command ------------------------------------------------------

def test_good_setup_passes_every_check(setup, capsys):
    code, lines = _run(capsys, "--config", str(setup()))
    by_name = {line[5:].split(":")[0]: line for line in lines}
    assert code == 0, "\n".join(lines)
    for name in ("config", "keys", "key pair", "alipay key", "clock", "gateway", "scanner", "printer",
                 "display", "ecr tokens", "journal", "disk"):
        assert by_name[name].startswith("OK   "), by_name[name]
    assert "online, paper ok" in by_name["printer"]
    assert "integrity ok" in by_name["journal"]
    assert "s from the gateway's clock" in by_name["clock"]  # compared with the HTTP Date header
    assert all(line[:4] in ("OK  ", "WARN", "FAIL") for line in lines)


def test_config_that_cannot_load_is_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "t.toml"
    bad.write_text("[payment]\nquery_deadline = -5\n")
    code, lines = _run(capsys, "--config", str(bad))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("FAIL config:") and "query_deadline" in lines[0]


def test_any_failed_check_is_exit_1(setup, capsys, tmp_path):
    cfg = setup()
    (tmp_path / "keys" / "alipay_public.pem").unlink()
    code, lines = _run(capsys, "--config", str(cfg))
    assert code == 1
    assert any(line.startswith("FAIL keys:") and "alipay_public_key" in line for line in lines)


def test_readable_private_key_is_refused_with_chmod_advice(setup, tmp_path, capsys):
    cfg = setup()
    (tmp_path / "keys" / "merchant_private.pem").chmod(0o644)
    code, lines = _run(capsys, "--config", str(cfg))
    assert code == 2 and "chmod 600" in lines[0]   # the loader refuses it before the checks run


# --- one check at a time ----------------------------------------------------

def test_keys_ok(setup):
    r = doctor.check_key_files(_cfg(setup()))
    assert r.level is Level.OK and "RSA 2048 bits" in r.detail


def test_keys_missing_file(setup, tmp_path):
    cfg = _cfg(setup())
    (tmp_path / "keys" / "merchant_public.pem").unlink()
    r = doctor.check_key_files(cfg)
    assert r.level is Level.FAIL and "merchant_public_key" in r.detail and "not found" in r.detail


def test_keys_private_mode(setup, tmp_path):
    cfg = _cfg(setup())
    (tmp_path / "keys" / "merchant_private.pem").chmod(0o640)
    r = doctor.check_key_files(cfg)
    assert r.level is Level.FAIL and "mode 0640" in r.detail and "chmod 600" in r.detail


def test_keys_too_short(setup, tmp_path):
    cfg = _cfg(setup())
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    _write_key(tmp_path / "keys" / "merchant_private.pem", pem, 0o600)
    r = doctor.check_key_files(cfg)
    assert r.level is Level.FAIL and "1024 bits" in r.detail and "2048" in r.detail


def test_key_pair_mismatch(setup, tmp_path, key_pems):
    cfg = _cfg(setup())
    assert doctor.check_key_pair(cfg).level is Level.OK
    _write_key(tmp_path / "keys" / "merchant_public.pem", key_pems["other_public"], 0o644)
    r = doctor.check_key_pair(cfg)
    assert r.level is Level.FAIL and "does not match merchant_public_key" in r.detail


def test_alipay_key_is_merchants_own(setup, tmp_path, key_pems):
    cfg = _cfg(setup())
    assert doctor.check_alipay_key(cfg).level is Level.OK
    _write_key(tmp_path / "keys" / "alipay_public.pem", key_pems["merchant_public"], 0o644)
    r = doctor.check_alipay_key(cfg)
    assert r.level is Level.FAIL and "merchant's own public key" in r.detail and "developer portal" in r.detail


@pytest.mark.parametrize("when, gateway, level, words", [
    (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), None, Level.OK, "2025-03-01"),
    (dt.datetime(2001, 1, 1, tzinfo=dt.UTC), None, Level.FAIL, "before 2024"),
    (dt.datetime(2150, 1, 1, tzinfo=dt.UTC), None, Level.FAIL, "far in the future"),
    (dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
     dt.datetime(2025, 3, 1, 11, 0, tzinfo=dt.UTC), Level.FAIL, "3600 s ahead of the gateway"),
    (dt.datetime(2025, 3, 1, 12, 0, 5, tzinfo=dt.UTC),
     dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC), Level.OK, "5 s from the gateway"),
])
def test_clock(when, gateway, level, words):
    r = doctor.check_clock(when, gateway_date=gateway)
    assert r.level is level and words in r.detail


def test_gateway_reachable_measures_latency(setup):
    r = doctor.check_gateway(_cfg(setup()))
    assert r.level is Level.OK and "reachable" in r.detail and isinstance(r.data["latency_ms"], float)
    assert r.data["date"] is not None


def test_gateway_unreachable_names_host_and_port(setup):
    with socket.socket() as s:   # a port that was free a moment ago; nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = doctor.check_gateway(_cfg(setup(gateway_url=f"http://127.0.0.1:{port}")), timeout=1)
    assert r.level is Level.FAIL and f"cannot connect to 127.0.0.1 port {port}" in r.detail and "— check" in r.detail


def test_gateway_tls_failure(setup, http_gateway):
    url = http_gateway.replace("http://", "https://")   # a plain-HTTP server: the handshake fails
    r = doctor.check_gateway(_cfg(setup(gateway_url=url)), timeout=1)
    assert r.level is Level.FAIL and "TLS" in r.detail


def test_scanner_missing_device(setup, tmp_path):
    r = doctor.check_scanner(_cfg(setup()).model_copy(update={}))
    assert r.level is Level.OK and "opens at 9600 baud" in r.detail
    cfg = _cfg(setup('\n'))
    cfg = cfg.model_copy(update={"scanner": cfg.scanner.model_copy(update={"url": str(tmp_path / "ttyNONE")})})
    r = doctor.check_scanner(cfg)
    assert r.level is Level.FAIL and "cannot open" in r.detail and "dialout" in r.detail


def test_scanner_none_is_reported_as_such(setup):
    cfg = _cfg(setup())
    cfg = cfg.model_copy(update={"scanner": cfg.scanner.model_copy(update={"kind": "none"})})
    r = doctor.check_scanner(cfg)
    assert r.level is Level.OK and "kind none" in r.detail


@pytest.mark.parametrize("online, paper, level, words", [
    (0x12, 0x12, Level.OK, "online, paper ok"),
    (0x12, 0x72, Level.FAIL, "NO PAPER"),
    (0x1A, 0x12, Level.FAIL, "OFFLINE"),
    (0x12, 0x1E, Level.WARN, "paper near end"),
    (None, None, Level.WARN, "unknown"),
])
def test_printer_status_over_serial(setup, pty_printer, online, paper, level, words):
    printer = pty_printer(online=online, paper=paper)
    cfg = _cfg(setup(printer_section=f'kind = "serial"\nurl = "{printer.path}"'))
    r = doctor.check_printer(cfg, timeout=0.3)
    assert r.level is level and words in r.detail, r.line()


def test_printer_missing_device(setup, tmp_path):
    cfg = _cfg(setup(printer_section=f'kind = "serial"\nurl = "{tmp_path}/lp-none"'))
    r = doctor.check_printer(cfg)
    assert r.level is Level.FAIL and "cannot open" in r.detail


def test_network_printer_refused_and_silent(setup):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(setup(printer_section=f'kind = "network"\nhost = "127.0.0.1"\nport = {port}'))
    r = doctor.check_printer(cfg, timeout=0.3)
    assert r.level is Level.FAIL and f"127.0.0.1 port {port}" in r.detail
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        cfg = _cfg(setup(printer_section=f'kind = "network"\nhost = "127.0.0.1"\nport = {port}'))
        r = doctor.check_printer(cfg, timeout=0.2)
    assert r.level is Level.WARN and "unknown" in r.detail


def test_printer_dummy_is_reported_as_such(setup):
    r = doctor.check_printer(_cfg(setup(printer_section='kind = "dummy"')))
    assert r.level is Level.OK and "kind dummy" in r.detail


def test_display_serial_missing_and_console(setup, tmp_path):
    cfg = _cfg(setup())
    serial_cfg = cfg.model_copy(update={"display": cfg.display.model_copy(
        update={"kind": "serial", "url": str(tmp_path / "no-display")})})
    r = doctor.check_display(serial_cfg)
    assert r.level is Level.FAIL and "no-display" in r.detail
    console = cfg.model_copy(update={"display": cfg.display.model_copy(update={"kind": "console"})})
    assert "kind console" in doctor.check_display(console).detail


def test_cashier_display_and_keypad_missing_and_present(setup, tmp_path):
    from devices.emulated import EmulatedDisplay, EmulatedKeypad
    cfg = _cfg(setup())
    missing = cfg.model_copy(update={
        "cashier_display": cfg.cashier_display.model_copy(update={"kind": "serial", "url": str(tmp_path / "no-cd")}),
        "keypad": cfg.keypad.model_copy(update={"kind": "serial", "url": str(tmp_path / "no-kp")})})
    r = doctor.check_cashier_display(missing)
    assert r.level is Level.FAIL and "no-cd" in r.detail and "[cashier_display] url" in r.line()
    r = doctor.check_keypad(missing)
    assert r.level is Level.FAIL and "no-kp" in r.detail
    with EmulatedDisplay("cd", tmp_path) as display, EmulatedKeypad("kp", tmp_path) as keypad:
        present = cfg.model_copy(update={
            "cashier_display": cfg.cashier_display.model_copy(update={"kind": "serial", "url": str(display.path)}),
            "keypad": cfg.keypad.model_copy(update={"kind": "serial", "url": str(keypad.path)})})
        assert doctor.check_cashier_display(present).level is Level.OK
        assert doctor.check_keypad(present).level is Level.OK
        display.stop_reading()       # a display that no longer reads what it is sent
        r = doctor.check_cashier_display(present, timeout=0.2)
        assert r.level is Level.FAIL and "takes no data" in r.detail and "powered" in r.line()


def test_ecr_tokens(setup, tmp_path):
    cfg = _cfg(setup())
    assert doctor.check_ecr_tokens(cfg).level is Level.OK
    (tmp_path / "ecr.token").chmod(0o644)
    r = doctor.check_ecr_tokens(cfg)
    assert r.level is Level.FAIL and "chmod 600" in r.detail
    (tmp_path / "ecr.token").chmod(0o600)
    (tmp_path / "ecr-manager.token").write_text("")
    r = doctor.check_ecr_tokens(cfg)
    assert r.level is Level.FAIL and "is empty" in r.detail
    (tmp_path / "ecr-manager.token").unlink()
    r = doctor.check_ecr_tokens(cfg)
    assert r.level is Level.FAIL and "not found" in r.detail and "install.sh" in r.detail


def test_journal_damaged_and_missing(setup, tmp_path):
    cfg = _cfg(setup())
    db = tmp_path / "state" / "journal.db"
    assert doctor.check_journal(cfg).level is Level.OK
    db.write_bytes(b"this is not a database" * 100)
    r = doctor.check_journal(cfg)
    assert r.level is Level.FAIL and "restore" in r.detail
    db.unlink()
    r = doctor.check_journal(cfg)
    assert r.level is Level.WARN and "does not exist yet" in r.detail


def test_journal_with_a_corrupt_page(setup, tmp_path):
    cfg = _cfg(setup())
    db = tmp_path / "state" / "journal.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE big (v TEXT)")
    conn.execute("CREATE INDEX big_v ON big (v)")
    conn.executemany("INSERT INTO big VALUES (?)", [(f"row {i:06d}" * 20,) for i in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page * 3, len(data) - page, page * 2):  # scribble over interior pages, keep the header
        data[offset + 100: offset + 200] = b"\xff" * 100
    db.write_bytes(bytes(data))
    r = doctor.check_journal(cfg)
    assert r.level is Level.FAIL


def test_disk_threshold(setup):
    cfg = _cfg(setup())
    assert doctor.check_disk(cfg, min_free_bytes=1).level is Level.OK
    r = doctor.check_disk(cfg, min_free_bytes=1 << 60)
    assert r.level is Level.FAIL and "MB free" in r.detail and "free some space" in r.detail


def test_disk_threshold_from_the_command_line(setup, capsys):
    code, lines = _run(capsys, "--config", str(setup()), "--min-free-mb", str(1 << 40))
    assert code == 1 and any(line.startswith("FAIL disk:") for line in lines)


def _journal_with_items(state_dir: Path) -> str:
    from pos.core.money import Money
    from pos.journal.journal import Journal
    (state_dir / "journal.db").unlink(missing_ok=True)
    # A journal that cannot be created or written is a failure of this test, never a reason to skip it.
    try:
        j = Journal.open(state_dir / "journal.db", terminal_id="T1")
        stuck = j.create_sale(amount=Money(1250, "USD"), code="281234567890123456", scanned_at=1.7e9, now=1.7e9)
        j.create_sale(amount=Money(500, "USD"), code="281234567890120000", scanned_at=1.7e9, now=1.7e9)
        j.close()
    except Exception as exc:  # any journal error fails the test, with its cause
        pytest.fail(f"could not set up a journal with two open sales in {state_dir}: {type(exc).__name__}: {exc}")
    # the engine would get there through the cancel schedule; here the stored state is set directly
    conn = sqlite3.connect(state_dir / "journal.db")
    conn.execute("UPDATE sales SET state = 'MANUAL_REVIEW' WHERE sale_id = ?", (stuck.sale_id,))
    conn.commit()
    conn.close()
    return stuck.merchant_trans_id


def test_open_items_needing_a_manager_are_listed(setup, tmp_path):
    cfg = _cfg(setup())
    mtid = _journal_with_items(tmp_path / "state")
    r = doctor.check_open_items(cfg)
    assert r.level is Level.WARN and f"1 need a manager: {mtid} MANUAL_REVIEW" in r.detail
    assert doctor.count_open_items(cfg) == 2
    assert doctor.check_journal(cfg).level is Level.OK


def test_status_without_daemon_reads_the_journal(setup, tmp_path, capsys):
    cfg = setup()
    mtid = _journal_with_items(tmp_path / "state")
    code = main(["status", "--config", str(cfg), "--timeout", "0.5"])
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("pos-terminal is not running: nothing answers on 127.0.0.1:")
    assert "open items: 2" in out and f"{mtid} MANUAL_REVIEW" in out and "KiB" in out


# --- one signed query through the configured protocol's client ----------------

def test_gateway_answer_through_the_configured_client(sandbox_server, sandbox_keys, sandbox_clock):
    from pos.config import Config, GatewaySection
    from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
    gateway = GatewaySection(url=sandbox_server.url, private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                             merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                             alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)),
                             connect_timeout=2.0, read_timeout=2.0, sandbox=True)
    r = doctor.check_gateway_answer(Config(gateway=gateway))
    assert r.level is Level.OK and "ORDER_NOT_EXIST" in r.detail and " ms" in r.detail
    assert sandbox_server.ledger.payments(as_datetime(sandbox_clock())) == []   # nothing was created
    # Alipay's key is the merchant's own: the answer cannot verify
    wrong = gateway.model_copy(update={"alipay_public_key": str(sandbox_keys.path(MERCHANT_PUBLIC))})
    r = doctor.check_gateway_answer(Config(gateway=wrong))
    assert r.level is Level.FAIL and "did not verify" in r.detail and "alipay_public_key" in r.detail
    # a gateway that answers, but not the protocol (the HTTP check passes, this one cannot)
    r = doctor.check_gateway_answer(Config(gateway=gateway.model_copy(update={"url": sandbox_server.url + "/nowhere"})))
    assert r.level in (Level.WARN, Level.FAIL)


def test_doctor_and_run_refuse_sandbox_credentials_against_production(tmp_path: Path) -> None:
    """Issue 17: pos doctor and pos run name the sandbox id against a production url."""
    from pos.config import Config, GatewaySection
    from pos.ops.daemon import run

    cfg = Config(gateway=GatewaySection(client_id="SANDBOX_CLIENT"))
    result = doctor.check_credentials(cfg)
    assert result.level is Level.FAIL and "SANDBOX_CLIENT" in result.detail and "Client ID" in result.detail
    assert doctor.check_credentials(Config(gateway=GatewaySection(client_id="2188ABC"))).level is Level.OK
    path = tmp_path / "terminal.toml"
    path.write_text(f'[terminal]\nstate_dir = "{tmp_path}"\n[gateway]\nclient_id = "SANDBOX_CLIENT"\n')
    from pos.core.errors import ConfigError
    with pytest.raises(ConfigError, match="is a sandbox id"):
        run(str(path))


def test_doctor_warns_when_pays_carry_no_store_id() -> None:
    from pos.config import Config, StoreSection

    assert doctor.check_store(Config()).level is Level.WARN
    ok = doctor.check_store(Config(store=StoreSection(id="S-1", name="Cafe")))
    assert ok.level is Level.OK and "S-1" in ok.detail
