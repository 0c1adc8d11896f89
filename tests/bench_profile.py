"""`make profile`: where a sale's time goes inside `pos run`, sampled by py-spy.

The benchmark's layout (tests/bench_daemon.py: `pos run` with pty twins and a
network printer twin, `pos sandbox` in its own process with no think time),
`--sales` paid till sales after a warm-up, with py-spy sampling the daemon
(1,000 samples a second, only the thread holding the GIL: the functions are
where the interpreter runs; a commit's disk sync, an RSA signature and a socket
wait release the GIL and are not in them) and the kernel's CPU accounting per
thread (/proc/PID/task/TID/stat) read before and after.

It prints:
- CPU and sleeps (voluntary context switches) per sale of each of the
  daemon's threads (all the work a sale cycle causes: the till's POST, the
  scan, the pay, the receipt, both displays);
- the daemon's busiest functions, inclusive, as a share of the samples of
  the threads that carry a sale (the scanner's, which sends the pay itself,
  the first gateway worker's, which sends a query or cancel, the notifier's
  and the displays'), and the same for each of those threads.

The raw samples are kept (`--raw PATH`, default .pos-state/profile.txt) in
py-spy's raw format, which flamegraph tools read. Needs py-spy (the `profile`
extra: `make profile` installs it) and permission to trace a child process
(the default for one's own children).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pos.gateway.keys import generate_key_folder
from tests.bench_daemon import BenchStage, SandboxProcess

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
# The threads a sale's scan -> outcome path runs on (their Python names, as py-spy reports them).
SALE_PATH = ("scanner", "pos-gateway_0", "pos-notify", "display-cashier", "display-customer")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?):\d+\)$")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, by thread id."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue   # the thread ended
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_sleeps(pid: int) -> dict[int, int]:
    """Voluntary context switches (sleeps: each a wake later) of each thread of a process, by thread id."""
    out: dict[int, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue   # the thread ended
        out[int(tid)] = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
    return out


def read_raw(path: Path) -> tuple[dict[int, str], Counter[str], dict[str, Counter[str]]]:
    """py-spy's raw samples: thread names by id, samples per thread, inclusive samples per function per thread."""
    names: dict[int, str] = {}
    per_thread: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = re.match(r"thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?", frames[0])
        if head is None:
            continue
        name = head.group("name") or head.group("tid")
        names[int(head.group("tid"))] = name
        n = int(count)
        per_thread[name] += n
        seen: set[str] = set()
        funcs = inclusive.setdefault(name, Counter())
        for frame in frames[1:]:
            m = _FRAME.match(frame)
            key = f"{m.group('func')} ({Path(m.group('file')).name})" if m else frame
            if key not in seen:
                seen.add(key)
                funcs[key] += n
    return names, per_thread, inclusive


def _top(counts: Counter[str], total: int, n: int, skip: tuple[str, ...]) -> list[str]:
    rows = [(k, v) for k, v in counts.most_common() if not k.startswith(skip)][:n]
    return [f"  {v / total * 100:5.1f}%  {k}" for k, v in rows]


# Frames every thread has at its root: they say nothing about where a sale's time goes.
_ROOTS = ("Thread._bootstrap", "Thread.run (", "_worker (thread.py", "_WorkItem.run")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_profile", description=__doc__.split("\n")[0])
    ap.add_argument("--sales", type=int, default=int(os.environ.get("PROFILE_SALES", "2000")))
    ap.add_argument("--raw", type=Path, default=REPO / ".pos-state" / "profile.txt")
    ap.add_argument("--top", type=int, default=25)
    opts = ap.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: `make profile` installs it (pip install -e '.[profile]')")
    opts.raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pos-profile-") as tmp:
        keys = Path(tmp) / "keys"
        generate_key_folder(keys)
        sandbox = SandboxProcess(keys)
        try:
            with BenchStage(keys, sandbox.url) as st:
                assert st.proc is not None
                for _ in range(20):   # warm-up: first receipt, first connections
                    st.sale("00", "PAID")
                recorder = subprocess.Popen(
                    [spy, "record", "--pid", str(st.proc.pid), "--rate", "1000", "--threads", "--gil", "--nonblocking",
                     "--format", "raw", "--output", str(opts.raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                time.sleep(1.0)   # py-spy attaches
                if recorder.poll() is not None:
                    why = recorder.stderr.read() if recorder.stderr else ""
                    sys.exit(f"py-spy could not attach to pos run: {why}\n(is tracing one's own child processes "
                             "allowed here? /proc/sys/kernel/yama/ptrace_scope)")
                before, slept = thread_cpu(st.proc.pid), thread_sleeps(st.proc.pid)
                start = time.perf_counter()
                took = sorted(st.sale("00", "PAID")[0] for _ in range(opts.sales))
                wall = time.perf_counter() - start
                after, sleeps = thread_cpu(st.proc.pid), thread_sleeps(st.proc.pid)
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
        finally:
            sandbox.stop()
    names, per_thread, inclusive = read_raw(opts.raw)
    n = opts.sales
    print(f"{n:,} paid till sales in {wall:.1f} s ({wall / n * 1000:.2f} ms a cycle); scan -> PAID median "
          f"{took[len(took) // 2] * 1000:.2f} ms (sampled: py-spy slows the daemon a little)")
    print("\nCPU and sleeps (voluntary context switches: each a wake later) per sale, by thread (kernel "
          "accounting, all of a cycle's work):")
    rows = sorted(((after[t] - before.get(t, 0.0)) / n * 1000, (sleeps.get(t, 0) - slept.get(t, 0)) / n,
                   names.get(t, str(t))) for t in after)
    total = sum(ms for ms, _, _ in rows)
    for ms, woke, name in sorted(rows, key=lambda row: (row[0], row[1]), reverse=True):
        if ms >= 0.005 or woke >= 0.05:
            print(f"  {ms:6.3f} ms  {woke:5.1f} sleeps  {name}")
    print(f"  {total:6.3f} ms  {sum(w for _, w, _ in rows):5.1f} sleeps  in all")
    path_total = sum(per_thread[t] for t in SALE_PATH)
    path_counts: Counter[str] = Counter()
    for t in SALE_PATH:
        path_counts.update(inclusive.get(t, Counter()))
    if path_total:
        print(f"\nBusiest functions on the sale's path ({', '.join(SALE_PATH)}), share of their samples "
              "holding the GIL:")
        print("\n".join(_top(path_counts, path_total, opts.top, _ROOTS)))
    for t in SALE_PATH:
        if per_thread[t]:
            print(f"\n{t}: {per_thread[t]:,} samples")
            print("\n".join(_top(inclusive[t], per_thread[t], 12, _ROOTS)))
    print(f"\nraw samples: {opts.raw}")


if __name__ == "__main__":
    main()
