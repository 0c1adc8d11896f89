"""payQuery's answer read as a `QueryOutcome`: the offline protocol's status words.

The words and the fields that carry them are data (pos/data/acquirement_status.toml):
the documentation and the sister gateways disagree on names, and a new word is
a data change. A not-found code (§7.2) says the order was not created (yet);
any other F on a query says nothing about the payment.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from typing import Any

from pos.core.outcomes import Failed, GatewayResult, QueryOutcome, Succeeded, Unknown

__all__ = ["DEFAULT_NOT_FOUND", "query_outcome", "read_query"]

# payQuery's "not found" codes (§7.2, seed 003; a sister gateway says TARGET_NOT_FOUND).
DEFAULT_NOT_FOUND = ("ORDER_NOT_EXIST", "TARGET_NOT_FOUND")


@lru_cache(maxsize=1)
def _status_table() -> dict[str, Any]:
    text = resources.files("pos.data").joinpath("acquirement_status.toml").read_text("utf-8")
    return tomllib.loads(text)


def query_outcome(result: GatewayResult, not_found_codes: Iterable[str]) -> QueryOutcome:
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
        # Paid needs Alipay's id for the payment (the client drops an unusable one): without it, ask again.
        return QueryOutcome.PAID if result.gateway_id else QueryOutcome.UNKNOWN
    if status in table["pending"]:
        return QueryOutcome.PENDING
    if status in table["closed"]:
        return QueryOutcome.CLOSED
    return QueryOutcome.UNKNOWN


def read_query(result: GatewayResult, not_found_codes: Iterable[str] = DEFAULT_NOT_FOUND) -> GatewayResult:
    """A payQuery answer with what it says about the payment set in `query` (and, for a closed
    payment that names why, its failure code in `result_code`)."""
    if isinstance(result, Unknown):
        return result
    outcome = query_outcome(result, frozenset(not_found_codes))
    read = replace(result, query=outcome)
    if outcome is QueryOutcome.CLOSED and isinstance(read, Succeeded):
        return _failure_of(read)
    return read


def _failure_of(result: Succeeded) -> Succeeded:
    """The closed payment's failure code, from the first field of `failure_code_fields` that names one
    (and its message from `failure_message_fields`); unpublished for this gateway, so data."""
    table = _status_table()
    for name in table.get("failure_code_fields", []):
        code = result.data.get(name)
        if isinstance(code, str) and code.strip() and len(code) <= 64:
            message = next((result.data[m] for m in table.get("failure_message_fields", [])
                            if isinstance(result.data.get(m), str)), "")
            return replace(result, result_code=code.strip(), result_message=message[:256])
    return result
