"""Masking of payment codes (bearer tokens) in any text that leaves memory.

Codes are 16-32 digits starting 25-30 (reference §15); anything shaped like
one is masked to its last 4 digits before a log line or a stored text is
written, so a mistake at a call site cannot leak a code. `mask_code` is the
one masked form: stored, printed and logged alike.
"""

from __future__ import annotations

import re

__all__ = ["mask_code", "redact"]

_CODE_RE = re.compile(r"(?<![0-9])(?:2[5-9]|30)[0-9]{14,30}(?![0-9])")


def mask_code(code: str | None) -> str:
    """A payment code as it may appear anywhere (journal, receipt, log): all but the last 4 digits hidden.

    One star per hidden digit (at least 4), so the masked form keeps the
    code's length: `**************1234`. This is the form the journal has
    always stored and receipts print; logs use it too, so one search finds a
    payment everywhere.
    """
    if not code:
        return ""
    tail = code[-4:] if len(code) >= 4 else ""
    return "*" * max(len(code) - 4, 4) + tail


def redact(text: str) -> str:
    return _CODE_RE.sub(lambda m: mask_code(m.group(0)), text)
