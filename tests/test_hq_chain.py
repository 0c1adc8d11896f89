"""Headquarters as a chain grows: events partitioned by day and store, dashboard sessions that outlive a
restart, one receipt picture for the terminal and the dashboard, and terminals that log in with a client
certificate over real TLS on 127.0.0.1. A real PostgreSQL server (tests/pg_fixtures.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from pos.cli.main import main
from pos.config import HqSection
from pos.core.errors import ConfigError
from pos.hq.db import HqDB
from pos.hq.schema import EVENT_STORE_BUCKETS, MIGRATIONS
from pos.hq.service import HqService
from pos.ops.hq_shipper import HqShipper, ShipError
from tests.pg_fixtures import *  # noqa: F403
from tests.test_hq import START, Till, print_receipt, stored

DAY = "2024-05-01"


@pytest.fixture(name="hq")
def hq_service(hq_dsn: str) -> Iterator[HqService]:
    HqDB(hq_dsn).migrate()
    service = HqService(hq_dsn, "127.0.0.1:0").start()
    yield service
    service.stop()


def ship_all(till: Till) -> None:
    while till.shipper.ship_once():
        pass


# ------------------------------------------------------------------ partitions by day and store


def leaves(dsn: str, parent: str) -> list[str]:
    return [r[0] for r in stored(dsn, "SELECT relid::text FROM pg_partition_tree(%s) WHERE isleaf", parent)]


def scanned(dsn: str, sql: str, *params: Any) -> list[str]:
    """The event tables a query reads, from its plan (partition pruning)."""
    plan = stored(dsn, "EXPLAIN (FORMAT JSON) " + sql, *params)[0][0]
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(found)


def test_events_are_partitioned_by_day_and_store(tmp_path: Path, hq: HqService, hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    tills = [Till(tmp_path, tid, db.add_terminal(tid, store), hq.url)
             for tid, store in (("POS01", "S1"), ("POS02", "S2"), ("POS03", "S3"))]
    try:
        for t in tills:
            t.sell("00")
            ship_all(t)
        day_table = f"events_{DAY.replace('-', '')}"
        # The day's partition is itself partitioned by store: EVENT_STORE_BUCKETS tables, made on demand.
        assert stored(hq_dsn, "SELECT relkind FROM pg_class WHERE relname = %s", day_table) == [("p",)]
        assert sorted(leaves(hq_dsn, day_table)) == sorted(f"{day_table}_s{n}" for n in range(EVENT_STORE_BUCKETS))
        # Every event sits in one of its day's store tables, and all of one store's in the same one.
        where = stored(hq_dsn, "SELECT store_id, array_agg(DISTINCT tableoid::regclass::text) FROM events "
                               "GROUP BY store_id ORDER BY store_id")
        assert [w[0] for w in where] == ["S1", "S2", "S3"]
        assert all(len(w[1]) == 1 and w[1][0].startswith(f"{day_table}_s") for w in where)
        assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == sum(t.events() for t in tills)
        # A question about one store's day reads one table.
        tables = scanned(hq_dsn, "SELECT count(*) FROM events WHERE day = %s AND store_id = %s", DAY, "S2")
        assert tables == [where[1][1][0]]
        # Replaying a batch still changes nothing (the key holds across the day's store tables).
        before = stored(hq_dsn, "SELECT count(*) FROM events")[0][0]
        body = {"terminal_id": "POS01", "install_id": tills[0].journal.install_id,
                "events": [{"seq": 1, "at": START, "kind": "event", "body": {}}]}
        r = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {tills[0].token}"},
                          timeout=10)
        assert r.status_code == 200 and r.json()["stored"] == 0
        assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == before
    finally:
        for t in tills:
            t.close()


def test_a_terminal_moved_to_another_store_does_not_double_its_events(tmp_path: Path, hq: HqService,
                                                                       hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    till = Till(tmp_path, "POS01", db.add_terminal("POS01", "S1"), hq.url)
    try:
        till.sell("00")
        body = {"terminal_id": "POS01", "install_id": till.journal.install_id,
                "events": [{"seq": 1, "at": START, "kind": "event", "body": {"n": 1}}]}
        first = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {till.token}"},
                              timeout=10)
        assert first.json()["stored"] == 1
        db.revoke("POS01")
        token = db.add_terminal("POS01", "S7")      # the box now stands in store S7
        again = requests.post(f"{hq.url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {token}"},
                              timeout=10)
        assert again.status_code == 200 and again.json() == {"stored": 0, "duplicates": 1, "upto": 1}
        assert stored(hq_dsn, "SELECT store_id FROM events") == [("S1",)]
    finally:
        till.close()


def test_a_database_partitioned_by_day_only_moves_to_day_and_store(hq_dsn: str) -> None:
    # A database at schema version 2 (events by day only), with events of two days.
    with psycopg.connect(hq_dsn) as conn:
        conn.execute("CREATE TABLE hq_schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO hq_schema_version VALUES (2)")
        for step in MIGRATIONS[:2]:
            for sql in step:
                conn.execute(sql)  # type: ignore[arg-type]
        conn.execute("INSERT INTO stores VALUES ('S1', ''), ('S2', '')")
        conn.execute("INSERT INTO terminals (terminal_id, store_id, token_sha256) VALUES ('POS01', 'S1', 'x'), "
                     "('POS02', 'S2', 'y')")
        conn.execute("CREATE TABLE events_20240501 PARTITION OF events FOR VALUES FROM ('2024-05-01') "
                     "TO ('2024-05-02')")
        for day, terminal, store, seq in (("2024-05-01", "POS01", "S1", 1), ("2024-05-01", "POS02", "S2", 1),
                                          ("2024-05-03", "POS01", "S1", 2)):
            conn.execute("INSERT INTO events (day, terminal_id, install_id, seq, store_id, at, kind, body) "
                         "VALUES (%s, %s, 'i1', %s, %s, 1714536000, 'event', %s)",
                         (day, terminal, seq, store, json.dumps({"seq": seq})))
    before = stored(hq_dsn, "SELECT day, terminal_id, seq, store_id, body FROM events ORDER BY 1, 2, 3")
    assert HqDB(hq_dsn).migrate() == (2, len(MIGRATIONS))
    assert stored(hq_dsn, "SELECT day, terminal_id, seq, store_id, body FROM events ORDER BY 1, 2, 3") == before
    # Both days are now split by store; nothing was left in the default partition.
    assert all(t.startswith(("events_20240501_s", "events_20240503_s")) for t in leaves(hq_dsn, "events")
               if t != "events_default")
    assert len(leaves(hq_dsn, "events")) == 2 * EVENT_STORE_BUCKETS + 1
    assert stored(hq_dsn, "SELECT count(*) FROM events_default")[0][0] == 0


# ------------------------------------------------------------------ dashboard sessions


def test_dashboard_sessions_survive_a_restart_and_end_at_logout(hq_dsn: str) -> None:
    db = HqDB(hq_dsn)
    db.migrate()
    db.add_user("maria", "correct horse", "manager")
    service = HqService(hq_dsn, "127.0.0.1:0").start()
    port = service.server.port
    try:
        web = requests.Session()
        page = web.post(f"{service.url}/login", data={"name": "maria", "password": "correct horse"}, timeout=10)
        assert page.status_code == 200 and "Stores and terminals" in page.text
        cookie = web.cookies["pos_hq_session"]
        # Only a hash of the cookie is kept.
        assert stored(hq_dsn, "SELECT count(*) FROM sessions WHERE id_sha256 = %s", cookie)[0][0] == 0
        service.stop()
        service = HqService(hq_dsn, f"127.0.0.1:{port}").start()
        page = web.get(f"{service.url}/", timeout=10)
        assert page.url.endswith("/") and "maria (manager)" in page.text, "logged out by the restart"
        # Logging out ends the session at headquarters: the same cookie sent again is refused.
        out = web.post(f"{service.url}/logout", timeout=10)
        assert out.url.endswith("/login")
        replay = requests.get(f"{service.url}/", cookies={"pos_hq_session": cookie}, timeout=10)
        assert replay.url.endswith("/login")
        # An expired session is refused too.
        web.post(f"{service.url}/login", data={"name": "maria", "password": "correct horse"}, timeout=10)
        assert "maria (manager)" in web.get(f"{service.url}/", timeout=10).text
        with psycopg.connect(hq_dsn) as conn:
            conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
        assert web.get(f"{service.url}/", timeout=10).url.endswith("/login")
        # A forged cookie gets nothing.
        assert requests.get(f"{service.url}/", cookies={"pos_hq_session": "maria|manager|9999999999|00"},
                            timeout=10).url.endswith("/login")
    finally:
        service.stop()


# ------------------------------------------------------------------ one receipt picture


def terminal_config(folder: Path) -> Path:
    cfg = folder / "terminal.toml"
    cfg.write_text(f'[terminal]\nterminal_id = "POS01"\nstate_dir = "{folder}"\n[ecr]\nenabled = false\n')
    return cfg


def test_the_receipt_picture_is_the_same_on_the_terminal_and_at_headquarters(
        tmp_path: Path, hq: HqService, hq_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = HqDB(hq_dsn)
    db.add_user("maria", "correct horse", "viewer")
    state = tmp_path / "state"
    state.mkdir()
    till = Till(tmp_path, "POS01", db.add_terminal("POS01", "S1", "Harbour"), hq.url,
                journal_file=state / "journal.db")
    try:
        till.sell("00", amount=4200, title="小笼包 Dumplings")   # a Chinese title on an English receipt
        sale = print_receipt(till)
        ship_all(till)
    finally:
        till.close()
    web = requests.Session()
    web.post(f"{hq.url}/login", data={"name": "maria", "password": "correct horse"}, timeout=10)
    item = web.get(f"{hq.url}/item/POS01/{sale.merchant_trans_id}", timeout=10).text
    src = item.split("class='receipt' ")[1].split("src='")[1].split("'")[0]
    at_hq = web.get(f"{hq.url}{src}", timeout=10)
    assert at_hq.headers["content-type"] == "image/png"

    cfg = terminal_config(state)
    png = tmp_path / "receipt.png"
    assert main(["receipt", "show", sale.merchant_trans_id, "--png", str(png), "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert "written to" in out and "boxes" not in err   # every character had a font (test_receipt_image.py)
    assert png.read_bytes() == at_hq.content
    # By sale number too, and as text: the lines the picture shows.
    assert main(["receipt", "show", str(sale.sale_id), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert sale.merchant_trans_id in text and "42.00" in text and "****" in text and "小笼包 Dumplings" in text
    # Another language on both paths is still one picture.
    assert main(["receipt", "show", str(sale.sale_id), "--png", str(png), "--lang", "zh-CN",
                 "--config", str(cfg)]) == 0
    assert png.read_bytes() == web.get(f"{hq.url}{src}?lang=zh-CN", timeout=10).content != at_hq.content
    assert web.get(f"{hq.url}{src}?lang=xx", timeout=10).status_code == 422


def test_a_58mm_barcode_terminals_receipt_picture_is_its_paper_at_headquarters_too(
        tmp_path: Path, hq: HqService, hq_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: every picture was laid out on 42 columns with a QR code, whatever the terminal printed."""
    import io

    import zxingcpp
    from PIL import Image

    from devices.emulated import escpos_to_text
    from devices.emulated.escpos_text import CUT_LINE
    from devices.messages import Catalogue
    from devices.receipt import ReceiptData
    from devices.receipt_image import render_picture
    from pos.config import PrinterSection

    db = HqDB(hq_dsn)
    db.add_user("maria", "correct horse", "viewer")
    state = tmp_path / "state"
    state.mkdir()
    till = Till(tmp_path, "POS01", db.add_terminal("POS01", "S1", "Harbour"), hq.url,
                journal_file=state / "journal.db")
    # A printer whose manual says GS w takes 1: the terminal's id (343 modules) fits 384 dots at 1 dot a bar.
    settings = PrinterSection(encoding="UTF-8", width=32, print_qr=False, narrowest_bar=1)
    try:
        till.sell("00", amount=4200, title="Iced lemon tea with extra honey, large")
        sale = print_receipt(till, settings)
        paper = escpos_to_text(till.printer.jobs[0], "UTF-8")[:-1].split("\n")
        ship_all(till)
    finally:
        till.close()
    web = requests.Session()
    web.post(f"{hq.url}/login", data={"name": "maria", "password": "correct horse"}, timeout=10)
    item = web.get(f"{hq.url}/item/POS01/{sale.merchant_trans_id}", timeout=10).text
    src = item.split("class='receipt' ")[1].split("src='")[1].split("'")[0]
    at_hq = web.get(f"{hq.url}{src}", timeout=10).content

    # The receipt data headquarters holds is laid out as the paper was printed, line for line.
    shipped = ReceiptData.from_dict(HqDB(hq_dsn).receipt("POS01", src.split("/")[3], int(src.split("/")[4][:-4]))
                                    or {})
    assert shipped.paper is not None and shipped.paper.narrowest_bar == 1
    picture = render_picture(shipped, Catalogue.load("en"))
    assert picture.png == at_hq
    drawn = [{"text": row.text, "cut": CUT_LINE}.get(row.kind) or row.shown for row in picture.drawn]
    assert drawn == paper
    assert f"[BARCODE: POS:{sale.merchant_trans_id}]" in paper and all(
        len(line) <= 32 for line in paper if not line.startswith("["))
    code = next(row for row in picture.drawn if row.kind == "barcode")
    assert code.module == till.printer.jobs[0][till.printer.jobs[0].rindex(b"\x1dw") + 2] == 1   # GS w: bar dots
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(at_hq)))
    assert [(c.format.name, c.text) for c in found] == [("Code128", f"POS:{sale.merchant_trans_id}")]

    # The terminal draws the same picture, though its config now says 42 columns and QR codes.
    cfg = terminal_config(state)
    png = tmp_path / "receipt.png"
    assert main(["receipt", "show", sale.merchant_trans_id, "--png", str(png), "--config", str(cfg)]) == 0
    assert png.read_bytes() == at_hq
    capsys.readouterr()
    assert main(["receipt", "show", sale.merchant_trans_id, "--config", str(cfg)]) == 0
    assert [x.strip() for x in capsys.readouterr().out.splitlines() if x.strip()] == \
        [x.strip() for x in paper if x.strip() and x != CUT_LINE]


def test_receipt_show_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pos.core.money import Money
    from pos.journal.journal import Journal
    from pos.sandbox.scenarios import make_code

    cfg = terminal_config(tmp_path)
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    sale = journal.create_sale(amount=Money(700, "USD"), code=make_code("00"), scanned_at=START, now=START)
    journal.close()
    assert main(["receipt", "show", "NOPE-1", "--png", str(tmp_path / "x.png"), "--config", str(cfg)]) != 0
    assert "no sale 'NOPE-1' in the journal" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    bad = tmp_path / "missing-folder" / "x.png"
    assert main(["receipt", "show", str(sale.sale_id), "--png", str(bad), "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert f"cannot write {bad}" in err and "Traceback" not in err
    # A sale never printed is drawn from the journal's record.
    good = tmp_path / "never-printed.png"
    assert main(["receipt", "show", str(sale.sale_id), "--png", str(good), "--config", str(cfg)]) == 0
    assert good.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ client certificates


def test_terminals_log_in_with_client_certificates_over_tls(tmp_path: Path, hq_dsn: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tests.sdk.support import tls_files

    ca, server_cert, server_key = tls_files(tmp_path)
    HqDB(hq_dsn).migrate()
    hq_ca, certs = tmp_path / "hq-ca", tmp_path / "certs"
    assert main(["hq", "init-ca", str(hq_ca)]) == 0
    assert oct((hq_ca / "terminals-ca.key").stat().st_mode & 0o777) == "0o600"
    assert main(["hq", "init-ca", str(hq_ca)]) != 0                      # never overwritten
    assert "already holds a terminals' CA" in capsys.readouterr().err
    for tid, store in (("POS01", "S1"), ("POS02", "S2")):
        assert main(["hq", "add-terminal", tid, "--store", store, "--cert", str(certs), "--ca-dir", str(hq_ca),
                     "--dsn", hq_dsn]) == 0
    out = capsys.readouterr().out
    assert "POS01.pem" in out and "hq1_" not in out                      # a certificate, no token
    assert oct((certs / "POS01.key").stat().st_mode & 0o777) == "0o600"
    assert main(["hq", "add-terminal", "POS03", "--store", "S3", "--cert", str(certs), "--ca-dir",
                 str(tmp_path / "none"), "--dsn", hq_dsn]) != 0
    assert "run 'pos hq init-ca' first" in capsys.readouterr().err

    service = HqService(hq_dsn, "127.0.0.1:0", tls_cert=str(server_cert), tls_key=str(server_key),
                        client_ca=str(hq_ca / "terminals-ca.pem")).start()
    till = Till(tmp_path, "POS01", "unused-token-000000", service.url)

    def shipper(terminal_id: str, cert: str, **kw: Any) -> HqShipper:
        settings = HqSection(url=service.url, ca_file=str(ca), cert_file=str(certs / f"{cert}.pem"),
                             key_file=str(certs / f"{cert}.key"), **kw)
        return HqShipper(till.journal.db, settings, token=None, terminal_id=terminal_id,
                         install_id=till.journal.install_id)

    try:
        till.sell("00")
        # A's certificate cannot write B's events, and stores nothing trying.
        with pytest.raises(ShipError, match="403"):
            shipper("POS02", "POS01").ship_once()
        assert stored(hq_dsn, "SELECT count(*) FROM events")[0][0] == 0
        a = shipper("POS01", "POS01")
        while a.ship_once():
            pass
        assert stored(hq_dsn, "SELECT count(*) FROM events WHERE terminal_id = 'POS01' AND store_id = 'S1'"
                      )[0][0] == till.events() > 0
        # A certificate from another CA does not get through TLS.
        other_ca = tmp_path / "other-ca"
        assert main(["hq", "init-ca", str(other_ca)]) == 0
        from pos.hq.certs import issue_terminal_cert
        issue_terminal_cert(other_ca, tmp_path / "forged", "POS01", "S1")
        forged = HqShipper(till.journal.db, HqSection(url=service.url, ca_file=str(ca),
                                                      cert_file=str(tmp_path / "forged" / "POS01.pem"),
                                                      key_file=str(tmp_path / "forged" / "POS01.key")),
                           token=None, terminal_id="POS01", install_id=till.journal.install_id)
        # (TLS 1.3 may report the refusal during the handshake or as the connection dropped after it.)
        with pytest.raises(ShipError, match="refused the TLS connection|refused this terminal's certificate"):
            forged.ship_once()
        # Without a certificate or a token: 401; the dashboard answers without one.
        batch = {"terminal_id": "POS01", "install_id": till.journal.install_id, "events": []}
        assert requests.post(f"{service.url}/v1/ingest", json=batch, verify=str(ca), timeout=10).status_code == 401
        assert requests.get(f"{service.url}/login", verify=str(ca), timeout=10).status_code == 200
        # Revoked: the certificate is refused from then on.
        assert main(["hq", "revoke", "POS01", "--dsn", hq_dsn]) == 0
        with pytest.raises(ShipError, match="401"):
            a.ship_once()
        # The key must be private; pos doctor says so too, and passes a good pair.
        from pos.config import Config, TerminalSection
        from pos.ops.checks import Level
        from pos.ops.doctor import check_hq

        def doctor(name: str) -> Any:
            return check_hq(Config(terminal=TerminalSection(state_dir=str(tmp_path / "state")),
                                   hq=HqSection(url=service.url, ca_file=str(ca), cert_file=str(certs / f"{name}.pem"),
                                                key_file=str(certs / f"{name}.key"))))

        assert doctor("POS02").level is Level.OK and "answers" in doctor("POS02").line()
        os.chmod(certs / "POS02.key", 0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            shipper("POS02", "POS02")
        assert doctor("POS02").level is Level.FAIL and "chmod 600" in doctor("POS02").line()
        assert doctor("POS09").level is Level.FAIL and "is missing" in doctor("POS09").line()
        a.stop()
    finally:
        till.close()
        service.stop()


def test_hq_config_pairs_the_certificate_and_its_key() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        HqSection(url="https://hq.example.com", cert_file="/etc/pos/hq.pem")
    with pytest.raises(ValidationError, match="needs HTTPS"):
        HqSection(url="http://hq.example.com", cert_file="/etc/pos/hq.pem", key_file="/etc/pos/hq.key")
    assert HqSection(url="https://hq.example.com", cert_file="a.pem", key_file="a.key").cert_file == "a.pem"


def test_config_checks_the_certificate_files(tmp_path: Path) -> None:
    from pos.config import load_config

    cfg = tmp_path / "t.toml"
    cfg.write_text('[gateway]\nsandbox = true\nurl = "http://127.0.0.1:9"\n[hq]\nurl = "https://hq.example.com"\n'
                   'cert_file = "hq.pem"\nkey_file = "hq.key"\n')
    with pytest.raises(ConfigError, match=r"\[hq\] cert_file = .*hq.pem': file not found: copy the file"):
        load_config(cfg, require_keys=True)
    (tmp_path / "hq.pem").write_text("cert")
    (tmp_path / "hq.key").write_text("key")
    (tmp_path / "hq.key").chmod(0o644)
    with pytest.raises(ConfigError, match=r"\[hq\] key_file.*chmod 600"):
        load_config(cfg, require_keys=True)
    (tmp_path / "hq.key").chmod(0o600)
    loaded = load_config(cfg, require_keys=True).config.hq
    # Relative to the config file; no token file is needed.
    assert loaded.cert_file == str(tmp_path / "hq.pem") and loaded.key_file == str(tmp_path / "hq.key")
