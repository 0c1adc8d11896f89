"""What the daemon, `pos doctor` and the health document need from any gateway client.

The payments runner needs only the core `Gateway` (pay, query, cancel,
refund: pos/core/outcomes.py). The parts around it also ask how the link is
(`health()`) and release the connection (`close()`); every protocol's client
implements `GatewayClient`, so nothing reads a client's attributes by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pos.core.outcomes import Gateway

__all__ = ["GatewayHealth", "GatewayClient"]


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
