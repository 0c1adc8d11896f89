"""`DirectGateway`: the sandbox's ledger as an in-process `Gateway` (no HTTP, no signing).

The engine's property tests run thousands of payments against the same rules
as the HTTP sandbox. What only the transport can do is mapped to what the
client would report: an answer held past the read timeout (scenarios 11, 12,
99) and an answer whose signature fails (16) become `Unknown`, after the
ledger has recorded whatever the real gateway would have.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pos.core.money import Money
from pos.core.outcomes import Failed, GatewayResult, Succeeded, Unknown
from pos.gateway.client import GatewayHealth
from pos.gateway.offline.answer import read_fields
from pos.gateway.offline.status import read_query
from pos.sandbox.ledger import Ledger, Reply, as_datetime
from pos.sandbox.scenarios import scenario_for

__all__ = ["DirectGateway"]


def _result(reply: Reply, request_id: str) -> GatewayResult:
    """The ledger's reply as the offline client reads the same answer (its typed fields included)."""
    if reply.status == "S":
        return read_fields(Succeeded(dict(reply.body), reply.code, request_id=request_id), reply.body)
    if reply.status == "F":
        return read_fields(Failed(reply.code, reply.message, reply.code_id, request_id=request_id), reply.body)
    return read_fields(Unknown("gateway answered U", reply.code, request_id=request_id, data=dict(reply.body)),
                       reply.body)


class DirectGateway:
    """A `GatewayClient` (pos/gateway/client.py) calling the ledger with `clock()` as now."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime | float], *,
                 merchant_id: str = "2188000000000001", store: dict[str, str] | None = None) -> None:
        self.ledger = ledger
        self.store = dict(store or {})
        self._clock = clock
        self.merchant_id = merchant_id

    def health(self) -> GatewayHealth:
        return GatewayHealth(last_latency=0.0)  # in-process: no link to lose

    def close(self) -> None:
        pass

    def _now(self) -> datetime:
        return as_datetime(self._clock())

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, goods: str = "") -> GatewayResult:
        reply = self.ledger.pay(self.merchant_id, merchant_trans_id, identity_code, amount, order_title,
                                self._now(), self.store)
        scenario = scenario_for(identity_code)
        if scenario.hold:
            return Unknown("timeout", request_id=merchant_trans_id, no_answer=True)
        if scenario.corrupt_signature and reply.status == "S":
            return Unknown("answer signature did not verify", request_id=merchant_trans_id)
        return _result(reply, merchant_trans_id)

    def query(self, *, merchant_trans_id: str) -> GatewayResult:
        return read_query(_result(self.ledger.query(self.merchant_id, self._now(),
                                                    merchant_trans_id=merchant_trans_id), merchant_trans_id))

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult:
        return _result(self.ledger.cancel(self.merchant_id, self._now(), merchant_trans_id=merchant_trans_id),
                       merchant_trans_id)

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult:
        return _result(self.ledger.refund(self.merchant_id, acquirement_id, merchant_refund_id, amount, reason,
                                          self._now()), merchant_refund_id)
