"""A straight-line Python sale: the floor's pieces glued together as directly as Python allows.

A reference for `make bench` and `make timeline`, not a terminal: a process of its
own that reads a code from a pty, commits the sale (PAYING) to an SQLite file
opened as the journal opens it (`JournalDB.connect`: WAL, synchronous=FULL),
signs the pay (RSA2), POSTs it over a kept connection to the same `pos sandbox`,
verifies the answer's signature, commits the outcome and writes the outcome's
line to a display pty. No framing beyond the line's end, no engine, no runner,
no receipt, no log, one display, no checks beyond the signature and the status:
what any Python terminal must run at the least, in one thread that sleeps only
where the sale waits (the scanner's pty, the disk, the gateway).

The benchmark times it as it times the daemon: from the code written into the
scanner pty to the outcome read on the display pty. So beside the floor (the
pieces timed back to back in one running thread) it shows what the glue and the
two pty hops with their wake-ups cost in Python at the least, and beside the
daemon what the product's structure costs on top.

    python -m tests.bench_straight [--sales 1000]    # standalone: prints its figures beside the floor
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import tty
import uuid
from http.client import HTTPConnection
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pos.gateway.keys import ALIPAY_PUBLIC
from pos.gateway.offline.client import function_url
from pos.gateway.signing import build_signed, load_private_key, load_public_key, split_signed, verify
from pos.journal.db import JournalDB
from pos.sandbox.scenarios import make_code
from tests.bench_floor import Floor

if TYPE_CHECKING:
    from tests.bench_daemon import SandboxStats

__all__ = ["StraightSale"]

_STATES = {"S": "PAID", "F": "DECLINED"}   # anything else, an unsigned answer included: not known yet
_TABLE = ("CREATE TABLE IF NOT EXISTS sales (id INTEGER PRIMARY KEY, merchant_trans_id TEXT UNIQUE, "
          "amount_minor INTEGER, currency TEXT, code_masked TEXT, state TEXT, at REAL, acquirement_id TEXT)")


def serve(keys: Path, sandbox_url: str, scanner: str, display: str, db_path: Path) -> None:
    """The straight-line sale, one after another until the line "quit"."""
    db = JournalDB.connect(db_path)
    conn = db.conn
    conn.execute(_TABLE)
    private = load_private_key(keys / "merchant_private.pem")
    alipay = load_public_key(keys / ALIPAY_PUBLIC)
    target = urlsplit(function_url(sandbox_url, "pay"))
    http = HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=10)
    scan_fd = os.open(scanner, os.O_RDONLY | os.O_NOCTTY)
    show_fd = os.open(display, os.O_WRONLY | os.O_NOCTTY)
    tty.setraw(scan_fd)
    tty.setraw(show_fd)
    print("ready", flush=True)
    buf = b""
    seq = 0
    while True:
        select.select([scan_fd], [], [])
        buf += os.read(scan_fd, 256)
        if b"\r" not in buf:
            continue
        line, _, buf = buf.partition(b"\r")
        code = line.strip().decode()
        if code == "quit":
            return
        seq += 1
        mtid = f"STRAIGHT-{os.getpid()}-{seq:06d}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO sales (merchant_trans_id, amount_minor, currency, code_masked, state, at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (mtid, 250, "SGD", "*" * 14 + code[-4:], "PAYING", time.time()))
        conn.execute("COMMIT")
        head = {"version": "2.0.4", "function": "alipay.intl.acquiring.offline.pay", "clientId": "SANDBOX_CLIENT",
                "reqTime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "reqMsgId": uuid.uuid4().hex,
                "reserve": "{}"}
        body = {"merchantId": "2188000000000001", "merchantTransId": mtid, "productCode": "OFFLINE_PAY",
                "codeType": "BARCODE", "identityCode": code,
                "order": {"orderTitle": "bench", "orderAmount": {"currency": "SGD", "value": "250"}}}
        http.request("POST", target.path, body=build_signed("request", head, body, private),
                     headers={"Content-Type": "application/json; charset=UTF-8"})
        raw = http.getresponse().read()
        inner, signature = split_signed(raw.decode(), "response")
        answer = json.loads(inner)["body"] if verify(inner, signature, alipay) else {}
        state = _STATES.get(answer.get("resultInfo", {}).get("resultStatus"), "QUERYING")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE sales SET state = ?, acquirement_id = ? WHERE merchant_trans_id = ?",
                     (state, answer.get("acquirementId"), mtid))
        conn.execute("COMMIT")
        os.write(show_fd, b"\x0c" + state.encode().ljust(20) + b"\r\n")


class StraightSale:
    """The straight-line sale as a child process, with its two ptys; `sale()` times one."""

    def __init__(self, keys: Path, sandbox_url: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pos-straight-")
        self.db_path = Path(self._tmp.name) / "straight.db"
        self.scanner, scanner_slave = os.openpty()
        self.display, display_slave = os.openpty()
        for fd in (self.scanner, self.display):
            tty.setraw(fd)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench_straight", "serve", str(keys), sandbox_url,
             os.ttyname(scanner_slave), os.ttyname(display_slave), str(self.db_path)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self._slaves = (scanner_slave, display_slave)   # kept open, so the ptys stay while the child opens them
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the straight-line sale did not start")

    def sale(self, scenario: str = "00") -> float:
        """Seconds from the code written into the scanner pty to the outcome read on the display pty."""
        code = make_code(scenario).encode() + b"\r"
        start = time.perf_counter()
        os.write(self.scanner, code)
        got = b""
        while b"\r\n" not in got:
            if not select.select([self.display], [], [], 10.0)[0]:
                raise RuntimeError(f"the straight-line sale showed no outcome in 10 s (exit code "
                                   f"{self.proc.poll()}); the display got {got!r}")
            got += os.read(self.display, 256)
        took = time.perf_counter() - start
        if not got.startswith(b"\x0cPAID"):
            raise RuntimeError(f"the straight-line sale was not paid: {got!r}")
        return took

    def measure(self, count: int, floor: Floor, parts: dict[str, int], stats: SandboxStats
                ) -> tuple[list[float], list[float], list[float]]:
        """`count` sales after a warm-up, each after a floor sample (`parts`: the sale's floor) and less the
        sandbox's own time on its pay (read around the sale, outside its window): (seconds, seconds less the
        gateway, floor)."""
        took: list[float] = []
        net: list[float] = []
        floor_t: list[float] = []
        for _ in range(50):   # warm-up, as the daemon's
            self.sale()
        for _ in range(count):
            floor_t.append(floor.sample(**parts))
            before = stats.read()[1]
            t = self.sale()
            took.append(t)
            net.append(t - (stats.read()[1] - before))
        return took, net, floor_t

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.write(self.scanner, b"quit\r")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self.scanner, self.display, *self._slaves):
            os.close(fd)
        self._tmp.cleanup()


def _standalone(sales: int) -> None:
    from pos.gateway.keys import generate_key_folder
    from tests.bench_daemon import SALE_FLOOR, SandboxProcess, SandboxStats
    from tests.bench_floor import StdlibServer
    from tests.bench_table import median, percentile
    with tempfile.TemporaryDirectory(prefix="pos-straight-keys-") as tmp:
        keys = Path(tmp) / "keys"
        generate_key_folder(keys)
        sandbox = SandboxProcess(keys)
        stats = SandboxStats(sandbox.url)
        stdlib = StdlibServer(keys)
        floor = Floor(keys, stdlib.port)
        straight = StraightSale(keys, sandbox.url)
        try:
            took, less_gateway, floor_t = straight.measure(sales, floor, SALE_FLOOR, stats)
        finally:
            straight.stop()
            floor.close()
            stdlib.stop()
            stats.close()
            sandbox.stop()
    fl = median(floor_t) * 1000
    for name, values in (("straight-line sale", took), ("straight-line sale, the gateway's own time removed",
                                                        less_gateway)):
        med, p99 = median(values) * 1000, percentile(values, 99) * 1000
        print(f"{name}: median {med:.3f} ms ({med / fl:.2f}x the floor), p99 {p99:.3f} ms ({p99 / fl:.2f}x)")
    print(f"floor: {fl:.3f} ms (2 commits + 1 sign + 1 verify + 1 round trip + 1 pty read, median of {sales:,})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], Path(sys.argv[6]))
    else:
        ap = argparse.ArgumentParser(prog="python -m tests.bench_straight", description=__doc__.split("\n")[0])
        ap.add_argument("--sales", type=int, default=1000)
        _standalone(ap.parse_args().sales)
