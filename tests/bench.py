"""`make bench`: speed figures, printed (never asserted in tests).

- the gateway: RSA2 sign/verify rates and signed pay round trips through the
  sandbox over real HTTP on 127.0.0.1 (tests/bench_gateway.py);
- the v1 API: our client's cost per signed call next to Alipay's official
  SDK's, against the same v1 sandbox over TLS on 127.0.0.1:443 (tests/bench_ams.py);
- the journal: durable commits per second (WAL, synchronous=FULL: each one
  waits for the disk, which bounds how fast a terminal can move through states);
- the pure engine: sales through the state machine alone (pay unknown, a
  query, paid), no journal, no gateway;
- a whole sale through the runner against the in-process sandbox ledger;
- headquarters: events ingested per second from 100 simulated terminals and
  the chain-wide reconciliation of a day, beside PostgreSQL's COPY rate
  (tests/bench_hq.py).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from pos.config import PaymentSection
from pos.core.engine import Engine, GatewayAnswer, SendPay, SendQuery, StartSale, Tick
from pos.core.money import Money
from pos.core.outcomes import QueryOutcome, Succeeded, Unknown
from pos.core.records import SaleRecord, SaleState
from pos.journal.journal import Journal
from pos.payments.runner import PaymentRunner
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import make_code
from tests import bench_ams, bench_gateway, bench_hq


def bench_journal(seconds: float = 3.0) -> None:
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


def bench_engine(count: int = 5000) -> None:
    engine = Engine(PaymentSection().schedule(), rng=random.Random(0))
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
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp) / "journal.db", terminal_id="BENCH")
        service = PaymentRunner(journal, DirectGateway(Ledger(), time.time), PaymentSection())
        service.recover()
        start = time.perf_counter()
        for _ in range(count):
            sale_id = service.start_sale(Money(250, "USD"), make_code("00"), time.time())
            service.wait(sale_id, 10)
        elapsed = time.perf_counter() - start
        service.stop()
        journal.close()
    print(f"sales paid end to end (runner + journal + in-process ledger): {count / elapsed:6.0f} /s "
          f"({elapsed / count * 1000:.1f} ms each)")


def main() -> None:
    bench_gateway.main()
    bench_ams.main()
    bench_journal()
    bench_engine()
    bench_sales()
    bench_hq.main()


if __name__ == "__main__":
    main()
