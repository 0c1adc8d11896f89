"""The floor a sale cannot go below, measured piece by piece in the same run as the sale.

- a durable commit: BEGIN IMMEDIATE, one INSERT, COMMIT on an SQLite file opened
  by the journal's own `JournalDB.connect` (so with the journal's pragmas: WAL,
  synchronous=FULL, secure_delete);
- one RSA2 sign of a pay-sized request and one verify of an answer-sized text
  (pos.gateway.signing, the product's own functions);
- one keep-alive HTTP/1.1 round trip on 127.0.0.1 to a stdlib server in
  another process (`StdlibServer`, a request and an answer of a pay's size);
- one pty line read: a 20-character line written into a raw pty and read
  back from its other side.

`StdlibServer` is also the throughput reference: its POST /pay verifies the
signed request as the sandbox does and answers a signed success, on
http.server alone. Run as `python -m tests.bench_floor serve KEYDIR`.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import tty
from datetime import UTC, datetime
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pos.gateway.keys import ALIPAY_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.signing import build_signed, load_private_key, load_public_key, sign_text, split_signed, verify
from pos.journal.db import JournalDB

__all__ = ["Floor", "StdlibServer"]

# A pay's request and answer as the offline protocol sends them (sizes matter, contents do not).
_REQUEST = json.dumps({"head": {"version": "2.0.4", "function": "alipay.intl.acquiring.offline.pay",
                                "clientId": "SANDBOX_CLIENT", "reqTime": "2026-11-30T10:00:00+08:00",
                                "reqMsgId": "0" * 32, "reserve": "{}"},
                       "body": {"merchantId": "2188000000000001", "merchantTransId": "DEMO01-20261130-ABCDEF-000001",
                                "productCode": "OFFLINE_PAY", "codeType": "BARCODE",
                                "identityCode": "280012345678901234",
                                "order": {"orderTitle": "bench", "orderAmount": {"currency": "SGD", "value": "250"}},
                                "extendInfo": json.dumps({"storeId": "SANDBOX-STORE-01", "terminalId": "DEMO01"})}},
                      separators=(",", ":"))
_LINE = b"PAID 2.50 SGD       \r\n"


class Floor:
    """The floor's pieces, ready to be timed again and again (`sample`)."""

    def __init__(self, keys: Path, http_port: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pos-bench-floor-")
        self.db = JournalDB.connect(Path(self._tmp.name) / "floor.db")
        self.db.conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, at REAL, body TEXT)")
        self.private = load_private_key(keys / "merchant_private.pem")
        self.alipay_private = load_private_key(keys / ALIPAY_PRIVATE)
        self.alipay_public = load_public_key(keys / "alipay_public.pem")
        answer = build_signed("response", {"function": "alipay.intl.acquiring.offline.pay"},
                              {"resultInfo": {"resultStatus": "S"}, "acquirementId": "2" * 28}, self.alipay_private)
        self.answer_inner, self.answer_sig = split_signed(answer.decode(), "response")
        self.http = HTTPConnection("127.0.0.1", http_port, timeout=10)
        self.http.connect()
        self.http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.body = _REQUEST.encode()
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self.pty = (master, slave)
        self.spent: dict[str, list[float]] = {}

    def commit(self) -> None:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (at, body) VALUES (?, ?)", (time.time(), "PAYING sale 1 ****1234"))
        conn.execute("COMMIT")

    def sign(self) -> None:
        sign_text(_REQUEST, self.private)

    def verify(self) -> None:
        if not verify(self.answer_inner, self.answer_sig, self.alipay_public):
            raise RuntimeError("the floor's own signature does not verify")

    def round_trip(self) -> None:
        self.http.request("POST", "/echo", body=self.body, headers={"Content-Type": "application/json"})
        resp = self.http.getresponse()
        resp.read()

    def pty_line(self) -> None:
        master, slave = self.pty
        os.write(slave, _LINE)
        got = b""
        while not got.endswith(b"\n"):
            select.select([master], [], [], 1.0)
            got += os.read(master, 256)

    def sample(self, *, commits: int, signs: int, verifies: int, round_trips: int, reads: int) -> float:
        """Seconds for that many of each piece, one after another (what a sale must do, and nothing else)."""
        start = mark = time.perf_counter()
        for name, count in (("commit", commits), ("sign", signs), ("verify", verifies),
                            ("round_trip", round_trips), ("pty_line", reads)):
            fn = getattr(self, name)
            for _ in range(count):
                fn()
            now = time.perf_counter()
            if count:
                self.spent.setdefault(name, []).append((now - mark) / count)
            mark = now
        return mark - start

    def interleaved_pieces(self) -> dict[str, float]:
        """Median milliseconds of each piece as it was timed inside the samples (for the JSON)."""
        from tests.bench_table import median
        return {name + "_ms": round(median(times) * 1000, 4) for name, times in self.spent.items()}

    def pieces(self, n: int = 200) -> dict[str, float]:
        """Median milliseconds of each piece alone (for the JSON: where the floor's time goes)."""
        from tests.bench_table import median
        out = {}
        for name in ("commit", "sign", "verify", "round_trip", "pty_line"):
            fn = getattr(self, name)
            times = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[name + "_ms"] = round(median(times) * 1000, 4)
        return out

    def close(self) -> None:
        self.http.close()
        for fd in self.pty:
            os.close(fd)
        self.db.close()
        self._tmp.cleanup()


# ---------------------------------------------------------------- the stdlib server (its own process)

class StdlibServer:
    """`python -m tests.bench_floor serve KEYDIR` as a child process; `.port` once it listens."""

    def __init__(self, keys: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.bench_floor", "serve", str(keys)],
                                     stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise RuntimeError(f"the stdlib reference server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _serve(keys: Path) -> None:
    merchant_public = load_public_key(keys / MERCHANT_PUBLIC)
    alipay_private = load_private_key(keys / ALIPAY_PRIVATE)
    echo = json.dumps({"response": {"head": {}, "body": {"resultInfo": {"resultStatus": "S"}, "pad": "x" * 700}},
                       "signature": "s" * 344}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive
        disable_nagle_algorithm = True  # TCP_NODELAY, as uvicorn sets it: no 40 ms delayed-ACK stall

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/echo":
                out = echo
            else:   # a pay: the same verify and sign as the sandbox, and a success answer
                inner, sig = split_signed(raw.decode(), "request")
                if not verify(inner, sig, merchant_public):
                    self.send_error(401)
                    return
                req = json.loads(inner)
                body = req["body"]
                now = datetime.now(UTC).isoformat(timespec="seconds")
                reply = {"resultInfo": {"resultStatus": "S", "resultCodeId": "00000000", "resultCode": "SUCCESS",
                                        "resultMsg": "Success"},
                         "acquirementId": "20261130111212800100160000000001",
                         "merchantTransId": body.get("merchantTransId", ""), "payTime": now,
                         "orderAmount": body.get("order", {}).get("orderAmount")}
                head = {"version": req["head"].get("version", "2.0.4"), "function": req["head"]["function"],
                        "clientId": req["head"].get("clientId", ""), "respTime": now,
                        "reqMsgId": req["head"].get("reqMsgId", ""), "reserve": "{}"}
                out = build_signed("response", head, reply, alipay_private)
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        _serve(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m tests.bench_floor serve KEYDIR")
