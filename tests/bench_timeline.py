"""`make timeline`: one paid sale's steps inside `pos run`, in order, from the scan to PAID read.

The benchmark's layout (tests/bench_daemon.py: `pos run` with pty twins and a
network printer twin, `pos sandbox` in its own process with no think time),
`--sales` paid till sales after a warm-up. The daemon runs with
tests/timeline_hook on its PYTHONPATH: the hook times every call of the steps
it names (the commits, the sign, the round trip, the engine, the displays ...)
on the monotonic clock this process reads too. For each sale the window runs
from the code written into the scanner pty to the read of the cashier
display's pty that brought PAID, as in `make bench`.

It prints, for the sales' medians, each step's start and end (ms after the
code was written), its duration and its thread; then the window split into
the floor's pieces as the sale ran them (its two COMMITs, the sign, the
verify, the HTTP round trip less the sandbox's own time on the pay, from
GET /sandbox/stats), the sandbox's own time, and what is left: the daemon's
Python between those pieces, thread wake-ups, and the pty hops.
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pos.gateway.keys import generate_key_folder
from tests.bench_daemon import CANCEL_FLOOR, QUERY_FLOOR, SALE_FLOOR, WAIT, BenchStage, SandboxProcess, SandboxStats
from tests.bench_floor import Floor, StdlibServer

__all__ = ["main"]

HOOK = Path(__file__).resolve().parent / "timeline_hook"
FLOOR_STEPS = ("COMMIT", "RSA2 sign", "RSA2 verify", "HTTP round trip")


def _sale(st: BenchStage, before_scan: Callable[[], object] | None = None, scenario: str = "00",
          done: str = "PAID") -> tuple[int, int]:
    """One till sale as the benchmark plays it (BenchStage.sale); (code written, outcome read) on the
    monotonic clock the daemon's hook reads. `before_scan` runs while the daemon waits for the code."""
    st.sale(scenario, done, before_scan=before_scan)
    return st.last_window


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


PATHS = {   # --path: the scenario, the outcome's first line, the floor, the waits (in WAIT) the path sleeps
    "sale": ("00", "PAID", SALE_FLOOR, 0),
    "query": ("10", "PAID", QUERY_FLOOR, 1),
    "cancel": ("18", "Payment cancelled", CANCEL_FLOOR, 1),
}


def split(records: list[tuple[int, int, str, str]], windows: list[tuple[int, int]]) -> list[dict[str, float]]:
    """Each sale's window (ms) and, summed over its threads, the ms of each of the floor's kinds of step."""
    out = []
    i = 0
    for written, seen in windows:
        while i < len(records) and records[i][0] < written:
            i += 1
        spent = dict.fromkeys(("window", *FLOOR_STEPS), 0.0)
        spent["window"] = (seen - written) / 1e6
        j = i
        while j < len(records) and records[j][0] < seen:
            start, end, _thread, step = records[j]
            if step in FLOOR_STEPS:
                spent[step] += (end - start) / 1e6
            j += 1
        out.append(spent)
    return out


TAIL_SHARE = 50   # the slowest 1 sale in 50, where the p99 lies
# Work beside the sale's path whose share of the slowest windows is worth seeing (substrings of step names).
BESIDE = ("print queue at work", "receipt built by the print queue", "receipt rendered by the print queue",
          "garbage collection")
_LOOK_BACK_NS = 50_000_000   # a record that began this long before a window may still reach into it


def _inside(records: list[tuple[int, int, str, str]], starts: list[int], a: int, b: int
            ) -> list[tuple[int, int, str, str]]:
    """The records that overlap the span a..b (ns)."""
    out = []
    for record in records[bisect.bisect_left(starts, a - _LOOK_BACK_NS):]:
        if record[0] > b:
            break
        if record[1] >= a:
            out.append(record)
    return out


def tail(records: list[tuple[int, int, str, str]], windows: list[tuple[int, int]]) -> list[str]:
    """The slowest 2% of the sales against the middle half, as lines to print: where on the sale's path
    they fell behind, how long the outcome took from the display pty to the benchmark, and which work
    beside the sale's path ran inside their windows."""
    order = sorted(range(len(windows)), key=lambda i: windows[i][1] - windows[i][0])
    # Each group in time order, as timeline() walks the records.
    groups = {"slowest": sorted(windows[i] for i in order[-max(1, len(order) // TAIL_SHARE):]),
              "middle": sorted(windows[i] for i in order[len(order) // 4: 3 * len(order) // 4])}
    starts = [r[0] for r in records]
    rows = {name: {(step, thread): start for step, thread, start, _end, _n in timeline(records, group)[0]}
            for name, group in groups.items()}
    lines = [f"The slowest {len(groups['slowest']):,} sales (1 in {TAIL_SHARE}) against the middle half "
             f"({len(groups['middle']):,}): each step's start, ms after the code was written, slowest / "
             "middle half / behind by"]
    for key, at in rows["middle"].items():
        if key in rows["slowest"]:
            slow_at = rows["slowest"][key]
            lines.append(f"  {slow_at:8.3f} {at:8.3f} {slow_at - at:+7.3f}  {key[1]:16} {key[0]}")
    handed, beside = {}, {}
    for name, group in groups.items():
        waits, shares = [], dict.fromkeys(BESIDE, 0)
        spent = dict.fromkeys(BESIDE, 0.0)
        for written, seen in group:
            inside = _inside(records, starts, written, seen)
            shown = [end for _s, end, _t, step in inside if step == "display written" and end <= seen]
            if shown:
                waits.append((seen - max(shown)) / 1e6)
            for kind in BESIDE:
                ns = sum(min(end, seen) - max(start, written) for start, end, _t, step in inside if kind in step)
                if ns > 0:
                    shares[kind] += 1
                    spent[kind] += ns / 1e6
        handed[name] = statistics.median(waits) if waits else float("nan")
        beside[name] = {kind: (100 * shares[kind] / len(group), spent[kind] / len(group)) for kind in BESIDE}
    lines.append(f"  {handed['slowest']:8.3f} {handed['middle']:8.3f} {handed['slowest'] - handed['middle']:+7.3f}  "
                 f"{'':16} from the last display written to the benchmark's read")
    lines.append("  beside the sale's path, inside the windows (share of the windows, ms a window): "
                 "slowest / middle half")
    for kind in BESIDE:
        (s_share, s_ms), (m_share, m_ms) = beside["slowest"][kind], beside["middle"][kind]
        lines.append(f"    {kind:38} {s_share:5.1f}% {s_ms:6.3f} ms / {m_share:5.1f}% {m_ms:6.3f} ms")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_timeline", description=__doc__.split("\n")[0])
    ap.add_argument("--sales", type=int, default=int(os.environ.get("TIMELINE_SALES", "1000")))
    ap.add_argument("--path", choices=sorted(PATHS), default=os.environ.get("TIMELINE_PATH", "sale"),
                    help="sale: paid at once; query: unknown -> query -> paid; cancel: unknown -> cancel "
                         "(the waits are WAIT = 0.01 s, as in make bench)")
    opts = ap.parse_args(argv)
    scenario, done, parts, waits = PATHS[opts.path]
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
                    _sale(st, None, scenario, done)
                floor_ms: list[float] = []
                gateway_ms: list[float] = []
                windows = []
                for _ in range(opts.sales):
                    before: list[float] = []

                    def sample(before: list[float] = before) -> None:
                        floor_ms.append(floor.sample(**parts) * 1000)
                        before.append(stats.read()[1])   # the sandbox's own seconds so far, outside the window
                    windows.append(_sale(st, sample, scenario, done))
                    gateway_ms.append((stats.read()[1] - before[0]) * 1000)
                pieces = floor.interleaved_pieces()
            # The daemon has stopped and written its records.
        finally:
            floor.close()
            stdlib.stop()
            stats.close()
            sandbox.stop()
        records = _read(out)
    rows, took = timeline(records, windows)
    window = statistics.median(took)
    print(f"{opts.sales:,} till sales, path {opts.path!r} (scenario {scenario}); code written -> {done!r} read: "
          f"median {window:.3f} ms{f', {waits} wait of {WAIT * 1000:g} ms in it' if waits else ''}.\n")
    print(f"{'ms after the code was written':>29}  {'took':>6}  thread")
    for step, thread, start, end, _n in rows:
        print(f"{start:8.3f} .. {end:8.3f} {'':9} {end - start:6.3f}  {thread:16} {step}")
    print(f"{window:8.3f}   {done!r} read by the benchmark")
    sales = split(records, windows)
    for spent, gw in zip(sales, gateway_ms, strict=True):
        spent["gateway"] = gw
        spent["rest"] = spent["window"] - waits * WAIT * 1000 - sum(spent[step] for step in FLOOR_STEPS)
    med = {key: statistics.median(s[key] for s in sales) for key in sales[0]}
    n_trips = parts["round_trips"]
    print("\nEach sale's window split, then the medians over the sales; beside them the floor's pieces as "
          "timed before each scan (x the path's count):")
    lines = [
        ("COMMIT", "the COMMIT statements, on any thread", f"{parts['commits']} x {pieces['commit_ms']:.3f} "
                                                           "(BEGIN, one INSERT, COMMIT)"),
        ("RSA2 sign", "the RSA2 signs", f"{parts['signs']} x {pieces['sign_ms']:.3f}"),
        ("RSA2 verify", "the RSA2 verifies", f"{parts['verifies']} x {pieces['verify_ms']:.3f}"),
        ("HTTP round trip", "the HTTP round trips, the sandbox's own time in them",
         f"{n_trips} x {pieces['round_trip_ms']:.3f} (to an echo server)"),
        ("gateway", "  of which the sandbox's own time (not in the floor)", "-"),
        ("rest", "the rest: the daemon's Python between those, wake-ups, the pty hops",
         f"1 pty read {pieces['pty_line_ms']:.3f}"),
    ]
    for key, what, beside in lines:
        print(f"  {med[key]:7.3f} ms  {what:70} floor: {beside}")
    if waits:
        print(f"  {waits * WAIT * 1000:7.3f} ms  the wait (query_first_delay), taken out as make bench does")
    print(f"  {med['window']:7.3f} ms  the window; the floor in all, median of its samples: "
          f"{statistics.median(floor_ms):.3f} ms")
    print()
    print("\n".join(tail(records, windows)))


if __name__ == "__main__":
    main()
