"""Headquarters: terminals ship their journals' events to a real PostgreSQL through a real HTTP service.

Each terminal is a PaymentRunner over the sandbox (DirectGateway) with its own
journal file and the daemon's shipper thread; headquarters is `HqService`
(the code `pos hq serve` runs) on 127.0.0.1 over a PostgreSQL server the
tests start themselves (tests/pg_fixtures.py).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from pos.cli.main import main
from pos.config import HqSection, PaymentSection
from pos.core.money import Money
from pos.core.records import SaleRecord, SaleState
from pos.hq.db import HqDB
from pos.hq.reconcile import chain_reconcile
from pos.hq.schema import SCHEMA_VERSION
from pos.hq.service import HqService
from pos.journal import outbox
from pos.journal.journal import Journal
from pos.journal.outbox import OUTBOX_TABLES
from pos.journal.print_jobs import JournalPrintJobs
from pos.journal.schema import MIGRATIONS
from pos.ops.hq_shipper import HqShipper, ShipError
from pos.payments.runner import PaymentRunner
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger, as_datetime
from pos.sandbox.scenarios import make_code
from tests.pg_fixtures import *  # noqa: F403
from tests.sandbox_fixtures import short_options

# The outbox's migration is the one that creates its tables (numbered from 1).
OUTBOX_MIGRATION = next(n for n, step in enumerate(MIGRATIONS, 1) if step == list(OUTBOX_TABLES))
START = 1_714_536_000.0   # 2024-05-01 12:00 Beijing


class ScaledClock:
    """Terminal time runs 1000 times faster than real time (the runner's 60 s schedule takes 60 ms)."""

    def __init__(self) -> None:
        self.m0 = time.monotonic()

    def now(self) -> float:
        return START + (time.monotonic() - self.m0) * 1000.0

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(None if timeout is None else max(timeout, 0.0) / 1000.0)


def wait_for(what: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


class Till:
    """One terminal: journal, payments runner over the sandbox, and the shipper to headquarters."""

    def __init__(self, tmp: Path, terminal_id: str, token: str, hq_url: str, *, ledger: Ledger | None = None,
                 clock: ScaledClock | None = None, journal_file: Path | None = None) -> None:
        self.terminal_id, self.token = terminal_id, token
        self.clock = clock or ScaledClock()
        self.ledger = ledger or Ledger(short_options(wallet_confirm_after=3.0))
        self.journal = Journal.open(journal_file or tmp / f"{terminal_id}.db", terminal_id=terminal_id)
        self.runner = PaymentRunner(self.journal, DirectGateway(self.ledger, self.clock.now),
                                    PaymentSection(background_interval=100.0, alarm_after=100000.0), clock=self.clock)
        self.runner.recover()
        self.alarms: list[str] = []
        self.codes: list[str] = []
        self.printer: Any = None   # the printer print_receipt printed on
        self.shipper = HqShipper(self.journal.db, HqSection(url=hq_url, interval=0.05, backoff_max=0.2,
                                                            timeout=2.0, batch_size=7, backlog_alarm=100),
                                 token=token, terminal_id=terminal_id, install_id=self.journal.install_id,
                                 alarm=self.alarms.append, health=lambda: {"status": "ok", "open_items": 0})

    def sell(self, scenario: str = "00", amount: int = 1250, title: str = "Coffee") -> SaleState:
        code = make_code(scenario)
        self.codes.append(code)
        sale_id = self.runner.start_sale(Money(amount, "USD"), code, self.clock.now(), title)
        record = self.runner.wait(sale_id, timeout=20)
        assert record is not None
        return record.state

    def events(self) -> int:
        return int(self.journal.db.value("SELECT COUNT(*) FROM events"))

    def close(self) -> None:
        self.shipper.stop()
        self.runner.stop()
        self.journal.close()


def print_receipt(till: Till, printer_settings: Any = None) -> SaleRecord:
    """The till's first sale's receipt printed through its print queue (job sale:ID, as the terminal names it),
    on a printer with `printer_settings` (a [printer] section; the defaults without)."""
    from devices.messages import Catalogue
    from devices.print_queue import PrintQueue
    from devices.printer import DummyPrinter
    from pos.config import Config, PrinterSection
    from pos.journal.print_jobs import JournalPrintJobs
    from pos.terminal.receipts import receipt_for

    paid = till.journal.list_sales()[0]
    printer = DummyPrinter()
    till.printer = printer
    queue = PrintQueue(JournalPrintJobs(till.journal), printer, printer_settings=printer_settings or PrinterSection(),
                       catalogue=Catalogue.load("en"))
    assert queue.enqueue(f"sale:{paid.sale_id}", receipt_for(Config(), till.journal, paid))
    assert queue.print_pending() == 1 and printer.jobs
    return paid


@pytest.fixture
def hq(hq_dsn: str) -> Iterator[HqService]:
    HqDB(hq_dsn).migrate()
    service = HqService(hq_dsn, "127.0.0.1:0").start()
    yield service
    service.stop()


def stored(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def test_terminals_ship_everything_once_through_a_headquarters_outage(tmp_path: Path, hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    db.migrate()
    service = HqService(hq_dsn, "127.0.0.1:0").start()
    port = service.server.port
    tills = [Till(tmp_path, f"POS0{n}", db.add_terminal(f"POS0{n}", f"S{n % 2}"), service.url) for n in (1, 2, 3)]
    try:
        for t in tills:
            t.shipper.start()
            assert t.sell("00") is SaleState.PAID
        tills[0].sell("01")
        wait_for(lambda: all(outbox.backlog(t.journal.db) == 0 for t in tills)
                 and stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == sum(t.events() for t in tills))

        service.stop()   # headquarters goes down mid-day; the terminals keep selling
        before = time.monotonic()
        for t in tills:
            assert t.sell("00", amount=500) is SaleState.PAID
        assert time.monotonic() - before < 10
        tills[1].sell("15")                                 # a sale a person has to look at
        wait_for(lambda: all(t.shipper.last_error for t in tills))
        waiting = [outbox.backlog(t.journal.db) for t in tills]
        assert all(n > 0 for n in waiting)
        with pytest.raises(ShipError, match="not reachable"):
            tills[0].shipper.ship_once()

        service = HqService(hq_dsn, f"127.0.0.1:{port}").start()   # back, same address
        for t in tills:
            t.runner.stop()   # the day ends (an open item's background queries would keep adding events)
        wait_for(lambda: all(outbox.backlog(t.journal.db) == 0 for t in tills)
                 and stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == sum(t.events() for t in tills))
        for t in tills:
            ours = t.events()
            theirs = stored(hq_dsn, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events "
                                    "WHERE terminal_id = %s", t.terminal_id)[0]
            assert theirs == (ours, ours, 1, ours)   # every event, once, no gap
            states = {s.merchant_trans_id: s.state.value for s in t.journal.list_sales()}
            assert dict(stored(hq_dsn, "SELECT ref, state FROM items WHERE terminal_id = %s AND item_kind = 'sale'",
                               t.terminal_id)) == states
        assert stored(hq_dsn, "SELECT state FROM items WHERE terminal_id = 'POS02' AND state = 'MANUAL_REVIEW'")
        seen = stored(hq_dsn, "SELECT terminal_id, backlog, last_seen IS NOT NULL FROM terminals ORDER BY 1")
        assert seen == [("POS01", 0, True), ("POS02", 0, True), ("POS03", 0, True)]
        # Never a full payment code at headquarters: only the masked form.
        bodies = stored(hq_dsn, "SELECT body::text FROM events")
        codes = [c for t in tills for c in t.codes]
        assert len(codes) == 8 and not any(c in b[0] or c[-6:] in b[0] for b in bodies for c in codes)
        assert any(f'"code_masked": "{"*" * 14}{codes[0][-4:]}"' in b[0] for b in bodies)
    finally:
        for t in tills:
            t.close()
        service.stop()


def test_a_replayed_batch_changes_nothing(tmp_path: Path, hq: HqService, hq_dsn: str) -> None:
    token = HqDB(hq_dsn).add_terminal("POS01", "S1")
    till = Till(tmp_path, "POS01", token, hq.url)
    try:
        till.sell("00")
        batch = [e.wire() for e in outbox.pending(till.journal.db, 100)]
        body = {"terminal_id": "POS01", "install_id": till.journal.install_id, "events": batch, "heartbeat": {}}
        auth = {"Authorization": f"Bearer {token}"}
        first = requests.post(f"{hq.url}/v1/ingest", json=body, headers=auth, timeout=10)
        assert first.status_code == 200 and first.json()["stored"] == len(batch) > 0
        snapshot = stored(hq_dsn, "SELECT * FROM items"), stored(hq_dsn, "SELECT count(*) FROM events")
        # The acknowledgement was lost: the shipper sends the same batch again, and then once more.
        while till.shipper.ship_once():
            pass
        again = requests.post(f"{hq.url}/v1/ingest", json=body, headers=auth, timeout=10)
        assert again.status_code == 200 and again.json() == {"stored": 0, "duplicates": len(batch),
                                                              "upto": batch[-1]["seq"]}
        assert (stored(hq_dsn, "SELECT * FROM items"), stored(hq_dsn, "SELECT count(*) FROM events")) == snapshot
        assert outbox.backlog(till.journal.db) == 0
    finally:
        till.close()


def test_a_terminals_credential_writes_only_its_own_events(tmp_path: Path, hq: HqService, hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    mine, theirs = db.add_terminal("POS01", "S1"), db.add_terminal("POS02", "S2")
    event = {"seq": 1, "at": START, "kind": "event", "body": {"ref": "X", "dest": "PAID"}}
    body = {"terminal_id": "POS02", "install_id": "ABCDEF", "events": [event], "heartbeat": {}}
    r = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {mine}"}, timeout=10)
    assert r.status_code == 403 and "belongs to terminal POS01" in r.json()["detail"]
    r = requests.post(f"{hq.url}/v1/ingest", json=body, timeout=10)
    assert r.status_code == 401 and r.json()["title"] == "Missing bearer token"
    r = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": "Bearer hq1_guessed-guessed"},
                      timeout=10)
    assert r.status_code == 401
    assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == 0
    # Revoked: the old credential stops working, the stored events stay.
    ok = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {theirs}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["stored"] == 1
    assert db.revoke("POS02")
    r = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {theirs}"}, timeout=10)
    assert r.status_code == 401 and "revoked" in r.json()["title"]
    assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == 1
    # A malformed batch is a clear 422, never a 500.
    bad = requests.post(f"{hq.url}/v1/ingest", json={"terminal_id": "POS01", "events": "x"},
                        headers={"Authorization": f"Bearer {mine}"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["title"] == "Invalid request"


def test_backlog_alarm_while_headquarters_is_unreachable(tmp_path: Path, hq_dsn: str) -> None:
    till = Till(tmp_path, "POS01", "hq1_" + "x" * 40, "http://127.0.0.1:9")
    try:
        for _ in range(20):
            till.journal.create_sale(amount=Money(100, "USD"), code=make_code("00"), scanned_at=START, now=START)
        with pytest.raises(ShipError):
            till.shipper.ship_once()
        assert till.alarms == []
        for _ in range(90):
            till.journal.create_sale(amount=Money(100, "USD"), code=make_code("00"), scanned_at=START, now=START)
        with pytest.raises(ShipError):
            till.shipper.ship_once()
        assert len(till.alarms) == 1 and "110 events wait" in till.alarms[0]
        assert outbox.backlog(till.journal.db) == 110   # nothing is dropped
    finally:
        till.close()


def test_hq_commands(hq_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["hq", "add-terminal", "POS01", "--store", "S1", "--dsn", hq_dsn]) != 0
    assert "run 'pos hq init-db' first" in capsys.readouterr().err
    assert main(["hq", "init-db", "--dsn", hq_dsn]) == 0
    assert f"version {SCHEMA_VERSION} (was 0)" in capsys.readouterr().out
    assert main(["hq", "init-db", "--dsn", hq_dsn]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["hq", "add-terminal", "POS01", "--store", "S1", "--store-name", "Main St", "--dsn", hq_dsn]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("hq1_") and "shown only now" in out.err
    assert HqDB(hq_dsn).authenticate(token) is not None
    assert stored(hq_dsn, "SELECT count(*) FROM terminals WHERE token_sha256 LIKE %s", f"%{token}%")[0][0] == 0
    assert main(["hq", "add-terminal", "POS01", "--store", "S1", "--dsn", hq_dsn]) != 0
    assert "already registered" in capsys.readouterr().err
    assert main(["hq", "revoke", "POS01", "--dsn", hq_dsn]) == 0
    assert HqDB(hq_dsn).authenticate(token) is None
    assert main(["hq", "revoke", "POS01", "--dsn", hq_dsn]) != 0
    assert main(["hq", "add-terminal", "bad id!", "--store", "S1", "--dsn", hq_dsn]) != 0
    assert "use letters, digits" in capsys.readouterr().err
    monkeypatch.delenv("POS_HQ_DSN", raising=False)
    assert main(["hq", "init-db", "--dsn", ""]) != 0
    assert "POS_HQ_DSN" in capsys.readouterr().err
    assert main(["hq", "init-db", "--dsn", "postgresql://pos@127.0.0.1:9/none"]) != 0
    assert "cannot reach headquarters' database" in capsys.readouterr().err


def test_dashboard_shows_terminals_totals_and_waiting_items(tmp_path: Path, hq: HqService, hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    db.add_user("maria", "correct horse", "manager")
    till = Till(tmp_path, "POS07", db.add_terminal("POS07", "S9", "Harbour"), hq.url)
    try:
        till.sell("00", amount=4200)
        till.sell("15")
        while till.shipper.ship_once():
            pass
        web = requests.Session()
        assert web.get(f"{hq.url}/", timeout=10).url.endswith("/login")
        bad = web.post(f"{hq.url}/login", data={"name": "maria", "password": "wrong"}, timeout=10)
        assert bad.status_code == 401 and "Wrong name or password" in bad.text
        page = web.post(f"{hq.url}/login", data={"name": "maria", "password": "correct horse"}, timeout=10)
        assert page.status_code == 200 and "Harbour" in page.text and "POS07" in page.text
        assert "MANUAL_REVIEW" in page.text
        assert "<script" not in page.text and "http" not in page.text.split("<main>")[1]   # nothing from elsewhere
        day = time.strftime("%Y-%m-%d", time.gmtime(START))
        page = web.get(f"{hq.url}/?day={day}", timeout=10)
        assert "42.00 USD" in page.text and "totals-chart" in page.text

        # A read-only login sees the same pages and may change nothing; a manager may revoke a credential.
        db.add_user("tom", "read only please", "viewer")
        viewer = requests.Session()
        page = viewer.post(f"{hq.url}/login", data={"name": "tom", "password": "read only please"}, timeout=10)
        assert "POS07" in page.text and "Revoke" not in page.text
        assert viewer.post(f"{hq.url}/terminals/POS07/revoke", timeout=10).status_code == 403
        assert db.authenticate(till.shipper._session.headers["Authorization"].split()[1]) is not None
        assert "Revoke" in web.get(f"{hq.url}/", timeout=10).text
        assert web.post(f"{hq.url}/terminals/POS07/revoke", timeout=10).status_code == 200
        with pytest.raises(ShipError, match="401"):
            till.shipper.ship_once()
    finally:
        till.close()


def test_chain_reconciliation_matches_every_terminals_sales(tmp_path: Path, hq: HqService, hq_dsn: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """One merchant account, three tills in two stores: Alipay's one file matches all of them."""
    db = HqDB(hq_dsn)
    ledger, clock = Ledger(short_options(wallet_confirm_after=3.0)), ScaledClock()
    tills = [Till(tmp_path, tid, db.add_terminal(tid, store), hq.url, ledger=ledger, clock=clock)
             for tid, store in (("POS01", "S1"), ("POS02", "S1"), ("POS03", "S2"))]
    try:
        for n, t in enumerate(tills):
            assert t.sell("00", amount=1000 + n) is SaleState.PAID
        assert tills[2].sell("01") is SaleState.DECLINED
        for t in tills:
            t.runner.stop()
            while t.shipper.ship_once():
                pass
        day = "2024-05-01"
        folder = tmp_path / "alipay"
        ledger.export_files(folder, day, now=as_datetime(clock.now()))
        assert main(["hq", "reconcile", "--date", day, "--dir", str(folder), "--dsn", hq_dsn]) == 0
        out = capsys.readouterr().out
        assert "3 items, 0 to look at" in out
        for n, tid in enumerate(("POS01", "POS02", "POS03")):
            assert f"terminal {tid} USD: matched 1; paid {1000 + n}, refunded 0, fees " in out
        per = {r["terminal"]: r for r in db.reconciliation(day)["perTerminal"]}
        assert per["POS03"]["store"] == "S2" and per["POS03"]["netSettlement"] == 1002 - per["POS03"]["fees"]

        # Alipay's file loses POS02's payment: the report names the store and terminal that has it.
        path = next(folder.glob("ALIPAY_TRANSACTION_DETAIL_*"))
        mtid = tills[1].journal.list_sales()[0].merchant_trans_id
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if mtid not in line))
        assert main(["hq", "reconcile", "--date", day, "--dir", str(folder), "--dsn", hq_dsn]) == 1
        out = capsys.readouterr().out
        assert f"ours_only: {mtid} (payment) store S1 terminal POS02" in out
        stored_result = db.reconciliation(day)
        assert stored_result is not None and [i["terminal"] for i in stored_result["items"]
                                              if i["class"] == "ours_only"] == ["POS02"]
        assert main(["hq", "reconcile", "--date", "2024-05-02", "--dir", str(folder), "--dsn", hq_dsn]) != 0
        assert "no reconciliation files of 2024-05-02" in capsys.readouterr().err
    finally:
        for t in tills:
            t.close()


def test_a_chain_manager_uses_the_dashboard_in_chromium(tmp_path: Path, hq: HqService, hq_dsn: str,
                                                        record_property: Callable[[str, object], None]) -> None:
    from tests.cdp import Browser, chromium_path

    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian's 'chromium'; tests/system-deps.sh installs it as root)")
    db = HqDB(hq_dsn)
    db.add_user("maria", "correct horse", "manager")
    ledger, clock = Ledger(short_options(wallet_confirm_after=3.0)), ScaledClock()
    tills = [Till(tmp_path, tid, db.add_terminal(tid, store, name), hq.url, ledger=ledger, clock=clock)
             for tid, store, name in (("POS01", "S1", "Harbour"), ("POS02", "S2", "Old Town"))]
    try:
        tills[0].sell("00", amount=4200)
        tills[1].sell("00", amount=1550)
        tills[1].sell("15")
        # POS01 prints the paid sale's receipt through its print queue: the print outcome ships with the receipt.
        paid = print_receipt(tills[0])
        for t in tills:
            t.runner.stop()
            while t.shipper.ship_once():
                pass
        day = "2024-05-01"
        ledger.export_files(tmp_path / "alipay", day, now=as_datetime(clock.now()))
        chain_reconcile(db, day, tmp_path / "alipay")
        with Browser() as page:
            page.goto(f"{hq.url}/")
            assert page.js("location.pathname") == "/login"
            page.submit("document.getElementById('name').value = 'maria';"
                        "document.getElementById('password').value = 'correct horse';"
                        "document.getElementById('login').click()")
            page.goto(f"{hq.url}/?day={day}")
            rows = page.js("[...document.querySelectorAll('#terminals tr.terminal')].map(r => r.innerText)")
            assert len(rows) == 2 and "Harbour" in rows[0] and "up" in rows[0] and "Old Town" in rows[1]
            assert "57.50 USD" in page.js("document.getElementById('totals').innerText")  # 42.00 + 15.50, chain-wide
            assert page.js("document.querySelectorAll('#totals-chart rect').length") == 2
            waiting = page.js("document.getElementById('waiting').innerText")
            assert "MANUAL_REVIEW" in waiting and "POS02" in waiting
            shot = page.screenshot(tmp_path / "hq-dashboard.png")
            page.submit("document.getElementById('reconcile-link').click()")
            problems = page.js("[...document.querySelectorAll('#reconcile-problems tr.problem')].map(r => r.innerText)")
            assert len(problems) <= 1 and all("POS02" in p for p in problems)   # the sale under review, if charged
            per = page.js("document.getElementById('per-terminal').innerText")
            assert "POS01" in per and "POS02" in per
            page.screenshot(tmp_path / "hq-reconciliation.png")
            # The receipt of POS01's sale, as a picture, from its item page.
            page.goto(f"{hq.url}/item/POS01/{paid.merchant_trans_id}")
            size = page.js("(async () => { const img = document.querySelector('img.receipt');"
                           " await img.decode(); return [img.naturalWidth, img.naturalHeight]; })()")
            assert size[0] > 300 and size[1] > 300
            page.screenshot(tmp_path / "hq-receipt.png")
            page.goto(page.js("document.querySelector('img.receipt').src"))
            assert page.js("document.contentType") == "image/png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # Kept where a person looks after the run (build/ is not committed), and named in the report.
        keep = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("hq-dashboard.png", "hq-reconciliation.png", "hq-receipt.png"):
            shutil.copy(tmp_path / name, keep / name)
        names = " ".join(str(keep / n) for n in ("hq-dashboard.png", "hq-reconciliation.png", "hq-receipt.png"))
        record_property("screenshots", names)
        print(f"screenshots: {names}")
    finally:
        for t in tills:
            t.close()


def test_shipping_over_https_trusts_only_the_configured_ca(tmp_path: Path, hq_dsn: str) -> None:
    from tests.sdk.support import tls_files

    ca, cert, key = tls_files(tmp_path)
    db = HqDB(hq_dsn)
    db.migrate()
    service = HqService(hq_dsn, "127.0.0.1:0", tls_cert=str(cert), tls_key=str(key)).start()
    till = Till(tmp_path, "POS01", db.add_terminal("POS01", "S1"), service.url)
    try:
        assert service.url.startswith("https://")
        till.sell("00")
        with pytest.raises(ShipError, match="not trusted: set \\[hq\\] ca_file"):
            till.shipper.ship_once()
        trusting = HqShipper(till.journal.db, HqSection(url=service.url, ca_file=str(ca)), token=till.token,
                             terminal_id="POS01", install_id=till.journal.install_id)
        assert trusting.ship_once() > 0
        trusting.stop()
        assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == till.events()
    finally:
        till.close()
        service.stop()


def test_doctor_checks_the_hq_link(tmp_path: Path, hq: HqService, hq_dsn: str) -> None:
    from pos.config import Config, TerminalSection
    from pos.ops.checks import Level
    from pos.ops.doctor import check_hq

    token = tmp_path / "hq.token"
    cfg = Config(terminal=TerminalSection(state_dir=str(tmp_path / "state")),
                 hq=HqSection(url=hq.url, token_file=str(token)))
    missing = check_hq(cfg)
    assert missing.level is Level.FAIL and "is missing" in missing.line()
    token.write_text(HqDB(hq_dsn).add_terminal("POS01", "S1") + "\n")
    token.chmod(0o644)
    assert check_hq(cfg).level is Level.FAIL and "chmod 600" in check_hq(cfg).line()
    token.chmod(0o600)
    journal = Journal.open(tmp_path / "state" / "journal.db")
    journal.create_sale(amount=Money(100, "USD"), code=make_code("00"), scanned_at=START, now=START)
    journal.close()
    good = check_hq(cfg)
    assert good.level is Level.OK and "1 events wait to be shipped" in good.line()
    down = check_hq(cfg.model_copy(update={"hq": HqSection(url="http://127.0.0.1:9", token_file=str(token))}))
    assert down.level is Level.WARN and "keeps selling" in down.line()


def test_a_journal_from_before_the_outbox_ships_its_history(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    journal.create_sale(amount=Money(700, "USD"), code=make_code("00"), scanned_at=START, now=START)
    journal.create_sale(amount=Money(800, "USD"), code=make_code("00"), scanned_at=START, now=START)
    # Back to the schema before the outbox (the migration before the last): no table, no triggers.
    later = [f"ALTER TABLE {table} DROP COLUMN goods" for table in ("sales", "till_sales")]   # migration 8
    later.append("ALTER TABLE sales DROP COLUMN result_cause")   # migration 10
    for sql in ("DROP TRIGGER hq_outbox_event", "DROP TRIGGER hq_outbox_print", "DROP TABLE hq_outbox", *later,
                f"UPDATE schema_version SET version = {OUTBOX_MIGRATION - 1}"):
        journal._conn.execute(sql)
    journal.close()
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    try:
        pending = outbox.pending(journal.db, 10)
        assert [(e.body["event_id"], e.body["amount_minor"]) for e in pending] == [(1, 700), (2, 800)]
        journal.create_sale(amount=Money(900, "USD"), code=make_code("00"), scanned_at=START, now=START)
        assert [e.seq for e in outbox.pending(journal.db, 10)] == [1, 2, 3]
    finally:
        journal.close()


def test_a_terminal_that_ships_nowhere_writes_no_outbox_and_resumes_in_order(tmp_path: Path) -> None:
    """[hq] off (the default): the outbox's triggers are off, so it does not grow for ever nor cost
    each commit a row; turned on again it first takes the events written meanwhile, each once."""
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    try:
        journal.create_sale(amount=Money(700, "USD"), code=make_code("00"), scanned_at=START, now=START)
        shipped = [e.body["event_id"] for e in outbox.pending(journal.db, 100)]
        assert shipped == [1] and outbox.set_writing(journal.db, True) == 0   # on already: nothing to do
        assert outbox.set_writing(journal.db, False) == 0 and outbox.set_writing(journal.db, False) == 0
        for minor in (800, 900):
            journal.create_sale(amount=Money(minor, "USD"), code=make_code("00"), scanned_at=START, now=START)
        jobs = JournalPrintJobs(journal)
        assert jobs.add("sale:2", b"receipt", record=None, reprint_of=None, created_at=START)
        job = jobs.next_pending()
        assert job is not None
        jobs.mark_done(job.job_id, START)
        assert outbox.backlog(journal.db) == 1          # nothing written while off, print outcomes included
        assert outbox.set_writing(journal.db, True) == 2
        pending = outbox.pending(journal.db, 100)
        assert [(e.body["event_id"], e.body["amount_minor"]) for e in pending] == [(1, 700), (2, 800), (3, 900)]
        assert outbox.set_writing(journal.db, True) == 0   # no second copy
        journal.create_sale(amount=Money(1000, "USD"), code=make_code("00"), scanned_at=START, now=START)
        assert [e.body["event_id"] for e in outbox.pending(journal.db, 100)] == [1, 2, 3, 4]
    finally:
        journal.close()
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")   # the switch is kept in the journal
    try:
        outbox.set_writing(journal.db, False)
        journal.create_sale(amount=Money(1100, "USD"), code=make_code("00"), scanned_at=START, now=START)
    finally:
        journal.close()
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    try:
        assert outbox.backlog(journal.db) == 4 and outbox.set_writing(journal.db, True) == 1
        assert [e.body["event_id"] for e in outbox.pending(journal.db, 100)] == [1, 2, 3, 4, 5]
    finally:
        journal.close()


def test_unknown_paths_and_wrong_methods_get_a_problem_or_a_page_never_an_empty_body(
        hq: HqService, hq_dsn: str) -> None:
    # The API (/v1/...) answers problem details; the dashboard answers a plain page a person can read.
    for method, path, status, says in [("GET", "/v1/nope", 404, "No such endpoint: GET /v1/nope"),
                                       ("GET", "/v1/ingest", 405, "/v1/ingest does not take GET: use POST"),
                                       ("DELETE", "/v1/health", 405, "/v1/health does not take DELETE: use GET")]:
        answer = requests.request(method, hq.url + path, timeout=10)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["status"] == status and problem["detail"].startswith(says), problem
        assert "POST /v1/ingest" in problem["detail"]
    HqDB(hq_dsn).add_user("ana", "battery staple", "viewer")
    web = requests.Session()
    assert web.post(f"{hq.url}/login", data={"name": "ana", "password": "battery staple"}, timeout=10).ok
    for method, path, status, says in [("GET", "/nope", 404, "No such page: GET /nope"),
                                       ("PUT", "/login", 405, "/login does not take PUT: use GET or POST"),
                                       ("GET", "/logout", 405, "/logout does not take GET: use POST"),
                                       ("GET", "/item/POS99/S-1", 404, "no sale or refund S-1 from terminal POS99"),
                                       ("GET", "/receipt/POS99/I1/x.png", 422, "path.seq: ")]:
        answer = web.request(method, hq.url + path, timeout=10, allow_redirects=False)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "<!doctype html>" in answer.text and "Traceback" not in answer.text
        assert says in answer.text.replace("&#x27;", "'"), answer.text
        assert "href='/'" in answer.text


def test_the_database_unreachable_is_a_problem_on_the_api_and_a_page_on_the_dashboard() -> None:
    from pos.hq.app import create_app
    from pos.httpserver import ThreadedServer

    server = ThreadedServer(create_app(HqDB("postgresql://pos_hq@127.0.0.1:1/pos_hq?connect_timeout=2"))).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        api = requests.get(url + "/v1/health", timeout=20)
        assert api.status_code == 503 and api.headers["content-type"].startswith("application/problem+json")
        assert api.json()["title"] == "Database unavailable" and "PostgreSQL is running" in api.json()["detail"]
        page = requests.get(url + "/", cookies={"pos_hq_session": "x"}, timeout=20, allow_redirects=False)
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "Database unavailable" in page.text and "PostgreSQL is running" in page.text
        assert "Traceback" not in page.text
    finally:
        server.stop()
