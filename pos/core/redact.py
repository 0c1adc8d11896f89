"""Masking of payment codes (bearer tokens) in any text that leaves memory.

Codes are 16-32 digits starting 25-30 (reference §15); anything shaped like
one is masked to its last 4 digits before a log line or a stored text is
written, so a mistake at a call site cannot leak a code.
"""

from __future__ import annotations

import re

__all__ = ["mask_code", "redact"]

_CODE_RE = re.compile(r"(?<![0-9])(?:2[5-9]|30)[0-9]{14,30}(?![0-9])")


def mask_code(code: str | None) -> str:
    """A payment code as it may appear anywhere: its last 4 digits only."""
    if not code:
        return ""
    return "…" + code[-4:]


def redact(text: str) -> str:
    return _CODE_RE.sub(lambda m: mask_code(m.group(0)), text)
