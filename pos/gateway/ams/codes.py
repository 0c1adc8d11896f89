"""The v1 API's result codes (pos/data/ams_result_codes.csv): resultCode -> status, meaning.

Same shape as the offline table (pos.gateway.offline.codes.ResultCode; the v1
API publishes no numeric code ids, so `code_id` is empty). `source` says where
a row comes from: D = Antom's published documentation, I = inferred (the
offline protocol's name for the same case, kept so the cashier texts match).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

from pos.gateway.offline.codes import ResultCode

__all__ = ["ResultCode", "result_codes"]


@lru_cache(maxsize=1)
def result_codes() -> dict[str, ResultCode]:
    """The v1 result-code table, by resultCode."""
    text = resources.files("pos.data").joinpath("ams_result_codes.csv").read_text("utf-8")
    return {r["resultCode"]: ResultCode(r["resultCode"], "", r["resultStatus"], r["source"], r["meaning"])
            for r in csv.DictReader(text.splitlines())}
