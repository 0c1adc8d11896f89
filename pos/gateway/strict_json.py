"""JSON read strictly, for bytes a signature vouches for: one meaning only.

A signed body with a key twice (`{"paymentRequestId":"A","paymentRequestId":"B"}`)
means one thing to us (the last) and maybe another to whoever checked it before;
a string with a lone surrogate (`"\\ud800"`) cannot be written to the journal,
a log or an answer. Both are refused here, with the reason.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_strict"]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        out[key] = value
    return out


def _check_text(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")   # UnicodeEncodeError (a ValueError) on a lone surrogate
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads_strict(raw: bytes | str) -> Any:
    """The JSON value of `raw`; ValueError (with the reason) for bad UTF-8, bad JSON, a duplicate key
    or a string that is not valid Unicode. RecursionError (deep nesting) is reported as ValueError too."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, object_pairs_hook=_no_duplicates)
        _check_text(value)
    except UnicodeError as exc:
        raise ValueError(f"not valid UTF-8 text: {exc}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return value
