"""The nine defects of the hardening issue, each held by a test that failed before its fix.

Real parts: config files, the SQLite journal, the till interface over HTTP on
127.0.0.1, the offline client over HTTP through a fault proxy, ESC/POS bytes.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from urllib3.util import parse_url

from devices.display import fit_line
from devices.messages import Catalogue
from devices.receipt import ReceiptAmount, ReceiptData, ReceiptKind, render_receipt
from devices.scanner import Scan
from pos.config import Config, PrinterSection, load_config
from pos.core.errors import ConfigError
from pos.core.money import Money
from pos.core.outcomes import Failed, Unknown
from pos.gateway.ams import AmsGateway
from pos.gateway.offline import OfflineGateway
from pos.journal.journal import Journal
from pos.ops.daemon import Daemon
from pos.till.api import Tokens, till_server
from tests.fault_proxy import FaultProxy
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys, make_code
from tests.test_ams_client import ams_server, ams_settings  # noqa: F401 - fixtures
from tests.test_offline_client import _FakeGateway, answer
from tests.test_terminal import Rig

TILL, MANAGER = "t" * 32, "m" * 32


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- 1. the plain-HTTP guard is read the way the HTTP client reads the URL ------------

@pytest.mark.parametrize("url", ["http://evil.example\\\\@127.0.0.1", "http://evil.example\\\\@127.0.0.1:8080/x",
                                 "http://127.0.0.1@evil.example", "http://user:pw@127.0.0.1",
                                 "http://127.0.0.1\\\\.evil.example", "http://127.0.0.1 .evil.example"])
def test_1_plain_http_only_to_a_host_that_really_is_loopback(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"\[gateway\] url"):
        load_config(_config(tmp_path, f'[gateway]\nurl = "{url}"\n'))


def test_1_the_bypass_would_have_sent_to_another_host() -> None:
    # What requests (urllib3) makes of the URL the old guard called loopback.
    assert parse_url("http://evil.example\\@127.0.0.1").host == "evil.example"


def test_1_loopback_still_allowed(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:8080", "https://open-sea.alipay.com"):
        assert load_config(_config(tmp_path, f'[gateway]\nurl = "{url}"\n')).gateway.url == url


# -- 2. one gateway call has an overall deadline ----------------------------------------

def test_2_a_trickled_answer_is_cut_at_the_call_deadline(gateway_settings: Any, sandbox_server: Any) -> None:
    with FaultProxy(sandbox_server.url, trickle_interval=0.5) as proxy:
        proxy.fault = "trickle"
        gw = OfflineGateway(gateway_settings.model_copy(update={"url": proxy.url, "connect_timeout": 1.0,
                                                                 "read_timeout": 1.0}))
        done: list[Any] = []
        started = time.monotonic()
        worker = threading.Thread(target=lambda: done.append(gw.pay(
            merchant_trans_id="POS01-D2-000001", identity_code=make_code("00"), amount=Money(100, "SGD"),
            order_title="t")), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert done, "the call was still reading a trickled answer after 10 s"
        assert isinstance(done[0], Unknown) and "deadline" in done[0].reason
        assert time.monotonic() - started < 10
        gw.close()


def test_2_a_trickled_v1_answer_is_cut_at_the_call_deadline(ams_settings: Any) -> None:  # noqa: F811
    # The v1 client ("ams") shares the offline client's transport and so its deadline.
    with FaultProxy(ams_settings.url, trickle_interval=0.5) as proxy:
        proxy.fault = "trickle"
        gw = AmsGateway(ams_settings.model_copy(update={"url": proxy.url, "connect_timeout": 1.0,
                                                         "read_timeout": 1.0}))
        done: list[Any] = []
        started = time.monotonic()
        worker = threading.Thread(target=lambda: done.append(gw.pay(
            merchant_trans_id="POS01-D2-000002", identity_code=make_code("00"), amount=Money(100, "SGD"),
            order_title="t")), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert done, "the v1 call was still reading a trickled answer after 10 s"
        assert isinstance(done[0], Unknown) and "deadline" in done[0].reason and done[0].no_answer
        assert time.monotonic() - started < 10
        assert proxy.counts["trickle"] == 1
        gw.close()


# -- 3. a receipt committed as PAID/REFUNDED is queued even if the daemon died first ----------

def test_3_receipt_lost_between_commit_and_queue_is_queued_on_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    sale_id = rig.payments.start_sale(Money(500, "SGD"), make_code("00"), time.time(), "tea")
    assert rig.payments.wait(sale_id, timeout=10).state.value == "PAID"
    refund_id = rig.payments.refund(sale_id, Money(200, "SGD"), "t")
    assert rig.payments.wait_refund(refund_id, timeout=10).state.value == "REFUNDED"
    rig.close()
    # The daemon died after the commits and before the jobs were queued: no job rows.
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        conn.execute("DELETE FROM print_jobs")
    rig = Rig(tmp_path, ledger=rig.ledger)
    try:
        # Owed receipts are looked for once recovery is over, off the start path: wait for them.
        deadline = time.monotonic() + 10
        while (rig.queue.job(f"sale:{sale_id}") is None or rig.queue.job(f"refund:{refund_id}") is None) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rig.queue.job(f"sale:{sale_id}") is not None
        assert rig.queue.job(f"refund:{refund_id}") is not None
        deadline = time.monotonic() + 5
        while len(rig.printer.jobs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(rig.printer.jobs) == 2
    finally:
        rig.close()


# -- 4. control codes never reach the printer or a display ------------------------------------

def test_4_control_codes_in_texts_never_reach_the_printer() -> None:
    evil = "Tea\x1bp\x00\x19\xfa\x1dV\x00\x1b@\x9b2J"
    data = ReceiptData(kind=ReceiptKind.SALE, merchant_name="Shop\x1bp\x00", store_name="\x1dV\x01",
                       terminal_id="T1", when=__import__("datetime").datetime(2024, 5, 1, 12, 0),
                       amount=ReceiptAmount(500, "SGD", "SGD 5.00"), status_key="status_paid",
                       merchant_trans_id="T1-20240501-AAAA-000001", acquirement_id="2024",
                       code_last4="1234", order_title=evil)
    for encoding in ("GB18030", "UTF-8", "ASCII"):
        out = render_receipt(data, PrinterSection(encoding=encoding), Catalogue.load("en"))
        assert b"\x1bp" not in out                  # no drawer kick
        assert out.count(b"\x1dV") == 1             # one cut, the receipt's own, at the end
        assert out.rstrip(b"\n").endswith(out[out.index(b"\x1dV"):])
        assert b"\xc2\x9b" not in out and b"\x9b2J" not in out


def test_4_c1_controls_never_reach_a_display() -> None:
    line = fit_line("A\x9b2J\x85B\x1b[2J", 20, "UTF-8")
    assert all(ch >= " " and not ("\x7f" <= ch <= "\x9f") for ch in line)


# -- 5. config values that would stop money paths are refused; nested TOML is a config error ----

@pytest.mark.parametrize("section,key,value", [
    ("gateway", "read_timeout", "inf"), ("gateway", "read_timeout", "nan"), ("gateway", "connect_timeout", "1e308"),
    ("payment", "query_deadline", "inf"), ("payment", "background_interval", "inf"),
    ("payment", "query_interval_min", "1e-9"), ("payment", "query_first_delay", "-1.0"),
    ("payment", "cancel_interval", "1e300"), ("manager", "pin_hash", '"garbage"'),
    ("manager", "lockout", "inf"), ("scanner", "dedupe_window", "inf"), ("printer", "retry_interval", "nan"),
])
def test_5_bad_numbers_and_pin_hashes_are_refused(tmp_path: Path, section: str, key: str, value: str) -> None:
    extra = "query_interval_max = 7.0\n" if (section, key) == ("payment", "query_interval_min") else ""
    with pytest.raises(ConfigError, match=rf"\[{section}\] {key}"):
        load_config(_config(tmp_path, f"[{section}]\n{key} = {value}\n{extra}"))


def test_5_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nested"):
        load_config(_config(tmp_path, "x = " + "[" * 50000 + "]" * 50000 + "\n"))
    with pytest.raises(ConfigError):
        load_config(_config(tmp_path, "[keypad]\nkeymap = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"))


def test_5_a_real_pin_hash_is_accepted(tmp_path: Path) -> None:
    from pos.terminal.pin import hash_pin
    pin_hash = hash_pin("1357")
    assert load_config(_config(tmp_path, f'[manager]\npin_hash = "{pin_hash}"\n')).manager.pin_hash == pin_hash


# -- 6. no HTTP 500 on odd tokens and huge ids; the refund menu names a huge id as unknown ------

@pytest.fixture
def till(tmp_path: Path) -> Any:
    rig = Rig(tmp_path)
    server = till_server(rig.terminal, Tokens(TILL, MANAGER), max_wait=5.0).start()
    try:
        yield SimpleNamespace(rig=rig, url=server.url, port=server.port)
    finally:
        server.stop()
        rig.close()


def _auth(token: str = TILL) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_6_non_ascii_token_is_401(till: Any) -> None:
    r = requests.get(till.url + "/v1/health", headers={"Authorization": "Bearer t\xf6ken-t\xf6ken-t\xf6ken"},
                     timeout=5)
    assert r.status_code == 401
    r = requests.get(till.url + "/v1/health", headers={"Authorization": b"Bearer \xe2\x82\xac-euro-euro-euro"},
                     timeout=5)
    assert r.status_code == 401


def test_6_sale_ids_above_2_63_are_404(till: Any) -> None:
    huge = "99999999999999999999"
    assert requests.get(f"{till.url}/v1/sales/{huge}", headers=_auth(), timeout=5).status_code == 404
    assert requests.post(f"{till.url}/v1/sales/{huge}/cancel", headers=_auth(), timeout=5).status_code == 404
    r = requests.post(f"{till.url}/v1/refunds", json={"saleId": huge}, headers=_auth(MANAGER), timeout=5)
    assert r.status_code == 404


def test_6_huge_sale_number_scanned_in_the_refund_menu(till: Any) -> None:
    rig = till.rig
    rig.terminal.manager.select_sale("99999999999999999999")
    assert rig.cashier(lambda lines: lines[0] == "No such sale")


@pytest.mark.parametrize("body,why", [(b'{"amount": "\xff"}', "not UTF-8"), (b"[" * 60000, "nested too deeply"),
                                      (b'{"amount": "1.00",}', "at character 18"), (b"{not json", "at character 1")])
@pytest.mark.parametrize("path,token", [("/v1/sales", TILL), ("/v1/refunds", MANAGER)])
def test_a_body_that_is_not_json_is_400_with_what_is_wrong_and_what_to_do(till: Any, body: bytes, why: str,
                                                                          path: str, token: str) -> None:
    r = requests.post(till.url + path, data=body, timeout=5,
                      headers={**_auth(token), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["title"] == "Body is not JSON" and problem["status"] == 400
    assert why in problem["detail"] and "send one JSON object in UTF-8" in problem["detail"]
    assert till.rig.journal.list_sales() == [] and till.rig.terminal.mode.value == "IDLE"


# -- 7. gateway fields are not trusted beyond what they are -----------------------------------

@pytest.fixture
def fake(sandbox_keys: SandboxKeys, gateway_settings: Any) -> Any:
    server = _FakeGateway()
    gw = OfflineGateway(gateway_settings.model_copy(update={"url": server.url}))
    try:
        yield server, gw
    finally:
        gw.close()
        server.close()


def _pay(gw: OfflineGateway, code: str) -> Any:
    return gw.pay(merchant_trans_id="POS01-D7-000001", identity_code=code, amount=Money(100, "SGD"),
                  order_title="t")


def _signed(keys: SandboxKeys, head: dict[str, Any], status: str, code: str, **body: Any) -> bytes:
    from pos.gateway.signing import build_signed
    rhead = {"version": head["version"], "function": head["function"], "clientId": head["clientId"],
             "reqMsgId": head["reqMsgId"], "reserve": "{}"}
    return build_signed("response", rhead, {"resultInfo": {"resultStatus": status, "resultCode": code,
                                                           "resultCodeId": "1", "resultMsg": "m"}, **body},
                        keys.alipay_private)


def test_7_a_code_echoed_in_result_code_is_not_kept(fake: Any, sandbox_keys: SandboxKeys) -> None:
    server, gw = fake
    code = make_code("00")
    server.responder = lambda head: (200, _signed(sandbox_keys, head, "F", code))
    res = _pay(gw, code)
    assert isinstance(res, Failed) and code not in repr(res) and res.code != code


def test_7_an_acquirement_id_equal_to_the_code_is_not_kept(fake: Any, sandbox_keys: SandboxKeys) -> None:
    server, gw = fake
    code = make_code("00")
    server.responder = lambda head: (200, _signed(sandbox_keys, head, "S", "SUCCESS", acquirementId=code,
                                                  note=f"x{code}x"))
    res = _pay(gw, code)
    assert code not in repr(res)
    assert isinstance(res, Unknown)   # no usable acquirementId: the engine asks again


@pytest.mark.parametrize("acq", [None, "", 12345, "bad id with spaces", "x" * 65])
def test_7_a_signed_s_without_a_usable_acquirement_id_is_not_paid(fake: Any, sandbox_keys: SandboxKeys,
                                                                  acq: Any) -> None:
    server, gw = fake
    extra = {} if acq is None else {"acquirementId": acq}
    server.responder = lambda head: (200, _signed(sandbox_keys, head, "S", "SUCCESS", **extra))
    assert isinstance(_pay(gw, make_code("00")), Unknown)


def test_7_a_well_formed_answer_is_still_believed(fake: Any, sandbox_keys: SandboxKeys) -> None:
    server, gw = fake
    server.responder = lambda head: (200, answer(sandbox_keys, head))
    assert not isinstance(_pay(gw, make_code("00")), Unknown)


# -- 8. bodies are bounded and the token checked before any body is read; long-polls ------------

def _raw_post(port: int, headers: str, first_bytes: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST /v1/sales HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
                  f"Content-Length: 100000000\r\n\r\n".encode() + b"{" * first_bytes)
        s.settimeout(5)
        try:
            return s.recv(4096)
        except TimeoutError:
            return b"(no answer in 5 s)"


def test_8_a_huge_body_without_token_is_refused_before_it_is_read(till: Any) -> None:
    assert _raw_post(till.port, "", 1024).startswith(b"HTTP/1.1 401")


def test_8_a_huge_body_with_a_token_is_refused_by_its_length(till: Any) -> None:
    assert _raw_post(till.port, f"Authorization: Bearer {TILL}\r\n", 1024).startswith(b"HTTP/1.1 413")


def test_8_long_polls_cannot_starve_health(till: Any) -> None:
    r = requests.post(till.url + "/v1/sales", json={"amount": "1.00"}, headers=_auth(), timeout=5)
    sale = r.json()["id"]
    finished: list[int] = []

    def poll() -> None:
        requests.get(f"{till.url}/v1/sales/{sale}?wait=5", headers=_auth(), timeout=30)
        finished.append(1)

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(50)]
    for t in pollers:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert requests.get(till.url + "/v1/health", headers=_auth(), timeout=30).status_code == 200
    answered_in = time.monotonic() - started
    # Health answered while long-polls were still waiting, not after them.
    assert answered_in < 3.0 and len(finished) < 50
    for t in pollers:
        t.join(timeout=15)


# -- 9. private files whatever the umask; the till interface stays on loopback ----------------

def test_9_journal_wal_and_lock_file_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        state = tmp_path / "state"
        journal = Journal.open(state / "journal.db")
        journal.db.write("CREATE TABLE IF NOT EXISTS t (x)")
        for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
            mode = stat.S_IMODE((state / name).stat().st_mode)
            assert mode & 0o077 == 0, f"{name} is {mode:04o}"
        assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0
        journal.close()
        holder = SimpleNamespace()
        Daemon._lock_state_dir(holder, state)  # type: ignore[arg-type]
        assert stat.S_IMODE((state / "pos-run.lock").stat().st_mode) & 0o077 == 0
        holder._run_lock.close()
    finally:
        os.umask(old)


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "[::]:8765", "192.168.1.5:8765", "pos.local:8765"])
def test_9_listen_off_loopback_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        load_config(_config(tmp_path, f'[ecr]\nlisten = "{listen}"\n'))


def test_9_listen_on_loopback_is_fine(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:8765", "[::1]:8765", "localhost:8765"):
        assert load_config(_config(tmp_path, f'[ecr]\nlisten = "{listen}"\n')).ecr.listen == listen


def test_config_default_is_still_valid() -> None:
    Config()


# -- found by the daemon soak: a display that does not read delays nothing but itself -----------------

def _health(url: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    r = requests.get(url + "/v1/health", headers=_auth(), timeout=30)
    assert r.status_code == 200
    return r.json(), time.monotonic() - started


def test_a_display_that_stops_reading_delays_no_sale_no_display_and_no_health(tmp_path: Path) -> None:
    # Each write to the stuck display waits 4 s before it gives up: a sale that waited for the display
    # (at least two screens: "scan", then the outcome) would take 8 s or more.
    rig = Rig(tmp_path, display_write_timeout=4.0)
    server = till_server(rig.terminal, Tokens(TILL, MANAGER), max_wait=15.0).start()
    try:
        rig.customer_pty.wait_for(lambda lines: lines != ("", ""))
        assert rig.customer_pty.stop_reading() > 0     # its pty's buffer is full: every write would block

        started = time.monotonic()
        r = requests.post(server.url + "/v1/sales", json={"amount": "1.00"}, headers=_auth(), timeout=30)
        assert r.status_code == 201
        rig.terminal.on_scanner_event(Scan(make_code("00")))
        r = requests.get(f"{server.url}/v1/sales/{r.json()['id']}?wait=15", headers=_auth(), timeout=30)
        assert r.json()["state"] == "PAID"
        assert rig.cashier(lambda lines: lines[0].startswith("PAID"), timeout=5)[1] == "Hand over goods"
        assert time.monotonic() - started < 6.0, "the sale waited for the display that does not read"

        # Health answers while a screen waits for the stuck display, and names it.
        typing = threading.Thread(target=rig.keys, args=("E",))   # RESULT -> Ready on both displays
        typing.start()
        deadline = time.monotonic() + 15
        while True:
            health, took = _health(server.url)
            assert took < 2.5, f"health took {took:.1f} s"
            if not health["devices"]["display"]["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        typing.join(timeout=5)
        assert not typing.is_alive()
        error = health["devices"]["display"]["last_error"]
        assert health["status"] == "degraded" and error.startswith("customer display: ")
        assert "does not read" in error and "cashier display" not in error
        assert rig.cashier(lambda lines: lines[0] == "Ready", timeout=5)[0] == "Ready"

        # It reads again: it shows the current screen, and health says so.
        ready = tuple(line.rstrip() for line in rig.terminal.customer_text.customer("ready"))
        rig.customer_pty.received.clear()
        assert rig.customer_pty.wait_for(lambda lines: lines == ready, timeout=15) == ready
        deadline = time.monotonic() + 10
        while not (health := _health(server.url)[0])["devices"]["display"]["ok"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health["devices"]["display"] == {"ok": True, "last_error": None}
    finally:
        server.stop()
        rig.close()
