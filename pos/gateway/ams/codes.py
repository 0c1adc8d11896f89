"""The v1 API's result codes (pos/data/ams_result_codes.csv): resultCode -> status, meaning.

Same shape as the offline table (pos.gateway.offline.codes.ResultCode; the v1
API publishes no numeric code ids, so `code_id` is empty). `source` says where
a row comes from: D = Antom's published documentation, I = inferred (the
offline protocol's name for the same case, kept so the cashier texts match).
`cause` classifies a code for the engine's rules (pos/core/outcomes.py Cause).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

from pos.core.outcomes import Cause, GatewayResult
from pos.gateway.offline.codes import ResultCode, classify

__all__ = ["ResultCode", "result_codes", "classified"]


@lru_cache(maxsize=1)
def result_codes() -> dict[str, ResultCode]:
    """The v1 result-code table, by resultCode."""
    text = resources.files("pos.data").joinpath("ams_result_codes.csv").read_text("utf-8")
    return {r["resultCode"]: ResultCode(r["resultCode"], "", r["resultStatus"], r["source"], r["meaning"],
                                        Cause(r["cause"]) if r["cause"] else None)
            for r in csv.DictReader(text.splitlines())}


def classified(result: GatewayResult) -> GatewayResult:
    """A v1 answer with its code's cause set (the client and the notifications)."""
    return classify(result, result_codes())
