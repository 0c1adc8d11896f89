"""A virtual-time harness around the pure engine (no threads, no sleeping).

`Harness` feeds the engine and keeps every command it emitted; the test
answers the request in flight with `answer(result)` and moves time with
`advance()` (to the engine's next wakeup), so the 60-second schedule of seed
003 runs in microseconds.
"""

from __future__ import annotations

import random
from typing import Any

from pos.config import PaymentSection
from pos.core.engine import (
    Abort,
    Command,
    Engine,
    GatewayAnswer,
    Record,
    Recover,
    Resolve,
    SendCancel,
    SendPay,
    SendQuery,
    SendRefund,
    SendReverse,
    StartRefund,
    StartSale,
    Tick,
)
from pos.core.money import Money
from pos.core.outcomes import GatewayResult
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState, mask_code

T0 = 1_800_000_000.0
CODE = "280000000000001234"

Send = (SendPay, SendQuery, SendCancel, SendRefund, SendReverse)


def sale_record(sale_id: int = 1, *, amount: int = 1250, state: SaleState = SaleState.CREATED,
                now: float = T0, **extra: Any) -> SaleRecord:
    return SaleRecord(sale_id=sale_id, merchant_trans_id=f"POS01-20270115-TEST01-{sale_id:06d}",
                      amount=Money(amount, "USD"), code_masked=mask_code(CODE), order_title="Coffee",
                      reference="", state=state, created_at=now, updated_at=now, local_date="2027-01-15",
                      scanned_at=now, **extra)


def refund_record(refund_id: int = 1, *, sale_id: int = 1, amount: int = 500,
                  state: RefundState = RefundState.REFUND_CREATED, now: float = T0, **extra: Any) -> RefundRecord:
    return RefundRecord(refund_id=refund_id, sale_id=sale_id,
                        merchant_refund_id=f"POS01-20270115-TEST01-R{refund_id:06d}",
                        acquirement_id="2027011511121280010016000000000001", amount=Money(amount, "USD"),
                        reason="return", state=state, created_at=now, updated_at=now,
                        local_date="2027-01-15", **extra)


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.settings = PaymentSection(**settings)
        self.engine = Engine(self.settings.schedule(), rng=random.Random(3))
        self.now = T0
        self.commands: list[Command] = []
        self.records: dict[int, SaleRecord] = {}
        self.refunds: dict[int, RefundRecord] = {}
        self.inflight: list[Any] = []   # Send commands not yet answered

    def feed(self, event: Any) -> list[Command]:
        out = self.engine.handle(event)
        if any(isinstance(c, Send) for c in out):
            # Write before you send: the Record comes first.
            assert isinstance(out[0], Record)
        for c in out:
            if isinstance(c, Record):
                for s in c.sales:
                    self.records[s.sale_id] = s
                for r in c.refunds:
                    self.refunds[r.refund_id] = r
            if isinstance(c, Send):
                self.inflight.append(c)
        self.commands.extend(out)
        return out

    def start(self, sale_id: int = 1, amount: int = 1250) -> list[Command]:
        return self.feed(StartSale(sale_record(sale_id, amount=amount, now=self.now), CODE, self.now))

    def start_refund(self, refund_id: int = 1, amount: int = 500) -> list[Command]:
        return self.feed(StartRefund(refund_record(refund_id, amount=amount, now=self.now), self.now))

    def answer(self, result: GatewayResult, after: float = 0.0) -> list[Command]:
        assert len(self.inflight) == 1, f"expected one request in flight, have {self.inflight}"
        cmd = self.inflight.pop()
        self.now += after
        kind = "refund" if isinstance(cmd, SendRefund) else "sale"
        request = {SendPay: "pay", SendQuery: "query", SendCancel: "cancel", SendRefund: "refund",
                   SendReverse: "reverse"}[type(cmd)]
        item = cmd.refund_id if isinstance(cmd, SendRefund) else cmd.sale_id
        return self.feed(GatewayAnswer(kind, item, request, cmd.seq, result, self.now))  # type: ignore[arg-type]

    def advance(self) -> list[Command]:
        """Jump to the engine's next wakeup and tick."""
        wake = self.engine.next_wakeup()
        assert wake is not None, "the engine has nothing scheduled"
        self.now = max(self.now, wake)
        return self.feed(Tick(self.now))

    def tick(self, seconds: float) -> list[Command]:
        self.now += seconds
        return self.feed(Tick(self.now))

    def abort(self, sale_id: int = 1) -> list[Command]:
        return self.feed(Abort(sale_id, self.now))

    def resolve(self, action: str, sale_id: int = 1, by: str = "test manager") -> list[Command]:
        return self.feed(Resolve(sale_id, action, by, self.now))  # type: ignore[arg-type]

    def recover(self, sales: list[SaleRecord], refunds: list[RefundRecord] = ()) -> list[Command]:  # type: ignore[assignment]
        return self.feed(Recover(tuple(sales), tuple(refunds), self.now))

    def state(self, sale_id: int = 1) -> SaleState:
        return self.records[sale_id].state

    def sent(self, kind: type) -> list[Any]:
        return [c for c in self.commands if isinstance(c, kind)]

    def of(self, kind: type, commands: list[Command]) -> list[Any]:
        return [c for c in commands if isinstance(c, kind)]
