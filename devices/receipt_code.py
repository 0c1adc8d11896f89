"""What a receipt's QR code / barcode carries: the sale's merchantTransId.

A prefix keeps it apart from payment codes (all digits, reference §15) and
from any other barcode in the shop; merchantTransId is string(64) (reference
§6.1). The printer writes it with `receipt_code`, the scanner reads it back
with `parse_receipt_code` so a manager can scan a receipt to refund the sale.
"""

from __future__ import annotations

import re

__all__ = ["RECEIPT_CODE_PREFIX", "receipt_code", "parse_receipt_code"]

RECEIPT_CODE_PREFIX = "POS:"
_TRANS_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def receipt_code(merchant_trans_id: str) -> str:
    if not _TRANS_ID.fullmatch(merchant_trans_id):
        raise ValueError(f"merchantTransId {merchant_trans_id!r} cannot be printed as a receipt code: "
                         "expected 1-64 letters, digits, '_', '.' or '-'")
    return RECEIPT_CODE_PREFIX + merchant_trans_id


def parse_receipt_code(text: str) -> str | None:
    """The merchantTransId in a receipt code, or None if text is not one."""
    if not text.startswith(RECEIPT_CODE_PREFIX):
        return None
    trans_id = text[len(RECEIPT_CODE_PREFIX):]
    return trans_id if _TRANS_ID.fullmatch(trans_id) else None
