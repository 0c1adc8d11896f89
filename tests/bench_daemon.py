"""The daemon as a process: sales, unknown answers, start-up, reports, health and memory, each beside its floor.

The layout is a store's: `pos run` is its own process with pty twins of the
scanner, the two displays and the keypad and a network printer twin (the
Stage of pos.demo.stage), and the sandbox gateway is another process
(`pos sandbox`) on 127.0.0.1 with no think time: its scripted delays are 0.
This process plays the till (keep-alive HTTP to the till interface), types
each code into the scanner pty and reads the outcome on the cashier display
pty. Before every measured sale's scan, while the daemon waits for the code, it
measures the floor once (tests/bench_floor.py), so the two alternate on the same
machine and drift in load reaches both.

Waits: the schedule's waits are set to the shortest the configuration
allows (0.01 s) and subtracted from the measured time: unknown -> query ->
paid waits `query_first_delay` once before the payQuery; unknown -> cancel
waits it once too (the payQuery's answer arrives past `query_deadline`, so
the cancel goes at once).

The gateway's own time: the sandbox counts the gateway calls it answered and
the time it spent handling them (verify, ledger, sign; GET /sandbox/stats,
pos/sandbox/server.py GatewayStats). The benchmark reads those totals just
before each measured scan (after the floor sample, outside the timed window)
and just after the outcome is read, over one keep-alive connection; the
difference is that sale's gateway time, and the "gateway's own time removed"
rows subtract it sale by sale beside the raw rows.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from devices.emulated import EmulatedDisplay, EmulatedKeypad, EmulatedNetworkPrinter, EmulatedScanner
from devices.emulated.display import decode_display_bytes
from pos.config import Config, GatewaySection
from pos.core.records import SaleRecord
from pos.demo.stage import Stage
from pos.gateway.factory import open_gateway
from pos.journal.journal import Journal
from pos.sandbox.scenarios import make_code
from tests.bench_floor import Floor
from tests.bench_journal import TERMINAL_ID, TIMEZONE
from tests.bench_straight import StraightSale
from tests.bench_table import Figure, median, percentile

__all__ = ["SandboxProcess", "SandboxStats", "BenchStage", "DaemonBench", "FAST_PAYMENT", "WAIT", "five_libraries"]

WAIT = 0.01          # the shortest interval [payment] allows (pos/config.py: Seconds)
FAST_PAYMENT = {"query_first_delay": WAIT, "first_query_after": 5.0, "query_interval_min": WAIT,
                "query_interval_max": WAIT, "query_deadline": WAIT, "cancel_interval": WAIT,
                "refund_interval": WAIT, "background_interval": 3600.0}
# What a sale cannot do without: the serial ports, the gateway's HTTP client and signatures, the
# journal, the till interface's validation (pydantic; FastAPI until the till interface left it).
# Their import, in a fresh interpreter, is the start-up reference.
FIVE_LIBRARIES = ("serial", "requests", "cryptography.hazmat.primitives.asymmetric.rsa", "sqlite3", "pydantic")
# What a paid sale runs on beyond those: the engine's state machine, the till interface's server and
# python-escpos's encoder for its receipt (loaded as the daemon loads it: the default profile's
# capabilities only). Their import together is the memory reference: the floor of the card's libraries.
SALE_LIBRARIES = (*FIVE_LIBRARIES, "transitions", "cheroot.wsgi")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# GET /v1/health over one keep-alive connection until SIGTERM, every INTERVAL seconds (0: without
# pause); then prints how many.
_POLLER = """
import http.client, signal, sys, time
host, port, token, interval = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().strip(), float(sys.argv[4])
calls = 0
def done(*_):
    print(calls, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
conn = http.client.HTTPConnection(host, port, timeout=60)
while True:
    conn.request("GET", "/v1/health", headers={"Authorization": "Bearer " + token})
    conn.getresponse().read()
    calls += 1
    if interval:
        time.sleep(interval)
"""
# A monitor polling health ten times a second (far more often than any monitor does): the row
# that answers "does health block a sale"; without pause, it measures the interpreter they share.
PACED_POLL = 0.1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_RSS_KB = "print([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1])"


def _fresh_interpreter(code: str) -> tuple[float, float]:
    """(seconds, RSS MB) of a fresh interpreter that runs `code` and then prints its RSS."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(out.stdout.strip().splitlines()[-1]) / 1024


def five_libraries() -> tuple[float, float]:
    """(seconds, RSS MB) of a fresh interpreter that imports the five libraries and nothing else."""
    return _fresh_interpreter("import " + ", ".join(FIVE_LIBRARIES) + "\n" + _RSS_KB)


def sale_libraries_mb() -> float:
    """RSS MB of a fresh interpreter that imports what a paid sale runs on (SALE_LIBRARIES and
    python-escpos's encoder, as the daemon loads it) and nothing else."""
    return _fresh_interpreter(
        "import tempfile\n"
        "import " + ", ".join(SALE_LIBRARIES) + "\n"
        "from devices.printer import configure_escpos_cache, load_escpos\n"
        "with tempfile.TemporaryDirectory(prefix='pos-bench-escpos-') as cache:\n"
        "    configure_escpos_cache(cache, profiles=['default'])\n"
        "    load_escpos()\n"
        "    " + _RSS_KB)[1]


class SandboxProcess:
    """`pos sandbox` on a free port of 127.0.0.1, with every scripted delay 0."""

    def __init__(self, keys: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pos", "sandbox", "--port", "0", "--keys", str(keys),
             "--wallet-confirm-after", "0", "--query-errors", "0", "--cancel-errors", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            self.proc.kill()
            raise RuntimeError(f"pos sandbox did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        # Keep reading its output so a chatty sandbox never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout or ()], daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class SandboxStats:
    """The sandbox's totals so far (GET /sandbox/stats): gateway calls answered and seconds spent on them.

    One keep-alive connection (http.client: no per-call proxy or session work), opened again if the
    sandbox closed it while idle, so reading it twice around a sale costs a fraction of a millisecond,
    all of it outside the sale's timed window."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"expected the sandbox's http://127.0.0.1:PORT, not {url!r}")
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def read(self) -> tuple[int, float]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", "/sandbox/stats")
                answer = self.conn.getresponse()
                body = answer.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()       # the next request connects again
                if attempt == 2:
                    raise
                continue
            if answer.status != 200:
                raise RuntimeError(f"GET /sandbox/stats answered {answer.status}: {body[:200]!r}")
            doc = json.loads(body)
            return int(doc["gateway_calls"]), float(doc["gateway_seconds"])
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


class _External:
    """The Stage's view of a sandbox that runs in its own process."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stop(self) -> None:
        pass


class DisplayReader:
    """A display's pty, always drained: what it shows since the last reset.

    A display nobody reads fills its pty and stalls the daemon's next write, so a
    thread reads it every 50 ms from the moment the pty exists until `close`
    (before the pty is closed). While the benchmark waits for a line (`wait`) it
    reads the pty itself, on its own thread, so the time a sale ends is taken
    when its outcome arrives, not when a reader thread passes it on: the time
    of the read that brought the outcome's bytes (`read_at`), as the floor's
    pty read and the straight-line sale end at theirs. Replaying the bytes onto
    an emulated 2x20 screen to see what it shows is this twin's work, which a
    real display does in its own hardware, so it comes after that time."""

    POLL = 0.05
    KEEP = 1 << 20          # bytes kept when nobody waits (the oldest are dropped)

    def __init__(self, display: EmulatedDisplay) -> None:
        assert display.master is not None
        self.fd = display.master
        self.buf = bytearray()
        self.drained = 0                    # bytes read by the background thread
        # When the last bytes were read: time.perf_counter() and time.monotonic_ns() (make timeline's clock).
        self.read_at = (0.0, 0)
        self._lock = threading.Lock()       # one reader at a time: the thread or a waiter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"drain-{display.path}", daemon=True)
        self._thread.start()

    def _read_ready(self, timeout: float) -> bool:
        """Read what the pty holds into buf (waiting up to `timeout` for it); False at end of file."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        return self._read()

    def _read(self) -> bool:
        data = os.read(self.fd, 65536)
        self.read_at = (time.perf_counter(), time.monotonic_ns())
        self.buf += data
        return bool(data)

    def _pump(self) -> None:
        while not self._stop.wait(self.POLL):
            with self._lock:
                try:
                    size = len(self.buf)
                    more = self._read_ready(0)
                    self.drained += len(self.buf) - size
                except OSError:
                    return
                if len(self.buf) > self.KEEP:
                    del self.buf[:-self.KEEP]
                if not more:
                    return

    def close(self) -> None:
        """Stop reading (call before the pty is closed: its descriptor number may be reused)."""
        self._stop.set()
        self._thread.join(5)

    def drain(self) -> None:
        with self._lock:
            while select.select([self.fd], [], [], 0)[0]:
                if not os.read(self.fd, 65536):
                    break
            self.buf.clear()

    def wait(self, predicate: Callable[[tuple[str, str]], bool], timeout: float = 30.0) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                lines = decode_display_bytes(bytes(self.buf))
                if predicate(lines):
                    self.buf.clear()
                    return lines
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError(f"the display never showed what was expected; it shows {lines}")
                self._read()


class BenchStage(Stage):
    """A Stage whose sandbox is another process and whose readiness is systemd's READY=1."""

    def __init__(self, keys: Path, sandbox_url: str, *, journal: Path | None = None) -> None:
        self.keys = keys
        self.journal_source = journal
        self.notify_path: Path | None = None
        super().__init__(payment=FAST_PAYMENT, max_wait=30.0)
        self.notify_path = self.dir / "notify.sock"
        # The environment systemd/pos-terminal.service gives the daemon that changes what is measured.
        self.daemon_env = {"NOTIFY_SOCKET": str(self.notify_path), "MALLOC_ARENA_MAX": "2"}
        self.sandbox = _External(sandbox_url)   # type: ignore[assignment]
        self.ready_seconds = 0.0
        self.display: DisplayReader | None = None
        self.customer_reader: DisplayReader | None = None
        self.last_window = (0, 0)   # the last sale's code written and outcome read, time.monotonic_ns()

    def stop(self) -> None:
        """Stop the daemon first (its last writes drained), then the readers, then close the ptys."""
        self.stop_daemon()
        for reader in (self.display, self.customer_reader):
            if reader is not None:
                reader.close()
        super().stop()

    def start(self) -> None:
        devdir = self.dir / "dev"
        devdir.mkdir()
        (self.dir / "state").mkdir(mode=0o700)
        self.scanner = EmulatedScanner("scanner", devdir)
        self.customer = EmulatedDisplay("customer-display", devdir)
        self.cashier = EmulatedDisplay("cashier-display", devdir)
        self.keypad = EmulatedKeypad("keypad", devdir)
        self.printer = EmulatedNetworkPrinter()
        # Both displays are drained from now on, start-up included: see DisplayReader.
        self.display = DisplayReader(self.cashier)
        self.customer_reader = DisplayReader(self.customer)
        self.ecr_port = _free_port()
        self.config_path = self.dir / "terminal.toml"
        self.config_path.write_text(self._config_text(self.keys))
        if self.journal_source is not None:
            shutil.copyfile(self.journal_source, self.dir / "state" / "journal.db")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.notify_path))
        try:
            start = time.perf_counter()
            self._spawn()
            self._wait_notify(notify, 120.0)
            self.ready_seconds = time.perf_counter() - start
        finally:
            notify.close()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.till_token_path().read_text().strip()}"

    def _wait_notify(self, notify: socket.socket, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pos run exited with {self.proc.returncode}:\n{self.daemon_log()[-3000:]}")
            if select.select([notify], [], [], 0.5)[0] and b"READY=1" in notify.recv(4096).split(b"\n"):
                return
        raise RuntimeError(f"pos run sent no READY=1 in {timeout} s:\n{self.daemon_log()[-3000:]}")

    # ---------------------------------------------------------------- one sale

    def sale(self, scenario: str, done: str, amount: str = "2.50",
             before_scan: Callable[[], object] | None = None) -> tuple[float, float]:
        """A till sale: POST /v1/sales, wait for the scan prompt, type the code, read `done` on the display.

        `before_scan` runs while the daemon waits for the code (the floor is measured there).
        Returns (scan -> outcome seconds, till request -> outcome seconds, less before_scan's time)."""
        posted = time.perf_counter()
        for _ in range(200):
            r = self.session.post(self.url + "/v1/sales", json={"amount": amount}, timeout=30)
            if r.status_code == 201:
                break
            if r.status_code != 409:
                raise RuntimeError(f"POST /v1/sales answered {r.status_code}: {r.text}")
            time.sleep(0.005)   # the previous sale's last step is still being committed
        else:
            raise RuntimeError(f"POST /v1/sales kept answering 409: {r.text}")
        assert self.display is not None and self.customer_reader is not None
        self.display.wait(lambda lines: lines[0].startswith("Scan customer code"))
        self.customer_reader.drain()
        code = make_code(scenario)
        if before_scan is not None:
            t = time.perf_counter()
            before_scan()
            posted += time.perf_counter() - t
        start = time.perf_counter()
        self.scanner.scan(code)
        written = time.monotonic_ns()
        self.display.wait(lambda lines: lines[0].startswith(done))
        end, seen = self.display.read_at   # the read that brought the outcome (see DisplayReader)
        # On the clock a process on this machine reads too (make timeline's hook in the daemon).
        self.last_window = (written, seen)
        return end - start, end - posted

    def rss_mb(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Sales of the straight-line reference (tests/bench_straight.py), after the daemon's.
STRAIGHT_SALES = 1000
SALE_FLOOR = {"commits": 2, "signs": 1, "verifies": 1, "round_trips": 1, "reads": 1}
QUERY_FLOOR = {"commits": 4, "signs": 2, "verifies": 2, "round_trips": 2, "reads": 1}
# The cancel path the schedule takes: pay (U), one payQuery at the deadline, payCancel.
CANCEL_FLOOR = {"commits": 4, "signs": 3, "verifies": 3, "round_trips": 3, "reads": 1}


def _gateway_extra(seconds: list[float], calls: dict[str, int]) -> dict[str, Any]:
    """The JSON beside a "gateway's own time removed" row: the time taken out and the calls per sale."""
    return {"gateway_median_ms": round(median(seconds) * 1000, 4),
            "gateway_p99_ms": round(percentile(seconds, 99) * 1000, 4),
            "calls_per_sale": calls}


def _label(parts: dict[str, int]) -> str:
    return (f"floor: {parts['commits']} commits + {parts['signs']} signs + {parts['verifies']} verifies + "
            f"{parts['round_trips']} round trips + {parts['reads']} pty read").replace("1 signs", "1 sign") \
        .replace("1 verifies", "1 verify").replace("1 round trips", "1 round trip")


class DaemonBench:
    """Every daemon figure; `figures` fills as the parts run."""

    def __init__(self, keys: Path, floor: Floor, sandbox: SandboxProcess, *, log: Callable[[str], None] = print
                 ) -> None:
        self.keys = keys
        self.floor = floor
        self.sandbox = sandbox
        self.log = log
        self.figures: list[Figure] = []
        self.extra: dict[str, Any] = {}

    # ---------------------------------------------------------------- sales and memory

    def _sale(self, st: BenchStage, stats: SandboxStats, scenario: str, done: str, floor: dict[str, int],
              floor_t: list[float]) -> tuple[float, float, int, float]:
        """One measured sale: (scan -> outcome s, till request -> outcome s, gateway calls, gateway s).

        Before the scan (the Stage's before_scan, not timed): the floor sample, then the sandbox's
        totals; after the outcome was read (after the timed window closed): the totals again."""
        before: list[tuple[int, float]] = []

        def before_scan() -> None:
            floor_t.append(self.floor.sample(**floor))
            before.append(stats.read())

        took, whole = st.sale(scenario, done, before_scan=before_scan)
        calls, seconds = stats.read()
        return took, whole, calls - before[0][0], seconds - before[0][1]

    def _straight(self, stats: SandboxStats, count: int) -> tuple[list[float], list[float], list[float]]:
        """The straight-line sale (tests/bench_straight.py) against the same sandbox, each after a floor
        sample and less the sandbox's own time on its pay: (seconds, seconds less the gateway, floor)."""
        straight = StraightSale(self.keys, self.sandbox.url)
        try:
            return straight.measure(count, self.floor, SALE_FLOOR, stats)
        finally:
            straight.stop()

    def sales(self, count: int, unknown: int, rss_at: int = 1000) -> None:
        stats = SandboxStats(self.sandbox.url)
        try:
            self._sales(stats, count, unknown, rss_at)
        finally:
            stats.close()

    def _sales(self, stats: SandboxStats, count: int, unknown: int, rss_at: int) -> None:
        with BenchStage(self.keys, self.sandbox.url) as st:
            for _ in range(20):          # warm-up: first receipt, first connections
                st.sale("00", "PAID")
            stats.read()
            sale_t, till_t, floor_t, rss = [], [], [], {}
            gw_t: list[float] = []
            assert st.proc is not None and self.sandbox.proc is not None
            cpu_before = cpu_seconds(st.proc.pid), cpu_seconds(self.sandbox.proc.pid)
            start = time.perf_counter()
            for n in range(1, count + 1):
                took, whole, calls, gw = self._sale(st, stats, "00", "PAID", SALE_FLOOR, floor_t)
                if calls != 1:
                    raise RuntimeError(f"sale {n} of {count} (scenario 00, paid) made {calls} gateway calls in the "
                                       f"sandbox, not 1: the gateway time cannot be taken out of it; is another "
                                       f"client using this sandbox ({self.sandbox.url})?")
                sale_t.append(took)
                till_t.append(whole)
                gw_t.append(gw)
                if n in (rss_at, count):
                    rss[n] = st.rss_mb()
                if n % 1000 == 0:
                    self.log(f"  {n:,} sales, {time.perf_counter() - start:.0f} s")
            cycle = (time.perf_counter() - start) / count
            daemon_cpu = (cpu_seconds(st.proc.pid) - cpu_before[0]) / count
            sandbox_cpu = (cpu_seconds(self.sandbox.proc.pid) - cpu_before[1]) / count
            q_t, qf_t, c_t, cf_t = [], [], [], []
            q_gw: list[float] = []
            c_gw: list[float] = []
            q_calls: dict[str, int] = {}
            c_calls: dict[str, int] = {}
            for _ in range(unknown):
                took, _whole, calls, gw = self._sale(st, stats, "10", "PAID", QUERY_FLOOR, qf_t)
                q_t.append(took - WAIT)
                q_gw.append(gw)
                q_calls[str(calls)] = q_calls.get(str(calls), 0) + 1
                took, _whole, calls, gw = self._sale(st, stats, "18", "Payment cancelled", CANCEL_FLOOR, cf_t)
                c_t.append(took - WAIT)
                c_gw.append(gw)
                c_calls[str(calls)] = c_calls.get(str(calls), 0) + 1
            pieces = self.floor.pieces()
        straight_t, straight_net, straight_floor = self._straight(stats, min(count, STRAIGHT_SALES))
        lib_s, five_mb = five_libraries()
        lib_mb = sale_libraries_mb()
        ms = 1000.0
        self.figures += [
            Figure("successful sale overhead, median", median(sale_t) * ms, "ms", median(floor_t) * ms,
                   _label(SALE_FLOOR) + ", median", "<= 1.3x the floor median",
                   note=f"{count:,} till sales, scan typed -> PAID read on the cashier display",
                   extra={"sales": count, "till_request_to_outcome_median_ms": round(median(till_t) * ms, 3),
                          "floor_pieces_ms": pieces,
                          # A whole cycle: the till's POST, the scan, the pay, the receipt printed, both
                          # displays (and, in the wall time, the floor sample and the stats reads).
                          "per_sale_cycle_ms": {"wall": round(cycle * ms, 3),
                                                "daemon_cpu_all_threads": round(daemon_cpu * ms, 3),
                                                "sandbox_cpu": round(sandbox_cpu * ms, 3)}}),
            Figure("successful sale overhead, p99", percentile(sale_t, 99) * ms, "ms", median(floor_t) * ms,
                   "the same floor's median", "<= 3x the floor median",
                   extra={"floor_p99_ms": round(percentile(floor_t, 99) * ms, 3),
                          # The tail's shape: where the slowest sales sit beside the median.
                          "p90_ms": round(percentile(sale_t, 90) * ms, 3),
                          "max_ms": round(max(sale_t) * ms, 3),
                          "slowest_1pct_ms": [round(t * ms, 2) for t in sorted(sale_t)[-max(1, count // 100):]]}),
        ]
        sale_net = [t - g for t, g in zip(sale_t, gw_t, strict=True)]
        gateway = {"successful_sale": _gateway_extra(gw_t, {"1": count})}
        self.figures += [
            Figure("successful sale overhead, the gateway's own time removed, median", median(sale_net) * ms, "ms",
                   median(floor_t) * ms, _label(SALE_FLOOR) + ", median", "<= 1.3x the floor median",
                   note=f"{count:,} till sales, each less the sandbox's own time on its pay "
                        f"(median {median(gw_t) * ms:.3g} ms, GET /sandbox/stats around the sale)",
                   extra=gateway["successful_sale"]),
            Figure("successful sale overhead, the gateway's own time removed, p99", percentile(sale_net, 99) * ms,
                   "ms", median(floor_t) * ms, "the same floor's median", "<= 3x the floor median",
                   extra={"gateway_p99_ms": round(percentile(gw_t, 99) * ms, 3)}),
        ]
        self.figures += [
            Figure("straight-line Python sale (a reference), the gateway's own time removed, median",
                   median(straight_net) * ms, "ms", median(straight_floor) * ms, _label(SALE_FLOOR) + ", median",
                   "- (what Python needs at the least)",
                   note=f"{len(straight_t):,} sales of tests/bench_straight.py (the floor's pieces glued directly: "
                        "no engine, runner, receipt, log or second display), timed as the daemon's",
                   extra={"median_ms_with_gateway": round(median(straight_t) * ms, 3)}),
            Figure("straight-line Python sale (a reference), the gateway's own time removed, p99",
                   percentile(straight_net, 99) * ms, "ms", median(straight_floor) * ms, "the same floor's median",
                   "- (what Python needs at the least)"),
        ]
        if unknown:
            q_net = [t - g for t, g in zip(q_t, q_gw, strict=True)]
            c_net = [t - g for t, g in zip(c_t, c_gw, strict=True)]
            gateway["unknown_query_paid"] = _gateway_extra(q_gw, q_calls)
            gateway["unknown_cancel"] = _gateway_extra(c_gw, c_calls)
            self.figures += [
                Figure("unknown -> query -> paid, waits removed", median(q_t) * ms, "ms", median(qf_t) * ms,
                       _label(QUERY_FLOOR), "<= 1.3x",
                       note=f"{unknown} sales, scenario 10; query_first_delay {WAIT} s subtracted",
                       extra={"p99_ms": round(percentile(q_t, 99) * ms, 3)}),
                Figure("unknown -> query -> paid, waits and the gateway's own time removed", median(q_net) * ms,
                       "ms", median(qf_t) * ms, _label(QUERY_FLOOR), "<= 1.3x",
                       note=f"{unknown} sales, each less the sandbox's own time on its calls "
                            f"(median {median(q_gw) * ms:.3g} ms)",
                       extra={"p99_ms": round(percentile(q_net, 99) * ms, 3), **gateway["unknown_query_paid"]}),
                Figure("unknown -> cancel, waits removed", median(c_t) * ms, "ms", median(cf_t) * ms,
                       _label(CANCEL_FLOOR), "<= 1.3x",
                       note=f"{unknown} sales, scenario 18: pay U, payQuery at the deadline, payCancel; "
                            f"query_first_delay {WAIT} s subtracted",
                       extra={"p99_ms": round(percentile(c_t, 99) * ms, 3)}),
                Figure("unknown -> cancel, waits and the gateway's own time removed", median(c_net) * ms,
                       "ms", median(cf_t) * ms, _label(CANCEL_FLOOR), "<= 1.3x",
                       note=f"{unknown} sales, each less the sandbox's own time on its calls "
                            f"(median {median(c_gw) * ms:.3g} ms)",
                       extra={"p99_ms": round(percentile(c_net, 99) * ms, 3), **gateway["unknown_cancel"]}),
            ]
        self.extra["sandbox_gateway"] = {
            "what": "the sandbox's own time per sale: its handling of each gateway POST (verify, ledger, sign), "
                    "from GET /sandbox/stats read before the scan and after the outcome; not HTTP parsing, "
                    "sockets or the client's side",
            **gateway}
        first = min(rss)
        self.figures += [
            Figure(f"daemon memory (RSS) after {first:,} sales", rss[first], "MB", lib_mb,
                   "the libraries a paid sale runs on, imported alone", "<= 60 MB"),
        ]
        if count != first:
            self.figures.append(Figure(f"daemon memory (RSS) after {count:,} sales", rss[count], "MB", lib_mb,
                                       "the libraries a paid sale runs on, imported alone", "<= 60 MB, flat"))
        self.extra["five_libraries"] = {"modules": list(FIVE_LIBRARIES), "import_seconds": round(lib_s, 3),
                                        "rss_mb": round(five_mb, 1)}
        self.extra["sale_libraries"] = {"modules": [*SALE_LIBRARIES, "escpos.escpos (the default profile's "
                                                                     "capabilities, as the daemon loads them)"],
                                        "rss_mb": round(lib_mb, 1)}

    # ---------------------------------------------------------------- start-up, reports, health

    def _prime(self, journal: Path) -> int:
        """The open sales' pays reached the gateway before the terminal stopped: the sandbox has them."""
        j = Journal.open(journal, terminal_id=TERMINAL_ID, timezone=TIMEZONE, read_only=True)
        try:
            open_sales = [i for i in j.open_items() if isinstance(i, SaleRecord)]
        finally:
            j.close()
        settings = GatewaySection(url=self.sandbox.url, client_id="SANDBOX_CLIENT", merchant_id="2188000000000001",
                                  private_key=str(self.keys / "merchant_private.pem"),
                                  alipay_public_key=str(self.keys / "alipay_public.pem"), sandbox=True)
        gw = open_gateway(Config(gateway=settings))
        try:
            for sale in open_sales:
                gw.pay(merchant_trans_id=sale.merchant_trans_id, identity_code=make_code("00"),
                       amount=sale.amount, order_title="")
        finally:
            gw.close()
        return len(open_sales)

    def startup(self, runs: int, journal: Path | None, journal_info: dict[str, Any] | None, *,
                big_runs: int = 2, health_calls: int = 20, health_sales: int = 100) -> None:
        empty, lib = [], []
        for _ in range(runs):
            with BenchStage(self.keys, self.sandbox.url) as st:
                empty.append(st.ready_seconds)
            lib.append(five_libraries()[0])
        at = len(self.figures)
        self.figures.append(Figure("start to READY=1, empty journal", median(empty), "s", median(lib),
                                   "the five libraries import", "<= 0.8 s",
                                   note=f"median of {runs} starts", extra={"starts_s": [round(x, 3) for x in empty]}))
        if journal is None or journal_info is None:
            return
        opened = self._prime(journal)
        big: list[float] = []
        for i in range(big_runs):
            with BenchStage(self.keys, self.sandbox.url, journal=journal) as st:
                big.append(st.ready_seconds)
                if i == 0:
                    self._reports_over_till(st, journal_info)
                    self._health(st, health_calls, health_sales)
            lib.append(five_libraries()[0])
        self.figures.insert(at + 1, Figure(
            f"start with {journal_info['sales']:,} past sales and {opened} open", median(big), "s", median(lib),
            "the five libraries import", "<= 1.2 s",
            note=f"median of {len(big)} starts; the open sales' pays are in the sandbox (answered at once)",
            extra={"starts_s": [round(x, 3) for x in big], "journal": journal_info}))
        with tempfile.TemporaryDirectory(prefix="pos-bench-") as tmp:
            copy = Path(tmp) / "journal.db"
            shutil.copyfile(journal, copy)
            self._reports_in_process(copy, journal_info)

    def _day_in_sql(self, path: Path, info: dict[str, Any]) -> float:
        """The reference: the open day's sales totalled by one SQL statement (a range of the primary key;
        NOT INDEXED keeps the planner from scanning the whole table through the state index)."""
        import sqlite3
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                conn.execute("SELECT state, currency, COUNT(*), SUM(amount_minor) FROM sales NOT INDEXED "
                             "WHERE sale_id >= ? GROUP BY state, currency", (info["first_day_sale_id"],)).fetchall()
                times.append(time.perf_counter() - t)
            return median(times)
        finally:
            conn.close()

    def _reports_over_till(self, st: BenchStage, info: dict[str, Any]) -> None:
        sql = self._day_in_sql(st.dir / "state" / "journal.db", info)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = st.session.get(st.url + "/v1/reports/x", timeout=120)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
        token = st.manager_token_path().read_text().strip()
        t = time.perf_counter()
        r = st.session.post(st.url + "/v1/reports/z", headers={"Authorization": f"Bearer {token}"}, timeout=120)
        z = time.perf_counter() - t
        r.raise_for_status()
        day = f"a {info['day_sales']:,}-sale day of {info['sales']:,}"
        self.figures += [
            Figure(f"X report over the till API, {day}", median(times) * 1000, "ms", sql * 1000,
                   "the day totalled by one SQL statement", "<= 100 ms", note="GET /v1/reports/x, median of 3"),
            Figure(f"Z report over the till API, {day}", z * 1000, "ms", sql * 1000,
                   "the day totalled by one SQL statement", "<= 100 ms", note="POST /v1/reports/z, once"),
        ]

    def _reports_in_process(self, path: Path, info: dict[str, Any]) -> None:
        from zoneinfo import ZoneInfo

        from pos.journal.till import TillLinks
        from pos.terminal.business_day import BusinessDay

        class _NoPaper:
            def print_report(self, report: Any) -> None:
                pass

        sql = self._day_in_sql(path, info)
        journal = Journal.open(path, terminal_id=TERMINAL_ID, timezone=TIMEZONE)
        try:
            day = BusinessDay(journal, TillLinks(journal), _NoPaper(), ZoneInfo(TIMEZONE),  # type: ignore[arg-type]
                              time.time)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                day.x_report(print_it=False)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            day.close()
            z = time.perf_counter() - t
        finally:
            journal.close()
        label = f"a {info['day_sales']:,}-sale day of {info['sales']:,}"
        self.figures += [
            Figure(f"X report in process, {label}", median(times) * 1000, "ms", sql * 1000,
                   "the day totalled by one SQL statement", "<= 100 ms",
                   note="BusinessDay.x_report, median of 3"),
            Figure(f"Z report in process, {label}", z * 1000, "ms", sql * 1000,
                   "the day totalled by one SQL statement", "<= 100 ms", note="BusinessDay.close, once"),
        ]

    def _health(self, st: BenchStage, calls: int, sales: int) -> None:
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            st.session.get(st.url + "/v1/health", timeout=60).raise_for_status()
            times.append(time.perf_counter() - t)
        quiet = [st.sale("00", "PAID")[0] for _ in range(sales)]
        self.figures.append(
            Figure(f"/v1/health on that journal, per call (p99 {percentile(times, 99) * 1000:.3g} ms)",
                   median(times) * 1000, "ms", None, "-", "O(1)", note=f"median of {calls} calls"))
        for interval, how in ((PACED_POLL, f"every {PACED_POLL:g} s"), (0.0, "without pause")):
            busy, polls = self._polled(st, sales, interval)
            self.figures.append(
                Figure(f"sale overhead while /v1/health is polled {how}", median(busy) * 1000, "ms",
                       median(quiet) * 1000, "the same sales unpolled, median", "never blocks a sale (~1x)",
                       note=f"{sales} sales each way, {polls} health calls meanwhile",
                       extra={"busy_p99_ms": round(percentile(busy, 99) * 1000, 3),
                              "quiet_p99_ms": round(percentile(quiet, 99) * 1000, 3), "health_calls": polls}))

    def _polled(self, st: BenchStage, sales: int, interval: float) -> tuple[list[float], int]:
        """Sale times while another process polls /v1/health every `interval` s (0: without pause),
        and how many calls it made. The poller is a process of its own, as a monitoring tool would be:
        in this process it would take the GIL from the thread that times the sales."""
        host, port = st.url.split("//", 1)[1].rsplit(":", 1)
        poller = subprocess.Popen([sys.executable, "-c", _POLLER, host, port, str(st.till_token_path()),
                                   str(interval)], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.2)    # it has connected and is polling
            busy = [st.sale("00", "PAID")[0] for _ in range(sales)]
        finally:
            poller.terminate()
            out, _ = poller.communicate(timeout=60)
        return busy, int(out.split()[-1]) if out.split() else 0

