"""`make timeline`: one paid sale's steps inside `pos run`, in order, from the scan to PAID read.

The benchmark's layout (tests/bench_daemon.py: `pos run` with pty twins and a
network printer twin, `pos sandbox` in its own process with no think time),
`--sales` paid till sales after a warm-up. The daemon runs with
tests/timeline_hook on its PYTHONPATH: the hook times every call of the steps
it names (the commits, the sign, the round trip, the engine, the displays ...)
on the monotonic clock this process reads too. For each sale the window runs
from the code written into the scanner pty to PAID decoded on the cashier
display, as in `make bench`.

It prints, for the sales' medians, each step's start and end (ms after the
code was written), its duration and its thread; then the window split into
the floor's pieces as the sale ran them (its two COMMITs, the sign, the
verify, the HTTP round trip less the sandbox's own time on the pay, from
GET /sandbox/stats), the sandbox's own time, and what is left: the daemon's
Python between those pieces, thread wake-ups, and the pty hops.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pos.gateway.keys import generate_key_folder
from pos.sandbox.scenarios import make_code
from tests.bench_daemon import SALE_FLOOR, BenchStage, SandboxProcess, SandboxStats
from tests.bench_floor import Floor, StdlibServer

__all__ = ["main"]

HOOK = Path(__file__).resolve().parent / "timeline_hook"
FLOOR_STEPS = ("COMMIT", "RSA2 sign", "RSA2 verify", "HTTP round trip")


def _sale(st: BenchStage, before_scan: Callable[[], object] | None = None) -> tuple[int, int]:
    """One till sale as the benchmark plays it; (code written, PAID read) on the monotonic clock.
    `before_scan` runs while the daemon waits for the code (the floor is timed there, as in `make bench`)."""
    r = st.session.post(st.url + "/v1/sales", json={"amount": "2.50"}, timeout=30)
    while r.status_code == 409:   # the previous sale's last step is still being committed
        time.sleep(0.005)
        r = st.session.post(st.url + "/v1/sales", json={"amount": "2.50"}, timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"POST /v1/sales answered {r.status_code}: {r.text}")
    assert st.display is not None and st.customer_reader is not None
    st.display.wait(lambda lines: lines[0].startswith("Scan customer code"))
    st.customer_reader.drain()
    code = make_code("00")
    if before_scan is not None:
        before_scan()
    st.scanner.scan(code)
    written = time.monotonic_ns()
    st.display.wait(lambda lines: lines[0].startswith("PAID"))
    return written, time.monotonic_ns()


def _read(path: Path) -> list[tuple[int, int, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        start, end, thread, step = line.split("\t")
        rows.append((int(start), int(end), thread, step))
    rows.sort()
    return rows


def timeline(records: list[tuple[int, int, str, str]], windows: list[tuple[int, int]]
             ) -> tuple[list[tuple[str, str, float, float, int]], list[float]]:
    """Per step (numbered in each sale: COMMIT #1, #2 ...; thread), the median start and end in ms after
    the code was written, over the sales it ran in; and each sale's window in ms."""
    starts: dict[tuple[str, str], list[float]] = defaultdict(list)
    ends: dict[tuple[str, str], list[float]] = defaultdict(list)
    i = 0
    for written, seen in windows:
        while i < len(records) and records[i][0] < written:
            i += 1
        count: dict[tuple[str, str], int] = defaultdict(int)
        j = i
        while j < len(records) and records[j][0] < seen:
            start, end, thread, step = records[j]
            count[(step, thread)] += 1
            key = (f"{step} #{count[(step, thread)]}", thread)
            starts[key].append((start - written) / 1e6)
            ends[key].append((end - written) / 1e6)
            j += 1
    n = len(windows)
    rows = [(step, thread, statistics.median(starts[k]), statistics.median(ends[k]), len(starts[k]))
            for k in starts for step, thread in [k] if len(starts[k]) >= n // 2]
    rows.sort(key=lambda row: row[2])
    return rows, [(seen - written) / 1e6 for written, seen in windows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_timeline", description=__doc__.split("\n")[0])
    ap.add_argument("--sales", type=int, default=int(os.environ.get("TIMELINE_SALES", "1000")))
    opts = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pos-timeline-") as tmp:
        keys = Path(tmp) / "keys"
        generate_key_folder(keys)
        out = Path(tmp) / "timeline.tsv"
        sandbox = SandboxProcess(keys)
        stats = SandboxStats(sandbox.url)
        stdlib = StdlibServer(keys)
        floor = Floor(keys, stdlib.port)
        try:
            stage = BenchStage(keys, sandbox.url)
            stage.daemon_env["PYTHONPATH"] = os.pathsep.join([str(HOOK), *filter(None, [os.environ.get("PYTHONPATH")])])
            stage.daemon_env["POS_TIMELINE_OUT"] = str(out)
            with stage as st:
                for _ in range(50):   # warm-up: first receipt, first connections
                    _sale(st)
                calls, spent = stats.read()
                floor_samples: list[float] = []
                windows = [_sale(st, lambda: floor_samples.append(floor.sample(**SALE_FLOOR) * 1000))
                           for _ in range(opts.sales)]
                calls2, spent2 = stats.read()
                floor_pieces = floor.interleaved_pieces()
            # The daemon has stopped and written its records.
        finally:
            floor.close()
            stdlib.stop()
            stats.close()
            sandbox.stop()
        records = _read(out)
    gateway_ms = (spent2 - spent) / max(calls2 - calls, 1) * 1000
    rows, took = timeline(records, windows)
    sale_thread = next((thread for step, thread, *_ in rows if step.startswith("runner: sale started")), "")
    window = statistics.median(took)
    print(f"{opts.sales:,} paid till sales; scan written -> PAID read: median {window:.3f} ms. "
          f"The sale's thread: {sale_thread!r}.\n")
    print(f"{'ms after the code was written':>29}  {'took':>6}  thread")
    for step, thread, start, end, _n in rows:
        print(f"{start:8.3f} .. {end:8.3f} {'':9} {end - start:6.3f}  {thread:16} {step}")
    print(f"{window:8.3f}   PAID read by the benchmark")
    floor = {step: end - start for step, thread, start, end, _n in rows
             if thread == sale_thread and step.split(" #")[0] in FLOOR_STEPS}
    commits = sum(ms for step, ms in floor.items() if step.startswith("COMMIT"))
    sign = sum(ms for step, ms in floor.items() if step.startswith("RSA2 sign"))
    verify = sum(ms for step, ms in floor.items() if step.startswith("RSA2 verify"))
    trip = sum(ms for step, ms in floor.items() if step.startswith("HTTP round trip"))
    rest = window - commits - sign - verify - trip
    alone = floor_pieces
    print(f"\nThe window, {window:.3f} ms, as the sale ran it (medians of each step), beside the floor's pieces "
          "timed before each scan:")
    print(f"  {commits:6.3f} ms  the two COMMITs{'':32} floor: 2 commits {2 * alone['commit_ms']:.3f} ms")
    print(f"  {sign:6.3f} ms  the RSA2 sign{'':34} floor: {alone['sign_ms']:.3f} ms")
    print(f"  {verify:6.3f} ms  the RSA2 verify{'':32} floor: {alone['verify_ms']:.3f} ms")
    print(f"  {trip - gateway_ms:6.3f} ms  the HTTP round trip less the sandbox's own time   "
          f"floor: {alone['round_trip_ms']:.3f} ms (to an echo server)")
    print(f"  {gateway_ms:6.3f} ms  the sandbox's own time on the pay (GET /sandbox/stats; not in the floor)")
    print(f"  {rest:6.3f} ms  the rest: the daemon's Python between those, thread wake-ups and both pty hops   "
          f"floor: 1 pty read {alone['pty_line_ms']:.3f} ms")
    print(f"  floor in all, median of its samples: {statistics.median(floor_samples):.3f} ms")


if __name__ == "__main__":
    main()
