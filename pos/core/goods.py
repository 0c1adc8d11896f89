"""The till's line items ("goods"): checked, and written the way AlipayCN reads them.

Seed 002: an AlipayCN order names its goods in `order.extendInfo.chinaExtraTransInfo`,
`goodsInfo` as `name^quantity|name^quantity` and `totalQuantity` as their sum.
The journal keeps a sale's goods in that same text (one column), so what was
sent is what is kept. A name may not hold the separators `^` or `|` (the
text could not be read back) nor control characters; quantities are whole
numbers from 1 to 9999. Every rule is checked before a sale exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pos.core.rules import Refusal

__all__ = ["GoodsLine", "MAX_LINES", "MAX_NAME", "MAX_QUANTITY", "MAX_GOODS_INFO", "check_goods",
           "goods_info", "parse_goods_info", "total_quantity"]

MAX_LINES = 50
MAX_NAME = 64
MAX_QUANTITY = 9999
# extendInfo is at most 2048 characters (Antom's Order reference); the goods text leaves room
# for the rest of chinaExtraTransInfo and the JSON around it.
MAX_GOODS_INFO = 1800


@dataclass(frozen=True)
class GoodsLine:
    name: str
    quantity: int


def check_goods(lines: Sequence[GoodsLine]) -> Refusal | None:
    """Why these line items cannot be sent, or None."""
    if len(lines) > MAX_LINES:
        return Refusal("goods", f"{len(lines)} items: at most {MAX_LINES} lines can be sent; group them")
    for n, line in enumerate(lines, 1):
        name = line.name.strip()
        if not name:
            return Refusal("goods", f"item {n} has no name")
        if len(name) > MAX_NAME:
            return Refusal("goods", f"item {n}'s name is longer than {MAX_NAME} characters")
        bad = sorted({c for c in name if c in "^|" or not c.isprintable()})
        if bad:
            return Refusal("goods", f"item {n}'s name holds {', '.join(repr(c) for c in bad)}: AlipayCN's "
                                    "goods list separates names with '^' and '|'; leave those (and control "
                                    "characters) out")
        if isinstance(line.quantity, bool) or not 1 <= line.quantity <= MAX_QUANTITY:
            return Refusal("goods", f"item {n}'s quantity must be a whole number from 1 to {MAX_QUANTITY}")
    if len(goods_info(lines)) > MAX_GOODS_INFO:
        return Refusal("goods", f"the item list is longer than {MAX_GOODS_INFO} characters: shorten the names "
                                "or group items")
    return None


def goods_info(lines: Sequence[GoodsLine]) -> str:
    """`name^quantity|name^quantity` (seed 002's goodsInfo); "" for no lines."""
    return "|".join(f"{line.name.strip()}^{line.quantity}" for line in lines)


def parse_goods_info(text: str) -> list[GoodsLine]:
    """The lines of a goodsInfo text written by `goods_info`."""
    lines: list[GoodsLine] = []
    for part in text.split("|") if text else []:
        name, _, quantity = part.rpartition("^")
        lines.append(GoodsLine(name, int(quantity)))
    return lines


def total_quantity(lines: Sequence[GoodsLine]) -> int:
    return sum(line.quantity for line in lines)
