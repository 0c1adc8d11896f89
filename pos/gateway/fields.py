"""Small readers shared by the protocols' answer mappings (offline, ams): a wire amount, an id."""

from __future__ import annotations

from typing import Any

from pos.core.money import AmountError, CurrencyError, Money

__all__ = ["wire_money", "id_text"]


def wire_money(obj: Any) -> Money | None:
    """A gateway Money object ({"currency", "value"}), or None when absent or unreadable."""
    if obj is None:
        return None
    try:
        return Money.from_wire(obj)
    except (AmountError, CurrencyError, TypeError, ValueError):
        return None


def id_text(value: Any) -> str:
    """An id field's text, or "" when it is missing or not text."""
    return value if isinstance(value, str) else ""
