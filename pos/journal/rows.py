"""How sale and refund records map to the journal's rows, both ways.

The columns of `sales` and `refunds` are the records' fields (pos/core/records.py)
with the amount split into `amount_minor` and `currency`, states (and a sale's
result cause) stored by value and flags as 0/1.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pos.core.money import Money
from pos.core.outcomes import Cause
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.redact import redact
from pos.journal.db import Row

__all__ = ["SALE_FIELDS", "REFUND_FIELDS", "SALE_BOOLS", "REFUND_BOOLS", "to_sale", "to_refund", "column_values"]

SALE_BOOLS = frozenset({"abort_requested", "alarmed", "resolved_by_corrector"})
REFUND_BOOLS = frozenset({"alarmed"})
SALE_FIELDS = [f.name for f in fields(SaleRecord) if f.name != "amount"]
REFUND_FIELDS = [f.name for f in fields(RefundRecord) if f.name != "amount"]


def to_sale(row: Row) -> SaleRecord:
    values = {n: row[n] for n in SALE_FIELDS}
    values["state"] = SaleState(row["state"])
    values["result_cause"] = Cause(row["result_cause"]) if row["result_cause"] else None
    for b in SALE_BOOLS:
        values[b] = bool(row[b])
    return SaleRecord(amount=Money(row["amount_minor"], row["currency"]), **values)


def to_refund(row: Row) -> RefundRecord:
    values = {n: row[n] for n in REFUND_FIELDS}
    values["state"] = RefundState(row["state"])
    for b in REFUND_BOOLS:
        values[b] = bool(row[b])
    return RefundRecord(amount=Money(row["amount_minor"], row["currency"]), **values)


def column_values(record: SaleRecord | RefundRecord, columns: list[str], bools: frozenset[str]) -> list[Any]:
    """The values to store for `columns` of a record, in that order."""
    values: list[Any] = []
    for n in columns:
        v = getattr(record, n)
        if n in ("state", "result_cause") and v is not None:
            v = v.value
        elif n in bools:
            v = int(bool(v))
        elif n == "result_message" and isinstance(v, str):
            # The gateway's own words (resultMsg) are not ours to trust: one that
            # quotes the payment code must not keep the bearer token on disk.
            v = redact(v)
        values.append(v)
    return values
