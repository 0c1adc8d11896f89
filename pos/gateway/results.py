"""The small set of typed results every gateway call returns.

The engine only ever sees these three. A timeout, a transport error, a non-200,
an unparseable or unsigned answer, or one that does not echo our request is
`Unknown`: we do not know whether money moved (design rule 2).
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, Union

from pos.core.money import Money

__all__ = [
    "Succeeded", "Failed", "Unknown", "GatewayResult", "Gateway",
    "QueryOutcome", "query_outcome", "ResultCode", "result_codes",
]


@dataclass(frozen=True)
class Succeeded:
    """resultStatus S, signature verified. `data` is the response body."""

    data: dict[str, Any] = field(default_factory=dict)
    code: str = "SUCCESS"


@dataclass(frozen=True)
class Failed:
    """resultStatus F, signature verified: a final business answer."""

    code: str
    message: str = ""
    code_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unknown:
    """We do not know the outcome: U, timeout, transport error, bad signature..."""

    reason: str
    code: str | None = None


GatewayResult = Union[Succeeded, Failed, Unknown]


class Gateway(Protocol):
    """What the engine's runner needs from a gateway protocol."""

    def pay(self, *, merchant_trans_id: str, identity_code: str, amount: Money,
            order_title: str) -> GatewayResult: ...

    def query(self, *, merchant_trans_id: str) -> GatewayResult: ...

    def cancel(self, *, merchant_trans_id: str) -> GatewayResult: ...

    def refund(self, *, acquirement_id: str, merchant_refund_id: str, amount: Money,
               reason: str) -> GatewayResult: ...


class QueryOutcome(str, Enum):
    PAID = "PAID"            # the payment succeeded
    PENDING = "PENDING"      # created, not finished (customer confirming)
    CLOSED = "CLOSED"        # closed, failed or cancelled: no money moved
    NOT_FOUND = "NOT_FOUND"  # not created (yet): a not-found code
    UNKNOWN = "UNKNOWN"      # no answer we can trust


@lru_cache(maxsize=1)
def _status_table() -> dict[str, Any]:
    text = resources.files("pos.data").joinpath("acquirement_status.toml").read_text("utf-8")
    return tomllib.loads(text)


def query_outcome(result: GatewayResult, not_found_codes: frozenset[str] | set[str] | list[str]) -> QueryOutcome:
    """Read a payQuery result as one of QueryOutcome."""
    if isinstance(result, Unknown):
        return QueryOutcome.UNKNOWN
    if isinstance(result, Failed):
        if result.code in set(not_found_codes):
            return QueryOutcome.NOT_FOUND
        # Any other F on a *query* says nothing about the payment itself.
        return QueryOutcome.UNKNOWN
    table = _status_table()
    status = None
    for name in table["status_fields"]:
        if isinstance(result.data.get(name), str):
            status = result.data[name].upper()
            break
    if status in table["paid"]:
        return QueryOutcome.PAID
    if status in table["pending"]:
        return QueryOutcome.PENDING
    if status in table["closed"]:
        return QueryOutcome.CLOSED
    return QueryOutcome.UNKNOWN


@dataclass(frozen=True)
class ResultCode:
    code: str
    code_id: str
    status: str
    source: str
    meaning: str


@lru_cache(maxsize=1)
def result_codes() -> dict[str, ResultCode]:
    """The result-code table (pos/data/result_codes.csv), by resultCode."""
    text = resources.files("pos.data").joinpath("result_codes.csv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines())
    return {
        r["resultCode"]: ResultCode(r["resultCode"], r["resultCodeId"], r["resultStatus"], r["source"], r["meaning"])
        for r in rows
    }
