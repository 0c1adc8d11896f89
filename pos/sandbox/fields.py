"""Reading a request body's fields in the sandbox, with the gateway's own refusal codes.

Both protocols refuse a malformed field with PARAM_ILLEGAL; they differ in what they
call a missing one (the offline gateway says PARAM_MISSING, the v1 API PARAM_ILLEGAL),
so each protocol makes its `RequestFields` with its own word for "missing".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pos.core.money import AmountError, CurrencyError, Money

__all__ = ["Reject", "RequestFields"]


class Reject(Exception):
    """A request the gateway refuses: `code` is its resultCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class RequestFields:
    def __init__(self, missing_code: str) -> None:
        self.missing_code = missing_code

    def text(self, body: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 64) -> str:
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise Reject(self.missing_code, f"{name} is required")
            return ""
        if not isinstance(value, str) or len(value) > max_len:
            raise Reject("PARAM_ILLEGAL", f"{name} must be text of at most {max_len} characters")
        return value

    def object(self, body: Mapping[str, Any], name: str) -> dict[str, Any]:
        value = body.get(name)
        if not isinstance(value, dict):
            raise Reject("PARAM_ILLEGAL", f"{name} is required and must be an object")
        return value

    def money(self, obj: Any, name: str) -> Money:
        """An amount in wire form (§5.1: string or integer minor units), above zero."""
        if obj is None:
            raise Reject(self.missing_code, f"{name} is required")
        try:
            amount = Money.from_wire(obj)
        except (AmountError, CurrencyError) as exc:
            raise Reject("PARAM_ILLEGAL", f"{name}: {exc}") from None
        if amount.minor <= 0:
            raise Reject("PARAM_ILLEGAL", f"{name} must be above zero")
        return amount
