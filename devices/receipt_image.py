"""A receipt as a picture (PNG), drawn from the receipt data the journal keeps.

One renderer for both places that show it: headquarters' dashboard (from the
receipt data a terminal shipped with its print outcome) and `pos receipt
show ID --png FILE` on the terminal (from the same data in its print queue),
so the two write the same bytes for the same receipt, language and fonts.

The picture is drawn from the printer's own layout (`devices.receipt.
receipt_layout`): the same lines in the same order with the same styles (bold,
double height, centred), the QR code as a real QR image (qrcode) and the
Code 128 barcode as bars (python-barcode), the cut as a dashed edge, so every
line the printer prints is in the picture by construction. The picture is laid
out on the paper the receipt was printed on (`ReceiptData.paper`: its columns,
QR code or barcode and bar width), the printer's defaults for receipts kept
before they carried it. `render_picture`
returns the PNG with what it drew (`Drawn` rows), which tests hold against
the printer's bytes. Lines are drawn on a white strip the printer's width in
characters. Columns are counted as the printer counts them (wcwidth:
a Hanzi takes two). Each character is drawn with the font that has it: the
monospaced DejaVu Sans Mono for Latin text, a font with Chinese characters
(`cjk_font()`: fonts-wqy-microhei where installed, else what fontconfig finds
for zh-cn) for the rest, centred in its two columns. With no such font the
mono font can only draw its "missing glyph" box: that is logged once, and
`undrawable()` and `pos doctor` say so, so a picture never shows boxes
silently.
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
from devices.receipt import (
    Barcode,
    Cut,
    Line,
    Paper,
    Qr,
    ReceiptData,
    ReceiptLayout,
    Size,
    Style,
    receipt_layout,
    wrap_to_width,
)

__all__ = ["receipt_lines", "receipt_png", "render_picture", "picture_rows", "Picture", "Drawn", "cjk_font",
           "undrawable", "glyph_mask", "CjkFont", "CJK_PACKAGE", "cell_box"]

log = logging.getLogger(__name__)

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


DOTS_PER_COLUMN = 12   # the printer's font A is 12 dots wide: QR modules and bars are given in dots
BARCODE_HEIGHT_DOTS = 64   # the barcode's height as printed (GS h), in dots
QUIET = 4               # pixels of white above and below a QR code or barcode


@dataclass(frozen=True)
class Drawn:
    """One row of the picture: a line of text, a QR code, a barcode or the cut, and where it was drawn."""

    kind: str                        # "text" | "qr" | "barcode" | "cut"
    text: str                        # text: as printed (not padded); qr / barcode: what the code carries
    style: Style
    column: int                      # text: the column its first character is in
    box: tuple[int, int, int, int]   # pixels: left, top, right, bottom
    module: int = 0                  # qr / barcode: the printer's dots per module (QR size, GS w)

    @property
    def shown(self) -> str:
        """The row as text, padded to its columns; a code as [QR: ...] / [BARCODE: ...]."""
        if self.kind == "text":
            return " " * self.column + self.text
        return "" if self.kind == "cut" else f"[{self.kind.upper()}: {self.text}]"


@dataclass(frozen=True)
class Picture:
    png: bytes
    drawn: tuple[Drawn, ...]


def _qr_matrix(content: str) -> list[list[bool]]:
    """The QR code the printer draws for `content` (GS ( k: model 2, error correction L, smallest version)."""
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=0)
    code.add_data(content)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def _code128_bars(content: str) -> str:
    """The modules ('1' a bar, '0' a space) of the Code 128 barcode carrying `content`."""
    from barcode import Code128

    return str(Code128(content).build()[0])


def _rows(layout: ReceiptLayout, cell: float) -> list[Drawn]:
    """Where each line and block of the layout goes, top to bottom (boxes in pixels)."""
    width = layout.width
    strip = cell * width
    rows: list[Drawn] = []
    top = MARGIN

    def add(kind: str, text: str, style: Style, column: int, span: float, height: int, module: int = 0) -> None:
        nonlocal top
        # A code wider than the strip (bars of one dot are drawn one pixel wide) starts at the margin.
        left = MARGIN + (column * cell if kind == "text" else max(0.0, (strip - span) / 2)
                         if style.align == "center" else 0)
        rows.append(Drawn(kind, text, style, column, (math.floor(left), top, math.ceil(left + span), top + height),
                          module))
        top += height

    for block in layout.blocks:
        if isinstance(block, Line):
            height = LINE_H * (2 if block.style.size is Size.DOUBLE_HEIGHT else 1)
            # A line longer than the paper goes on over the next lines, as the printer wraps it.
            for text in wrap_to_width(block.text, width):
                used = text_width(text)
                column = (width - used) // 2 if block.style.align == "center" and used else 0
                add("text", text, block.style, column, used * cell, height)
        elif isinstance(block, Qr):
            side = len(_qr_matrix(block.content)) * _dots(block.module, cell)
            add("qr", block.content, block.style, 0, side, side + 2 * QUIET, block.module)
        elif isinstance(block, Barcode):
            span = len(_code128_bars(block.content)) * _bar_pixels(block.module, cell)
            add("barcode", block.content, block.style, 0, span, _dots(BARCODE_HEIGHT_DOTS, cell) + 2 * QUIET,
                block.module)
        elif isinstance(block, Cut):
            add("cut", "", Style(), 0, strip, LINE_H)
    return rows


def _dots(dots: int, cell: float) -> int:
    """Pixels for a length the printer gives in dots."""
    return max(1, round(dots * cell / DOTS_PER_COLUMN))


def _bar_pixels(dots: int, cell: float) -> int:
    """Pixels per barcode module: the printer's dots scaled down (never up), so the bars fit the strip
    as they fit the paper; at least one."""
    return max(1, math.floor(dots * cell / DOTS_PER_COLUMN))


def _draw_code(draw: ImageDraw.ImageDraw, row: Drawn, cell: float) -> None:
    left, top = row.box[0], row.box[1] + QUIET
    if row.kind == "qr":
        matrix = _qr_matrix(row.text)
        px = (row.box[2] - row.box[0]) // len(matrix)
        for y, line in enumerate(matrix):
            for x, dark in enumerate(line):
                if dark:
                    draw.rectangle((left + x * px, top + y * px, left + (x + 1) * px - 1, top + (y + 1) * px - 1),
                                   fill="black")
    elif row.kind == "barcode":
        px = (row.box[2] - row.box[0]) // len(_code128_bars(row.text))
        for x, bar in enumerate(_code128_bars(row.text)):
            if bar == "1":
                draw.rectangle((left + x * px, top, left + (x + 1) * px - 1, row.box[3] - QUIET - 1), fill="black")
    elif row.kind == "cut":   # the end of the paper
        middle = (row.box[1] + row.box[3]) // 2
        for x in range(row.box[0], row.box[2], 8):
            draw.line((x, middle, min(x + 4, row.box[2]), middle), fill="gray")


def receipt_lines(data: ReceiptData, catalogue: Catalogue) -> list[tuple[str, bool]]:
    """(text, bold) rows of the receipt's picture, padded to their columns; codes as [QR: ...]; no cut."""
    return [(row.shown, row.style.bold) for row in picture_rows(data, catalogue) if row.kind != "cut"]


def _cell(fonts: _Fonts | None) -> float:
    return fonts.cell if fonts else ImageFont.load_default().getlength("M")


def picture_rows(data: ReceiptData, catalogue: Catalogue, paper: Paper | None = None) -> list[Drawn]:
    """The rows the picture of the receipt has, laid out as the printer lays it out (on `data.paper`)."""
    return _rows(receipt_layout(data, catalogue, paper), _cell(_fonts()))


def undrawable(data: ReceiptData, catalogue: Catalogue) -> str:
    """The characters of the receipt's picture no installed font can draw (shown as boxes), in order, once each."""
    fonts = _fonts()
    if fonts is None:
        return ""
    seen: dict[str, None] = {}
    for row in picture_rows(data, catalogue):
        for ch in row.text if row.kind == "text" else "":
            if not _draws(fonts.pick(ch, row.style.bold), ch):
                seen[ch] = None
    return "".join(seen)


def cell_box(row: Drawn, column: int, columns: int = 1) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom) of `columns` columns from `column` on the picture's `row`."""
    fonts = _fonts()
    cell = fonts.cell if fonts else 0.0
    return (math.floor(MARGIN + column * cell), row.box[1], math.ceil(MARGIN + (column + columns) * cell), row.box[3])


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


def render_picture(data: ReceiptData, catalogue: Catalogue, paper: Paper | None = None) -> Picture:
    """The receipt as a PNG picture, with the rows drawn in it, in order.

    On the paper the receipt was printed on (`data.paper`, which the print queue keeps and ships to
    headquarters with it), so the terminal's picture and the dashboard's are the paper's; `paper`
    lays it out on another."""
    fonts = _fonts()
    default = ImageFont.load_default() if fonts is None else None   # no DejaVu: Pillow's own font, Latin only
    cell = _cell(fonts)
    layout = receipt_layout(data, catalogue, paper)
    width = layout.width
    rows = _rows(layout, cell)
    drawn: list[Drawn] = []
    # As wide as the paper's columns, or as its widest code with a margin of white either side.
    img = Image.new("RGB", (max([math.ceil(cell * width) + MARGIN, *(row.box[2] for row in rows)]) + MARGIN,
                            (rows[-1].box[3] if rows else 0) + MARGIN), "white")
    draw = ImageDraw.Draw(img)
    for row in rows:
        drawn.append(row)
        if row.kind != "text":
            _draw_code(draw, row, cell)
            continue
        height = row.box[3] - row.box[1]
        # A double-height line is drawn at its normal size, then stretched as the printer doubles its dots.
        line = Image.new("RGB", (img.width, LINE_H), "white") if height != LINE_H else None
        canvas = draw if line is None else ImageDraw.Draw(line)
        top = row.box[1] if line is None else 0
        if default is not None:
            canvas.text((MARGIN + row.column * cell, top), row.text, fill="black", font=default)
        elif fonts is not None:
            _draw_line(canvas, fonts, " " * row.column + row.text, row.style.bold, top)
        if line is not None:
            img.paste(line.resize((img.width, height), Image.Resampling.NEAREST), (0, row.box[1]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Picture(buf.getvalue(), tuple(drawn))


def receipt_png(data: ReceiptData, catalogue: Catalogue) -> bytes:
    """The receipt as a PNG picture: what `pos receipt show --png` writes and the dashboard shows."""
    return render_picture(data, catalogue).png
