"""`make bench`: every speed figure beside its floor or reference measured in the same run (never asserted in tests).

The table (README "Performance"; printed last, and written as JSON to
.pos-state/bench.json or --json PATH) comes from the daemon as a process
(tests/bench_daemon.py: `pos run` with pty twins, `pos sandbox` on 127.0.0.1
with no think time), its floor measured piece by piece after every sale
(tests/bench_floor.py), a large journal built once and cached
(tests/bench_journal.py), the sandbox's throughput against a stdlib
server (tests/bench_throughput.py), and the v1 client beside Alipay's
official SDK (tests/bench_ams.py).

Before the table, the component figures printed as before:
- the gateway: RSA2 sign/verify rates and signed pay round trips through the
  sandbox over real HTTP on 127.0.0.1 (tests/bench_gateway.py);
- the journal: durable commits per second (WAL, synchronous=FULL);
- the pure engine: sales through the state machine alone (pay unknown, a
  query, paid), no journal, no gateway;
- a whole sale through the runner against the in-process sandbox ledger;
- a display's writer threads: CPU and wakes per screen over a real pty;
- each journal transaction of a paid till sale beside the floor's commit
  (tests/bench_steps.py);
- headquarters: events ingested per second from 100 simulated terminals and
  the chain-wide reconciliation of a day, beside PostgreSQL's COPY rate
  (tests/bench_hq.py).

Sizes: every option has an environment variable (`make bench BENCH_SALES=200`
passes it through); `python -m tests.bench --help` lists them.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from devices.display import DisplayWriter, SerialDisplay
from devices.emulated import EmulatedDisplay
from pos.config import PaymentSection
from pos.core.engine import Engine, Finished, GatewayAnswer, SendPay, SendQuery, StartSale, Tick
from pos.core.money import Money
from pos.core.outcomes import QueryOutcome, Succeeded, Unknown
from pos.core.records import SaleRecord, SaleState
from pos.gateway.keys import generate_key_folder
from pos.journal.journal import Journal
from pos.payments.runner import PaymentRunner
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import make_code
from tests import bench_ams, bench_gateway, bench_hq, bench_steps
from tests.bench_daemon import DaemonBench, SandboxProcess
from tests.bench_floor import Floor, StdlibServer
from tests.bench_journal import cached_journal
from tests.bench_table import Figure, LoadWatch, render_header, render_table, write_json
from tests.bench_throughput import measure

REPO = Path(__file__).resolve().parents[1]
PARTS = ("components", "hq", "sales", "startup", "throughput", "ams")


def bench_commits(seconds: float = 3.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp) / "journal.db", terminal_id="BENCH")
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            journal.create_sale(amount=Money(100, "USD"), code=make_code("00"), scanned_at=time.time(),
                                now=time.time())
            n += 1
        elapsed = time.perf_counter() - start
        journal.close()
    print(f"journal commits (create sale, synchronous=FULL): {n / elapsed:8.0f} /s "
          f"({elapsed / n * 1000:.2f} ms each)")


def bench_engine(count: int = 5000, seed: int = 0) -> None:
    engine = Engine(PaymentSection().schedule(), rng=random.Random(seed))
    paid = Succeeded(query=QueryOutcome.PAID, gateway_id="A1")
    now = 1_800_000_000.0
    start = time.perf_counter()
    for i in range(1, count + 1):
        sale = SaleRecord(sale_id=i, merchant_trans_id=f"BENCH-{i:06d}", amount=Money(250, "USD"),
                          code_masked="************1234", order_title="", reference="", state=SaleState.CREATED,
                          created_at=now, updated_at=now, local_date="2027-01-15", scanned_at=now)
        pay = next(c for c in engine.handle(StartSale(sale, make_code("00"), now)) if isinstance(c, SendPay))
        engine.handle(GatewayAnswer("sale", i, "pay", pay.seq, Unknown("timeout"), now))
        now = engine.next_wakeup() or now
        query = next(c for c in engine.handle(Tick(now)) if isinstance(c, SendQuery))
        engine.handle(GatewayAnswer("sale", i, "query", query.seq, paid, now))
    elapsed = time.perf_counter() - start
    print(f"engine alone (pay unknown, query, paid: 4 events a sale): {count / elapsed:8.0f} sales/s "
          f"({elapsed / count * 1e6:.0f} us each)")


def bench_sales(count: int = 200) -> None:
    """Sales paid through the runner, one at a time, and how long a pay's answer takes to reach a
    subscriber as the sale's Finished (the outcome's commit and the hand-off to whoever delivers)."""
    answered: list[float] = []
    lags: list[float] = []
    finished = threading.Event()

    class Timed(DirectGateway):
        def pay(self, **kw: Any) -> Any:
            result = super().pay(**kw)
            answered.append(time.perf_counter())
            return result

    def note(command: Any) -> None:
        if isinstance(command, Finished):
            lags.append(time.perf_counter() - answered[-1])
            finished.set()

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp) / "journal.db", terminal_id="BENCH")
        service = PaymentRunner(journal, Timed(Ledger(), time.time), PaymentSection())
        service.recover()
        service.subscribe(note)
        start = time.perf_counter()
        for _ in range(count):
            finished.clear()
            sale_id = service.start_sale(Money(250, "USD"), make_code("00"), time.time())
            service.wait(sale_id, 10)
            finished.wait(10)
        elapsed = time.perf_counter() - start
        service.stop()
        journal.close()
    lags.sort()
    print(f"sales paid end to end (runner + journal + in-process ledger): {count / elapsed:6.0f} /s "
          f"({elapsed / count * 1000:.1f} ms each; the pay's answer to Finished at a subscriber "
          f"{lags[len(lags) // 2] * 1e6:.0f} us median)")


def bench_display(screens: int = 10000) -> None:
    """A customer display's threads (DisplayWriter over a SerialDisplay on a real pty): CPU and sleeps per
    screen, each screen read back off the pty before the next is shown, as a sale's screens follow one
    another. A sleep is a voluntary context switch; each is a wake later (a futex hand-off and the GIL).
    A screen the idle display takes at once is written by show's caller: the threads do nothing for it."""
    with tempfile.TemporaryDirectory() as tmp, EmulatedDisplay("customer", tmp) as twin:
        writer = DisplayWriter(SerialDisplay(twin.path), "customer")
        assert twin.master is not None
        received = bytearray()

        def show_and_read(line2: str) -> None:
            writer.show("Scan customer code", line2)
            frame_end = line2.encode() + b" " * (20 - len(line2))
            while (at := received.find(frame_end)) < 0:
                received.extend(os.read(twin.master, 65536))   # type: ignore[arg-type]
            del received[: at + len(frame_end)]

        def threads() -> tuple[int, int]:
            cpu = sleeps = 0
            for t in threading.enumerate():
                if t.name.startswith("display-") and t.ident is not None:
                    cpu += time.clock_gettime_ns(time.pthread_getcpuclockid(t.ident))
                    status = Path(f"/proc/self/task/{t.native_id}/status").read_text()
                    sleeps += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
            return cpu, sleeps

        show_and_read("warm-up")                                  # threads started, port open
        cpu0, sleeps0 = threads()
        start = time.perf_counter()
        for n in range(screens):
            show_and_read(f"{n:08d}")
        elapsed = time.perf_counter() - start
        cpu1, sleeps1 = threads()
        direct = writer.direct_writes
        writer.close()
    print(f"display writer threads per screen (2x20 over a pty, {screens:,} screens): "
          f"{(cpu1 - cpu0) / screens / 1000:5.1f} us CPU, {(sleeps1 - sleeps0) / screens:.2f} wakes "
          f"({elapsed / screens * 1e6:.0f} us from show to the frame read back; "
          f"{direct / (screens + 1):.0%} written by show's caller)")


def _options(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m tests.bench", description="make bench: figures beside their floors")
    p.add_argument("--sales", type=int, default=int(env("BENCH_SALES", "10000")),
                   help="till sales through the daemon (median, p99, RSS at the end) [BENCH_SALES, 10000]")
    p.add_argument("--unknown", type=int, default=int(env("BENCH_UNKNOWN", "200")),
                   help="sales of each unknown path [BENCH_UNKNOWN, 200]")
    p.add_argument("--starts", type=int, default=int(env("BENCH_STARTS", "3")),
                   help="daemon starts on an empty journal [BENCH_STARTS, 3]")
    p.add_argument("--big-starts", type=int, default=int(env("BENCH_BIG_STARTS", "2")),
                   help="daemon starts on the large journal (copied afresh each time) [BENCH_BIG_STARTS, 2]")
    p.add_argument("--journal-sales", type=int, default=int(env("BENCH_JOURNAL_SALES", "1000000")),
                   help="sales in the large journal (0: no large journal) [BENCH_JOURNAL_SALES, 1000000]")
    p.add_argument("--day-sales", type=int, default=int(env("BENCH_DAY_SALES", "10000")),
                   help="sales of the reported business day [BENCH_DAY_SALES, 10000]")
    p.add_argument("--open", type=int, default=int(env("BENCH_OPEN", "100")),
                   help="open sales in the large journal [BENCH_OPEN, 100]")
    p.add_argument("--seed", type=int, default=int(env("BENCH_SEED", "0")),
                   help="random seed of the large journal's amounts and the engine's jitter [BENCH_SEED, 0]")
    p.add_argument("--throughput-seconds", type=float, default=float(env("BENCH_THROUGHPUT_SECONDS", "10")),
                   help="seconds of pays against each server [BENCH_THROUGHPUT_SECONDS, 10]")
    p.add_argument("--json", type=Path, default=Path(env("BENCH_JSON", str(REPO / ".pos-state" / "bench.json"))),
                   help="where the figures go as JSON [BENCH_JSON, .pos-state/bench.json]")
    p.add_argument("--only", default=env("BENCH_ONLY", ",".join(PARTS)),
                   help=f"comma-separated parts to run, of {','.join(PARTS)} [BENCH_ONLY, all]")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for README)")
    args = p.parse_args(argv)
    args.parts = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown_parts = args.parts - set(PARTS)
    if unknown_parts:
        p.error(f"--only: no part named {', '.join(sorted(unknown_parts))}; the parts are {', '.join(PARTS)}")
    if args.sales < 1 or args.unknown < 0 or args.starts < 1 or args.big_starts < 1:
        p.error("--sales, --starts and --big-starts must be 1 or more, --unknown 0 or more")
    return args


def _throughput(keys: Path, stdlib: StdlibServer, seconds: float) -> Figure:
    """The sandbox and the stdlib server, each in its own process, measured in turn (half the time twice)."""
    sandbox = SandboxProcess(keys)
    try:
        runs: dict[str, list[dict[str, float]]] = {"sandbox": [], "stdlib": []}
        for _ in range(2):
            runs["sandbox"].append(measure(sandbox.url, keys, seconds / 2))
            runs["stdlib"].append(measure(stdlib.url, keys, seconds / 2))
    finally:
        sandbox.stop()
    rate = {k: sum(r["pays"] for r in v) / seconds for k, v in runs.items()}
    failures = {k: sum(r["failures"] for r in v) for k, v in runs.items()}
    return Figure("sandbox signed pays/s on 2 cores (client and server in separate processes)", rate["sandbox"], "/s",
                  rate["stdlib"], "a stdlib server doing the same verify and sign", ">= 1,000/s",
                  note="client: the product's gateway client, 4 threads, one keep-alive connection each",
                  extra={"failures": failures, "cores": os.cpu_count()})


def _ams() -> Figure:
    got = bench_ams.main()
    ours, sdk = got["ours_ms"], got["sdk_ms"]
    return Figure("v1 client, one signed inquiryPayment over TLS", ours if isinstance(ours, float) else None, "ms",
                  sdk if isinstance(sdk, float) else None, "Alipay's official Python SDK, same local server",
                  "below the SDK", note=str(got["note"] or "ours keeps one connection; the SDK opens one a call"))


def main(argv: list[str] | None = None) -> None:
    args = _options(argv)
    started = time.perf_counter()
    load = LoadWatch()
    figures: list[Figure] = []
    context: dict[str, Any] = {"options": {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set)
                                               else v) for k, v in vars(args).items()}}
    print(f"make bench: seed {args.seed}; load average {' '.join(f'{x:.2f}' for x in load.start)} at the start",
          flush=True)
    # As installed: systemd/install.sh compiles the byte code of pos, devices and the venv's libraries
    # (the unit sets PYTHONDONTWRITEBYTECODE=1, as this environment may), so a start measured here
    # compiles nothing either. A venv whose caches were removed would otherwise compile every library
    # at every start: about 0.3 s more to READY and 11 MB more RSS (the compiler's leftovers).
    for folder in (REPO / "pos", REPO / "devices", Path(sys.prefix) / "lib"):
        compileall.compile_dir(str(folder), quiet=2, workers=os.cpu_count() or 1)
    context["byte_code"] = ("pos, devices and the venv's libraries compiled first (python -m compileall), "
                            "as systemd/install.sh does")
    if "components" in args.parts:
        bench_gateway.main()
        bench_commits()
        bench_engine(seed=args.seed)
        bench_sales()
        bench_display()
        bench_steps.run(sales=200, warmup=30, till=True, with_outbox=False, trace=False)
    if "hq" in args.parts:
        bench_hq.main()
    # Every process started here is stopped whatever fails (an orphaned server would hold the output pipe).
    with tempfile.TemporaryDirectory(prefix="pos-bench-") as tmp, contextlib.ExitStack() as stack:
        keys = Path(tmp) / "keys"
        generate_key_folder(keys)
        stdlib = StdlibServer(keys)
        stack.callback(stdlib.stop)
        with contextlib.ExitStack() as daemon_parts:
            floor = Floor(keys, stdlib.port)
            daemon_parts.callback(floor.close)
            sandbox = SandboxProcess(keys)
            daemon_parts.callback(sandbox.stop)
            daemon = DaemonBench(keys, floor, sandbox)
            if "sales" in args.parts:
                print(f"daemon: {args.sales:,} till sales and {args.unknown} of each unknown path ...", flush=True)
                daemon.sales(args.sales, args.unknown, rss_at=min(1000, args.sales))
            if "startup" in args.parts:
                journal, info = None, None
                if args.journal_sales > 0:
                    journal, info = cached_journal(sales=args.journal_sales, day_sales=min(args.day_sales,
                                                                                           args.journal_sales),
                                                   open_sales=args.open, seed=args.seed)
                    context["journal"] = info
                print("daemon: start-up, reports and health ...", flush=True)
                daemon.startup(args.starts, journal, info, big_runs=args.big_starts)
            figures += daemon.figures
            context["daemon"] = daemon.extra
            context["floor_pieces_interleaved_ms"] = floor.interleaved_pieces()
            context["floor_pieces_ms"] = floor.pieces()
        if "throughput" in args.parts:
            print("sandbox throughput ...", flush=True)
            figures.append(_throughput(keys, stdlib, args.throughput_seconds))
    if "ams" in args.parts:
        figures.append(_ams())
    context["seconds"] = round(time.perf_counter() - started, 1)
    context["load_average"] = load.stop()
    write_json(args.json, figures, **context)
    print()
    print(render_header(context))
    if figures:
        print()
        print(render_table(figures, markdown=args.markdown))
    print(f"\n(all in {context['seconds']:.0f} s; JSON: {args.json})")


if __name__ == "__main__":
    main()
