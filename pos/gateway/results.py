"""The small set of typed results every gateway call returns.

The engine only ever sees these three. A timeout, a transport error, a non-200,
an unparseable or unsigned answer, or one that does not echo our request is
`Unknown`: we do not know whether money moved (design rule 2).
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from pos.core.outcomes import (  # noqa: F401  (re-exported while callers move)
    Failed, Gateway, GatewayResult, QueryOutcome, Succeeded, Unknown,
)

__all__ = [
    "Succeeded", "Failed", "Unknown", "GatewayResult", "Gateway",
    "QueryOutcome", "query_outcome", "read_query", "DEFAULT_NOT_FOUND", "ResultCode", "result_codes",
]


# payQuery's "not found" codes (§7.2, seed 003; a sister gateway says TARGET_NOT_FOUND).
DEFAULT_NOT_FOUND = ("ORDER_NOT_EXIST", "TARGET_NOT_FOUND")


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


def read_query(result: GatewayResult, not_found_codes: Iterable[str] = DEFAULT_NOT_FOUND) -> GatewayResult:
    """A payQuery answer with what it says about the payment set in `query`."""
    if isinstance(result, Unknown):
        return result
    return replace(result, query=query_outcome(result, frozenset(not_found_codes)))


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
