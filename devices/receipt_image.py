"""A receipt as a picture (PNG), drawn from the receipt data the journal keeps.

One renderer for both places that show it: headquarters' dashboard (from the
receipt data a terminal shipped with its print outcome) and `pos receipt
show ID --png FILE` on the terminal (from the same data in its print queue),
so the two write the same bytes for the same receipt, language and fonts.

The lines are those the terminal printed (devices/receipt.py's layout: title,
label/value pairs, amount, status, refunds), on a white strip the printer's
width in characters. Columns are counted as the printer counts them (wcwidth:
a Hanzi takes two). Each character is drawn with the font that has it: the
monospaced DejaVu Sans Mono for Latin text, a font with Chinese characters
(`cjk_font()`: fonts-wqy-microhei where installed, else what fontconfig finds
for zh-cn) for the rest, centred in its two columns. With no such font the
mono font can only draw its "missing glyph" box: that is logged once, and
`undrawable()` and `pos doctor` say so, so a picture never shows boxes
silently. The QR code is shown as the text it encodes.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from devices.messages import Catalogue, text_width
from devices.receipt import MASKED_CODE_STARS, ReceiptData, ReceiptKind, cut_to_width, pair_lines
from devices.receipt_code import receipt_code

__all__ = ["receipt_lines", "receipt_png", "cjk_font", "undrawable", "glyph_mask", "CjkFont", "CJK_PACKAGE",
           "cell_box"]

log = logging.getLogger(__name__)

WIDTH = 42
SIZE = 16           # pixels: the font size
LINE_H = SIZE + 6   # pixels from one line's top to the next
MARGIN = 16
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf")
# Fonts with Chinese characters, the smallest Debian package first (the one the install script and
# tests/system-deps.sh install); fontconfig is asked only when none of these is there.
CJK_PACKAGE = "fonts-wqy-microhei"
_CJK_KNOWN = (
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),        # fonts-wqy-microhei
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),          # fonts-wqy-zenhei
    (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"), 0),  # fonts-droid-fallback
)
_PROBE = "中"
_NOTDEF = "\U0010fffd"   # a private-use character no font draws: what a font shows for it is its .notdef box


@dataclass(frozen=True)
class CjkFont:
    path: Path
    index: int   # the face within a .ttc collection


def glyph_mask(font: ImageFont.FreeTypeFont, ch: str) -> bytes:
    """The pixels `font` draws for `ch` (an 'L' bitmap of a fixed box); equal to the .notdef box's when it has none."""
    size = math.ceil(font.size)
    img = Image.new("L", (3 * size, 2 * size), 0)
    ImageDraw.Draw(img).text((size // 2, size // 2), ch, fill=255, font=font)
    return img.tobytes()


@functools.cache
def _draws(font: ImageFont.FreeTypeFont, ch: str) -> bool:
    return ch.isspace() or glyph_mask(font, ch) != glyph_mask(font, _NOTDEF)


def _fontconfig_zh() -> Iterator[tuple[Path, int]]:
    """Fonts fontconfig knows to cover Simplified Chinese, best match for a monospace first."""
    try:
        out = subprocess.run(["fc-match", "-s", "-f", "%{file}\t%{index}\t%{lang}\n", "monospace:lang=zh-cn"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for row in out.splitlines():
        path, _, rest = row.partition("\t")
        index, _, langs = rest.partition("\t")
        if "zh-cn" in langs.split("|") and index.isdigit():
            yield Path(path), int(index)


@functools.cache
def cjk_font() -> CjkFont | None:
    """The font receipt pictures draw Chinese characters with; None when no installed font has them."""
    def candidates() -> Iterator[tuple[Path, int]]:
        yield from _CJK_KNOWN
        yield from _fontconfig_zh()

    for path, index in candidates():
        if not path.is_file():
            continue
        try:
            font = ImageFont.truetype(str(path), SIZE, index=index)
        except OSError:
            continue
        if _draws(font, _PROBE):
            return CjkFont(path, index)
    return None


@dataclass(frozen=True)
class _Fonts:
    regular: ImageFont.FreeTypeFont
    bold: ImageFont.FreeTypeFont
    cjk: ImageFont.FreeTypeFont | None
    cell: float      # the width of one column (the mono font's advance)
    ascent: int      # the mono font's: every line's baseline sits this far below its top

    def pick(self, ch: str, strong: bool) -> ImageFont.FreeTypeFont:
        mono = self.bold if strong else self.regular
        if self.cjk is not None and (text_width(ch) == 2 or not _draws(mono, ch)) and _draws(self.cjk, ch):
            return self.cjk
        return mono


@functools.cache
def _fonts() -> _Fonts | None:
    try:
        regular = ImageFont.truetype(str(_FONT), SIZE)
        bold = ImageFont.truetype(str(_BOLD), SIZE)
    except OSError:
        return None
    found = cjk_font()
    cjk = ImageFont.truetype(str(found.path), SIZE, index=found.index) if found else None
    return _Fonts(regular, bold, cjk, bold.getlength("M"), regular.getmetrics()[0])


def _pair(name: str, value: str, width: int) -> list[str]:
    return pair_lines(name, value, width)


def _center(text: str, width: int) -> str:
    text = cut_to_width(text, width)
    return " " * ((width - text_width(text)) // 2) + text


def receipt_lines(data: ReceiptData, catalogue: Catalogue, width: int = WIDTH) -> list[tuple[str, bool]]:
    """(text, bold) lines of the receipt, as the printer lays them out (columns counted with wcwidth)."""
    label = catalogue.receipt
    out: list[tuple[str, bool]] = [(_center(data.merchant_name, width), True)]
    if data.store_name:
        out.append((_center(data.store_name, width), False))
    if data.reprint:
        out.append((_center(label("reprint"), width), True))
    title = label(data.report_title_key) if data.kind is ReceiptKind.REPORT and data.report_title_key \
        else label("sale" if data.kind is ReceiptKind.SALE else "refund"
                   if data.kind is ReceiptKind.REFUND else "report_x")
    out += [(_center(title, width), True), ("-" * width, False)]
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
        out += [("-" * width, False), (cut_to_width(label("refunds"), width), False)]
        for r in data.refunds:
            out.append((cut_to_width(f"{r.when.strftime('%Y-%m-%d %H:%M')} {r.merchant_refund_id}", width), False))
            out += [(t, False) for t in _pair(label(r.state), r.amount.text, width)]
    if data.merchant_trans_id and data.kind is not ReceiptKind.REPORT:
        out += [("", False), (_center(f"[QR: {receipt_code(data.merchant_trans_id)}]", width), False),
                (_center(label("scan_to_refund"), width), False)]
    out += [("", False), (_center(label("thanks"), width), False)]
    return out


def undrawable(data: ReceiptData, catalogue: Catalogue, width: int = WIDTH) -> str:
    """The characters of the receipt's picture no installed font can draw (shown as boxes), in order, once each."""
    fonts = _fonts()
    if fonts is None:
        return ""
    seen: dict[str, None] = {}
    for text, strong in receipt_lines(data, catalogue, width):
        for ch in text:
            if not _draws(fonts.pick(ch, strong), ch):
                seen[ch] = None
    return "".join(seen)


def cell_box(line: int, column: int, columns: int = 1) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom) of `columns` columns from `column` on line `line`."""
    fonts = _fonts()
    cell = fonts.cell if fonts else 0.0
    return (math.floor(MARGIN + column * cell), MARGIN + line * LINE_H,
            math.ceil(MARGIN + (column + columns) * cell), MARGIN + (line + 1) * LINE_H)


_warned = False


def _warn_boxes(chars: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("receipt pictures: no installed font has the characters %r: they are drawn as boxes; "
                    "install a font with Chinese characters (apt-get install %s)", chars[:10], CJK_PACKAGE)


def _draw_line(draw: ImageDraw.ImageDraw, fonts: _Fonts, text: str, strong: bool, top: int) -> None:
    baseline = top + fonts.ascent
    column = 0
    run: list[str] = []
    run_at = 0
    missing = ""

    def flush() -> None:
        if run:
            mono = fonts.bold if strong else fonts.regular
            draw.text((MARGIN + run_at * fonts.cell, baseline), "".join(run), fill="black", font=mono, anchor="ls")
            run.clear()

    for ch in text:
        font = fonts.pick(ch, strong)
        wide = max(text_width(ch), 0)
        if font is fonts.cjk:
            flush()
            # Centred in its columns, as the printer puts a Hanzi in two; bold by a second pass one pixel on.
            x = MARGIN + column * fonts.cell + (max(wide, 1) * fonts.cell - font.getlength(ch)) / 2
            for dx in (0, 1) if strong else (0,):
                draw.text((x + dx, baseline), ch, fill="black", font=font, anchor="ls")
        else:
            if not _draws(font, ch):
                missing += ch
            if not run:
                run_at = column
            run.append(ch)
            if wide == 2:   # the mono font's box takes one column: keep the printer's columns after it
                flush()
        column += wide
    flush()
    if missing:
        _warn_boxes(missing)


def receipt_png(data: ReceiptData, catalogue: Catalogue, width: int = WIDTH) -> bytes:
    lines = receipt_lines(data, catalogue, width)
    fonts = _fonts()
    if fonts is None:   # no DejaVu: Pillow's own font, Latin only
        default = ImageFont.load_default()
        img = Image.new("RGB", (math.ceil(default.getlength("M" * width)) + 2 * MARGIN,
                                LINE_H * len(lines) + 2 * MARGIN), "white")
        draw = ImageDraw.Draw(img)
        for n, (text, _) in enumerate(lines):
            draw.text((MARGIN, MARGIN + n * LINE_H), text, fill="black", font=default)
    else:
        img = Image.new("RGB", (math.ceil(fonts.cell * width) + 2 * MARGIN, LINE_H * len(lines) + 2 * MARGIN),
                        "white")
        draw = ImageDraw.Draw(img)
        for n, (text, strong) in enumerate(lines):
            _draw_line(draw, fonts, text, strong, MARGIN + n * LINE_H)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
