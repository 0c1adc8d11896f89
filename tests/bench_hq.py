"""`make bench`, headquarters: ingest from 100 simulated terminals and a chain-wide reconciliation.

Each beside its floor: PostgreSQL's own COPY of the same rows into a plain
table on the same server (the fastest way rows go into PostgreSQL at all).
The server is started here, in a temporary folder (tests/pg_fixtures.py; it
runs with fsync off, like the tests: the figures compare our paths with COPY,
not disks). `pos hq serve` runs as its own process; the terminals are threads
sending real HTTP batches of 500 events. POS_BENCH_HQ_ROWS sets the size of
the reconciled day (default 1,000,000).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import requests

from pos.hq.db import HqDB
from pos.hq.reconcile import chain_reconcile
from pos.sandbox.ledger import TRANSACTION_DETAIL_COLUMNS
from tests.pg_fixtures import PgServer, _bin_dir, _free_port

DAY = "2026-11-29"
START = 1_796_000_000.0 - 2 * 86400


def _copy_rate(dsn: str, rows: int) -> float:
    """Rows per second PostgreSQL's COPY puts into an events-shaped table (the floor)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMP TABLE copy_floor (terminal_id TEXT, seq BIGINT, at DOUBLE PRECISION, "
                     "kind TEXT, body JSONB)")
        body = '{"ref": "POS01-20261129-ABCDEF-000001", "dest": "PAID", "amount_minor": 1250, "currency": "USD"}'
        start = time.perf_counter()
        with conn.cursor().copy("COPY copy_floor FROM STDIN") as cp:
            for n in range(rows):
                cp.write_row(("POS01", n, START + n, "event", body))
        conn.commit()
        return rows / (time.perf_counter() - start)


def _event(seq: int, terminal: str) -> dict[str, Any]:
    ref = f"{terminal}-20261129-ABCDEF-{seq:06d}"
    return {"seq": seq, "at": START + seq, "kind": "event",
            "body": {"event_id": seq, "item_kind": "sale", "item_id": seq, "trigger": "pay_succeeded",
                     "source": "PAYING", "dest": "PAID", "detail": "", "ref": ref, "sale_ref": ref,
                     "amount_minor": 1250, "currency": "USD", "acquirement_id": f"2026112922001{seq:08d}",
                     "local_date": DAY, "code_masked": "**************1234"}}


def bench_ingest(pg: PgServer, terminals: int = 100, per_terminal: int = 2000, batch: int = 500,
                 senders: int = 8) -> None:
    dsn = pg.new_database()
    db = HqDB(dsn)
    db.migrate()
    tokens = {f"T{n:03d}": db.add_terminal(f"T{n:03d}", f"S{n % 20:02d}") for n in range(terminals)}
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pos", "hq", "serve", "--dsn", dsn, "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/v1/ingest"
        work = [(tid, seq) for seq in range(1, per_terminal + 1, batch) for tid in tokens]
        lock = threading.Lock()

        def sender() -> None:
            s = requests.Session()
            while True:
                with lock:
                    if not work:
                        return
                    tid, first = work.pop()
                events = [_event(seq, tid) for seq in range(first, min(first + batch, per_terminal + 1))]
                r = s.post(url, json={"terminal_id": tid, "install_id": "ABCDEF", "events": events,
                                      "heartbeat": {"backlog": 0}},
                           headers={"Authorization": f"Bearer {tokens[tid]}"}, timeout=60)
                r.raise_for_status()

        start = time.perf_counter()
        threads = [threading.Thread(target=sender) for _ in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        total = terminals * per_terminal
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None and row[0] == total
        floor = _copy_rate(dsn, total)
        print(f"hq ingest: {total / elapsed:,.0f} events/s from {terminals} terminals "
              f"({total:,} events, batches of {batch}, {senders} connections, pos hq serve as a process); "
              f"floor: COPY {floor:,.0f} rows/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        db.close()


def bench_reconcile(pg: PgServer, rows: int) -> None:
    dsn = pg.new_database()
    db = HqDB(dsn)
    db.migrate()
    terminals = 100
    for n in range(terminals):
        db.add_terminal(f"T{n:03d}", f"S{n % 20:02d}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=TRANSACTION_DETAIL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        start = time.perf_counter()
        with psycopg.connect(dsn) as conn, conn.cursor().copy(
                "COPY items (terminal_id, ref, store_id, item_kind, sale_ref, amount_minor, currency, state, "
                "local_date, acquirement_id, code_masked, created_at, updated_at, last_seq) FROM STDIN") as cp:
            for n in range(rows):
                tid = f"T{n % terminals:03d}"
                ref = f"{tid}-20261129-ABCDEF-{n // terminals + 1:06d}"
                acq = f"2026112922001{n:010d}"
                cp.write_row((tid, ref, f"S{n % terminals % 20:02d}", "sale", ref, 1250, "USD", "PAID",
                              date.fromisoformat(DAY), acq, "**************1234", START, START, n + 1))
                writer.writerow({"merchantId": "2188000000000001", "sellerID": "", "storeId": "",
                                 "productCode": "OFFLINE_PAY", "paymentTime": "2026-11-29 12:00:00",
                                 "orderTitle": "Coffee", "transType": "PAYMENT", "transStatus": "Success",
                                 "merchantTransId": ref, "acquirementId": acq, "originalAcquirementId": "",
                                 "orderAmount": "12.50", "orderCurrency": "USD", "remark": "",
                                 "userSite": "ALIPAY_CN", "siteUserId": ""})
        copy_seconds = time.perf_counter() - start
        (folder / "ALIPAY_TRANSACTION_DETAIL_USD_20261129.csv").write_text(buf.getvalue())
        start = time.perf_counter()
        result = chain_reconcile(db, DAY, folder)
        elapsed = time.perf_counter() - start
        matched = sum(t["counts"]["matched"] for t in result["perTerminal"])
        assert matched == rows, matched
        print(f"hq chain reconciliation: {rows:,} rows from {terminals} terminals in {elapsed:.1f} s "
              f"({rows / elapsed:,.0f} rows/s, all matched); floor: COPY of the day's items {rows / copy_seconds:,.0f}"
              " rows/s")
    db.close()


def main() -> None:
    bindir = _bin_dir()
    if bindir is None:
        print("hq: skipped (PostgreSQL is not installed: Debian's 'postgresql')")
        return
    pg = PgServer(bindir).start()
    try:
        bench_ingest(pg)
        bench_reconcile(pg, int(os.environ.get("POS_BENCH_HQ_ROWS", "1000000")))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
