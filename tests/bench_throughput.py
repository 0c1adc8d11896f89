"""Signed pays per second a server answers, with the client in a process of its own.

The client is the product's gateway client (open_gateway: it signs each pay
and verifies each answer), THREADS threads with one keep-alive connection
each, for SECONDS after a one-second warm-up. The same client measures the
sandbox (`pos sandbox`, its own process) and the stdlib reference server
(tests/bench_floor.py: the same verify and sign on http.server).
Run: `python -m tests.bench_throughput URL KEYDIR SECONDS THREADS` (prints JSON).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from pos.config import Config, GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Succeeded
from pos.gateway.factory import open_gateway
from pos.sandbox.scenarios import make_code

__all__ = ["measure"]


def measure(url: str, keys: Path, seconds: float, threads: int = 4) -> dict[str, float]:
    """Run the client process against `url`; returns {"rate": pays/s, "pays": n, "failures": n}."""
    out = subprocess.run([sys.executable, "-m", "tests.bench_throughput", url, str(keys), str(seconds), str(threads)],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"the throughput client failed: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _client(url: str, keys: Path, seconds: float, threads: int) -> dict[str, float]:
    settings = GatewaySection(url=url, client_id="SANDBOX_CLIENT", merchant_id="2188000000000001",
                              private_key=str(keys / "merchant_private.pem"),
                              alipay_public_key=str(keys / "alipay_public.pem"), sandbox=True)
    counter = itertools.count()
    lock = threading.Lock()
    counts = {"pays": 0, "failures": 0}
    warm_until = time.perf_counter() + 1.0
    end = warm_until + seconds

    def worker() -> None:
        gw = open_gateway(Config(gateway=settings))
        pays = failures = 0
        try:
            while (now := time.perf_counter()) < end:
                res = gw.pay(merchant_trans_id=f"BENCH-{next(counter):09d}", identity_code=make_code("00"),
                             amount=Money(250, "SGD"), order_title="bench")
                if now >= warm_until:
                    pays += 1
                    failures += not isinstance(res, Succeeded)
        finally:
            gw.close()
        with lock:
            counts["pays"] += pays
            counts["failures"] += failures

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"rate": counts["pays"] / seconds, "pays": counts["pays"], "failures": counts["failures"]}


if __name__ == "__main__":
    print(json.dumps(_client(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))))
