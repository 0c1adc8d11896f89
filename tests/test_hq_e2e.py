"""Two terminal daemons (`pos run` as processes, with the sandbox and pty devices) ship to headquarters.

Headquarters goes down mid-day and comes back at the same address: the
terminals keep selling meanwhile, and afterwards headquarters holds every
event of both journals exactly once. Over HTTPS: one terminal logs in with a
token, the other with a client certificate from headquarters' CA.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pos.demo.stage import Stage
from pos.hq.db import HqDB
from pos.hq.service import HqService
from pos.sandbox.scenarios import make_code
from tests.pg_fixtures import *  # noqa: F403
from tests.pg_fixtures import _free_port


def wait_for(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def sell(stage: Stage, amount: str) -> dict[str, object]:
    sale = stage.start_sale(amount)
    stage.wait_display(lambda lines: "Scan" in lines[0])
    stage.scan(make_code("00"))
    return stage.wait_sale(sale["id"], 30)


def shipped(stage: Stage) -> int:
    """How many events the terminal's journal has put in its outbox so far (its last sequence number)."""
    with sqlite3.connect(f"file:{stage.dir / 'state' / 'journal.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'hq_outbox'").fetchone()
        waiting = conn.execute("SELECT COUNT(*) FROM hq_outbox").fetchone()[0]
    return -1 if waiting else (row[0] if row else 0)


def at_hq(dsn: str, terminal: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT seq), COALESCE(max(seq), 0) FROM events "
                           "WHERE terminal_id = %s", (terminal,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_daemons_ship_through_a_headquarters_outage(tmp_path: Path, hq_dsn: str) -> None:
    from pos.hq.certs import init_ca, issue_terminal_cert
    from tests.sdk.support import tls_files

    db = HqDB(hq_dsn)
    db.migrate()
    port = _free_port()
    # Over HTTPS: POS11 logs in with a token, POS12 with a client certificate from headquarters' CA.
    ca, server_cert, server_key = tls_files(tmp_path)
    client_ca = init_ca(tmp_path / "hq-ca")

    def start_hq() -> HqService:
        return HqService(hq_dsn, f"127.0.0.1:{port}", tls_cert=str(server_cert), tls_key=str(server_key),
                         client_ca=str(client_ca)).start()

    service = start_hq()
    stages: list[Stage] = []
    try:
        for tid in ("POS11", "POS12"):
            link: dict[str, object] = {"url": service.url, "ca_file": str(ca), "interval": 0.2, "backoff_max": 1.0,
                                       "timeout": 2.0}
            if tid == "POS11":
                token = tmp_path / f"{tid}.token"
                token.write_text(db.add_terminal(tid, "S1", "Harbour") + "\n")
                token.chmod(0o600)
                link["token_file"] = str(token)
            else:
                issued = issue_terminal_cert(client_ca.parent, tmp_path / "certs", tid, "S1")
                db.add_terminal(tid, "S1", "Harbour", cert_sha256=issued.sha256)
                link.update(cert_file=str(issued.cert_path), key_file=str(issued.key_path))
            stages.append(Stage(terminal={"terminal_id": tid}, hq=link).__enter__())
        sold: list[object] = []
        for st in stages:
            sale = sell(st, "3.20")
            assert sale["state"] == "PAID"
            sold.append(sale["merchantTransId"])
        wait_for(lambda: all(at_hq(hq_dsn, tid)[0] > 0 for tid in ("POS11", "POS12")))

        service.stop()   # down mid-day: the terminals keep selling and keep their events
        for st in stages:
            assert sell(st, "4.10")["state"] == "PAID"
        health = stages[0].till("GET", "/v1/health").json()
        assert health["status"] in ("ok", "degraded")

        service = start_hq()   # back at the same address
        tids = ("POS11", "POS12")
        wait_for(lambda: all(shipped(st) == at_hq(hq_dsn, tid)[0] for st, tid in zip(stages, tids, strict=True)))
        for st, tid in zip(stages, tids, strict=True):
            last = shipped(st)
            assert last > 0 and at_hq(hq_dsn, tid) == (last, last, last)   # every event once, none missing
        with psycopg.connect(hq_dsn) as conn:
            paid = conn.execute("SELECT terminal_id, count(*), sum(amount_minor) FROM items WHERE state = 'PAID' "
                                "GROUP BY 1 ORDER BY 1").fetchall()
            printed = conn.execute("SELECT body->'receipt'->>'merchant_trans_id' FROM events WHERE kind = 'print' "
                                   "AND body->>'state' = 'done'").fetchall()
            health_seen = conn.execute("SELECT count(*) FROM terminals WHERE last_health->>'status' "
                                       "IS NOT NULL").fetchone()
        assert paid == [("POS11", 2, 730), ("POS12", 2, 730)]
        assert health_seen == (2,)
        assert set(sold) <= {p[0] for p in printed}   # print outcomes arrive with the receipt's data
    finally:
        for st in stages:
            st.stop()
        service.stop()
