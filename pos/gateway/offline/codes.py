"""The offline protocol's result codes (pos/data/result_codes.csv): resultCode -> id, status, meaning.

Read by the sandbox (to answer like the gateway), the notify reply, and the
terminal (to show a code's meaning); the message catalogue has one entry per row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["ResultCode", "result_codes"]


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
