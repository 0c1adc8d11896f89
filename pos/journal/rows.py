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

__all__ = ["SALE_FIELDS", "REFUND_FIELDS", "SALE_BOOLS", "REFUND_BOOLS", "SALE_FIXED", "REFUND_FIXED",
           "SALE_STEP_FIELDS", "REFUND_STEP_FIELDS", "to_sale", "to_refund", "column_values"]

SALE_BOOLS = frozenset({"abort_requested", "alarmed", "resolved_by_corrector"})
REFUND_BOOLS = frozenset({"alarmed"})
SALE_FIELDS = [f.name for f in fields(SaleRecord) if f.name != "amount"]
REFUND_FIELDS = [f.name for f in fields(RefundRecord) if f.name != "amount"]

# The columns written once, when the item is created: no engine step changes them
# (pos/core/sale.py, refund.py, items.py, engine.py replace only the others). A step's
# UPDATE sets only the rest, so the indexes on these (merchantTransId, the local date)
# are not rewritten by every step, and names them in its WHERE: a record whose fixed
# fields differ from the row's is refused, never half written.
SALE_FIXED = ["merchant_trans_id", "amount_minor", "currency", "code_masked", "order_title", "reference",
              "created_at", "local_date", "scanned_at", "goods"]
REFUND_FIXED = ["sale_id", "merchant_refund_id", "acquirement_id", "amount_minor", "currency", "reason",
                "created_at", "local_date"]
SALE_STEP_FIELDS = [n for n in SALE_FIELDS if n != "sale_id" and n not in SALE_FIXED]
REFUND_STEP_FIELDS = [n for n in REFUND_FIELDS if n != "refund_id" and n not in REFUND_FIXED]


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
        if n == "amount_minor":
            values.append(record.amount.minor)
            continue
        if n == "currency":
            values.append(record.amount.currency)
            continue
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
