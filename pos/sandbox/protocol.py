"""What the sandbox's HTTP host (server.py) needs from a protocol module (offline.py, ...).

A protocol module turns one request's path and raw bytes into one `Answer`
(signed by the protocol's rules); the host only moves bytes. A new protocol
family's sandbox is one more module implementing `SandboxProtocol`, named in
server.py's `PROTOCOLS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Answer", "SandboxProtocol"]


@dataclass(frozen=True)
class Answer:
    body: bytes
    http_status: int = 200
    hold: float = 0.0       # seconds to wait before sending (the client has long given up)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent as given (the v1 API signs in headers)


class SandboxProtocol(Protocol):
    # Largest request body read; anything longer gets `handle(path, b"x" * (max_body + 1))`'s answer.
    max_body: int

    def handle(self, path: str, raw: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        """The answer to one request (its path, raw body and headers); never raises, whatever arrives."""
        ...

    def ledger_json(self) -> dict[str, Any]:
        """The sandbox's state now, for GET /sandbox/ledger."""
        ...
