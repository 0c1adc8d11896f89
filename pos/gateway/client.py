"""What the daemon, `pos doctor` and the health document need from any gateway client.

The payments runner needs only the core `Gateway` (pay, query, cancel,
refund: pos/core/outcomes.py). The parts around it also ask how the link is
(`health()`) and release the connection (`close()`); every protocol's client
implements `GatewayClient`, so nothing reads a client's attributes by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from pos.core.money import Money
from pos.core.outcomes import Gateway, GatewayResult, Prepared

__all__ = ["GatewayHealth", "GatewayClient", "PreparingClient"]


@dataclass(frozen=True)
class GatewayHealth:
    """How the last exchange with the gateway went."""

    # Seconds the last call took; None before the first call.
    last_latency: float | None = None
    # Why the last exchange told us nothing (transport, HTTP or signature
    # trouble, in the client's words); None after any verified answer.
    last_error: str | None = None
    # The last exchange got no answer at all over the link (timeout, connection
    # or transport error): the network, not the gateway, is the likely cause.
    link_down: bool = False


class GatewayClient(Gateway, Protocol):
    """A gateway protocol's client as the daemon holds it."""

    def health(self) -> GatewayHealth: ...

    def close(self) -> None: ...


class PreparingClient(ABC):
    """A protocol's client that builds and signs each call apart from sending it (SignsAhead,
    pos/core/outcomes.py): each Gateway method is its prepared call, sent at once, and
    `prepare(name, ...)` hands the prepared call back unsent. A client defines `_prepare_<name>`
    for each name in OPERATIONS."""

    OPERATIONS: frozenset[str] = frozenset({"pay", "query", "cancel", "refund"})

    def prepare(self, operation: str, **fields: Any) -> Prepared:
        """`operation` (one of OPERATIONS: a Gateway method's name and keywords) built and signed
        now; the returned callable sends it and reads the answer."""
        if operation not in self.OPERATIONS:
            raise ValueError(f"{type(self).__name__} has no call {operation!r}")
        build: Any = getattr(self, f"_prepare_{operation}")
        prepared: Prepared = build(**fields)
        return prepared

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str, goods: str = "") -> GatewayResult:
        return self._prepare_pay(merchant_trans_id=merchant_trans_id, identity_code=identity_code, amount=amount,
                                 order_title=order_title, goods=goods)()

    def query(self, *, merchant_trans_id: str) -> GatewayResult:
        return self._prepare_query(merchant_trans_id=merchant_trans_id)()

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult:
        return self._prepare_cancel(merchant_trans_id=merchant_trans_id)()

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult:
        return self._prepare_refund(acquirement_id=acquirement_id, merchant_refund_id=merchant_refund_id,
                                    amount=amount, reason=reason)()

    @abstractmethod
    def _prepare_pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
                     order_title: str, goods: str = "") -> Prepared: ...

    @abstractmethod
    def _prepare_query(self, *, merchant_trans_id: str) -> Prepared: ...

    @abstractmethod
    def _prepare_cancel(self, *, merchant_trans_id: str) -> Prepared: ...

    @abstractmethod
    def _prepare_refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
                        reason: str) -> Prepared: ...
