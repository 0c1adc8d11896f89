"""A receipt as a picture (PNG), drawn from the receipt data the journal keeps.

One renderer for both places that show it: headquarters' dashboard (from the
receipt data a terminal shipped with its print outcome) and `pos receipt
show ID --png FILE` on the terminal (from the same data in its print queue),
so the two write the same bytes for the same receipt and language.

The lines are those the terminal printed (devices/receipt.py's layout: title,
label/value pairs, amount, status, refunds), on a white strip the printer's
width in characters, in a monospaced font (DejaVu Sans Mono where installed,
Pillow's own font otherwise). The QR code is shown as the text it encodes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from devices.messages import Catalogue
from devices.receipt import MASKED_CODE_STARS, ReceiptData, ReceiptKind
from devices.receipt_code import receipt_code

__all__ = ["receipt_lines", "receipt_png"]

WIDTH = 42
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf")


def _pair(name: str, value: str, width: int) -> list[str]:
    if len(name) + 1 + len(value) <= width:
        return [name + " " * (width - len(name) - len(value)) + value]
    return [name[:width], value[-width:].rjust(width)]


def receipt_lines(data: ReceiptData, catalogue: Catalogue, width: int = WIDTH) -> list[tuple[str, bool]]:
    """(text, bold) lines of the receipt, as the printer lays them out."""
    label = catalogue.receipt
    out: list[tuple[str, bool]] = [(data.merchant_name[:width].center(width), True)]
    if data.store_name:
        out.append((data.store_name[:width].center(width), False))
    if data.reprint:
        out.append((label("reprint").center(width), True))
    title = label(data.report_title_key) if data.kind is ReceiptKind.REPORT and data.report_title_key \
        else label("sale" if data.kind is ReceiptKind.SALE else "refund"
                   if data.kind is ReceiptKind.REFUND else "report_x")
    out += [(title.center(width), True), ("-" * width, False)]
    rows = [(label("terminal"), data.terminal_id), (label("date"), data.when.strftime("%Y-%m-%d %H:%M:%S"))]
    if data.kind is not ReceiptKind.REPORT:
        for key, value in (("order", data.order_title), ("trans_id", data.merchant_trans_id),
                           ("acquirement_id", data.acquirement_id)):
            if value:
                rows.append((label(key), value))
        if data.code_last4:
            rows.append((label("code"), "*" * MASKED_CODE_STARS + data.code_last4))
    for name, value in [*rows, *data.report_lines]:
        out += [(t, False) for t in _pair(name, value, width)]
    if data.amount is not None:
        out.append(("-" * width, False))
        out += [(t, True) for t in _pair(label("amount"), data.amount.text, width)]
    if data.status_key:
        out += [(t, False) for t in _pair(label("status"), label(data.status_key), width)]
    if data.refunds:
        out += [("-" * width, False), (label("refunds"), False)]
        for r in data.refunds:
            out.append((f"{r.when.strftime('%Y-%m-%d %H:%M')} {r.merchant_refund_id}"[:width], False))
            out += [(t, False) for t in _pair(label(r.state), r.amount.text, width)]
    if data.merchant_trans_id and data.kind is not ReceiptKind.REPORT:
        out += [("", False), (f"[QR: {receipt_code(data.merchant_trans_id)}]".center(width), False),
                (label("scan_to_refund").center(width), False)]
    out += [("", False), (label("thanks").center(width), False)]
    return out


def receipt_png(data: ReceiptData, catalogue: Catalogue, width: int = WIDTH) -> bytes:
    lines = receipt_lines(data, catalogue, width)
    size = 16
    try:
        regular: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(str(_FONT), size)
        bold: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(str(_BOLD), size)
    except OSError:
        regular = bold = ImageFont.load_default()
    text_w = math.ceil(bold.getlength("M" * width))
    line_h = size + 6
    margin = 16
    img = Image.new("RGB", (text_w + 2 * margin, line_h * len(lines) + 2 * margin), "white")
    draw = ImageDraw.Draw(img)
    for n, (text, strong) in enumerate(lines):
        draw.text((margin, margin + n * line_h), text, fill="black", font=bold if strong else regular)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
