"""The offline protocol's result codes (pos/data/result_codes.csv): resultCode -> id, status, meaning, cause.

Read by the sandbox (to answer like the gateway), the notify reply, the client
(to classify an answer's code as a `Cause`, the only thing about a code the
engine's rules read) and the terminal (to show a code's meaning); the message
catalogue has one entry per row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

from pos.core.outcomes import Cause, GatewayResult, Succeeded

__all__ = ["ResultCode", "result_codes", "classify", "classified"]


@dataclass(frozen=True)
class ResultCode:
    code: str
    code_id: str
    status: str
    source: str
    meaning: str
    cause: Cause | None = None   # the `cause` column: why such an answer came, where a rule depends on it


@lru_cache(maxsize=1)
def result_codes() -> dict[str, ResultCode]:
    """The result-code table (pos/data/result_codes.csv), by resultCode."""
    text = resources.files("pos.data").joinpath("result_codes.csv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines())
    return {
        r["resultCode"]: ResultCode(r["resultCode"], r["resultCodeId"], r["resultStatus"], r["source"], r["meaning"],
                                    Cause(r["cause"]) if r["cause"] else None)
        for r in rows
    }


def classify(result: GatewayResult, table: dict[str, ResultCode]) -> GatewayResult:
    """An F or U answer with the cause `table` gives its code (None for a code without one)."""
    if isinstance(result, Succeeded):
        return result
    row = table.get(result.code or "")
    return replace(result, cause=row.cause if row else None)


def classified(result: GatewayResult) -> GatewayResult:
    """An offline answer with its code's cause set (the client, the in-process sandbox, notify.pay)."""
    return classify(result, result_codes())
