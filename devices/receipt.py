"""Receipts: built from a record (`ReceiptData`), never from free text.

`receipt_layout(data, catalogue, paper)` lays a receipt out once: the lines
and blocks in print order with their styles (`ReceiptLayout`): header, the
sale's lines, a QR code (or a Code 128 barcode with print_qr = false)
carrying the merchantTransId (`devices.receipt_code`) so a manager can scan
the receipt to refund it, and a cut. Long lines wrap at spaces (text with
none, such as an id or Chinese, where the line ends). Two back ends draw that
one layout:
`render_layout` here (ESC/POS bytes made by python-escpos's encoder into
`devices.printer.escpos_buffer()`; `render_receipt(data, printer_settings, catalogue)` does both steps)
and the receipt picture (devices/receipt_image.py), so every line on paper is
in the picture.

The paper shapes the layout (`Paper`: columns, dots per line, QR or
barcode); the print queue stamps each receipt it keeps with its printer's
paper (`ReceiptData.paper`), so a picture drawn later, at headquarters too,
is laid out as that receipt was printed. The barcode's bar width (GS w) and
code sets (Code 128 set C packs digit pairs) are chosen to fit the paper's
dots (`paper_dots`), the bar no narrower than the printer takes
(`Paper.narrowest_bar`, `[printer] narrowest_bar`: 2 dots, as Epson documents
GS w on many models); a code that cannot fit even at that width is printed as
a QR code instead, with a warning in the log.

Text is sent in the printer's configured encoding: for GB18030 and Big5,
runs of Chinese text are wrapped in FS & / FS . (enter / leave the Chinese
character mode of Chinese-market ESC/POS printers); UTF-8 is sent as is
(printers with a UTF-8 mode); ASCII replaces what it cannot carry with '?'.
Column widths are measured with wcwidth (a Hanzi takes two columns).

A payment code is never on a receipt: `code_last4` holds at most 4 digits
(checked) and is printed as ************1234.

Receipts know nothing of payments: amounts arrive as `ReceiptAmount`, plain
minor units and a currency with the text already made by the terminal's
receipt builder (pos/terminal/receipts.py), which owns how money is written.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from devices.messages import Catalogue, text_width
from devices.printer import escpos_buffer, load_escpos, quiet_stdout
from devices.receipt_code import receipt_code

__all__ = [
    "ReceiptKind",
    "ReceiptAmount",
    "RefundLine",
    "ReceiptData",
    "render_receipt",
    "render_qr_slip",
    "render_layout",
    "receipt_layout",
    "ReceiptLayout",
    "Block",
    "SetStyle",
    "Style",
    "Size",
    "Line",
    "Qr",
    "Barcode",
    "Cut",
    "encode_text",
    "printable",
    "MASKED_CODE_STARS",
    "wrap_to_width",
    "cut_to_width",
    "wrap_words",
    "Paper",
    "DEFAULT_PAPER",
    "paper_dots",
    "bar_width",
    "WIDEST_BAR",
    "NARROWEST_BAR",
    "code128_modules",
    "escpos_code128",
]

log = logging.getLogger(__name__)

MASKED_CODE_STARS = 14  # "**************1234": the width of a typical 18-digit code
_FS_KANJI_ON = b"\x1c\x26"   # FS &
_FS_KANJI_OFF = b"\x1c\x2e"  # FS .
_ENCODINGS = {"GB18030": "gb18030", "BIG5": "big5", "UTF-8": "utf-8", "ASCII": "ascii"}
# _tokens of printable ASCII: every character one column wide, so the runs of spaces and of the rest.
_RUNS = re.compile(r" +|[^ ]+")


def paper_dots(columns: int) -> int:
    """The dots a print line has, for a printer of `columns` columns in its font A (12 dots a character).

    58 mm paper: 384 dots, 32 columns. 80 mm paper: 576 dots at 203 dpi (48 columns), 512 at
    180 dpi (Epson's TM-T88 family, 42 columns): 42 columns count as 512, which fits both."""
    return 384 if columns <= 32 else 512 if columns <= 42 else 576


WIDEST_BAR = 3     # dots: python-escpos's default bar width, wide enough for any scanner
# The narrowest bar (GS w) a printer takes unless its manual says otherwise: Epson's ESC/POS
# reference gives GS w 2..6 on many models, and a printer that does not take 1 ignores it and
# prints at its default width (3), wider than the paper: clipped, unscannable.
NARROWEST_BAR = 2


@dataclass(frozen=True)
class Paper:
    """What shapes a receipt's layout: columns, the dots of a line, a QR code or a barcode, and the
    narrowest bar (GS w, dots) the printer takes for that barcode."""

    columns: int = 42
    dots: int = 512
    print_qr: bool = True
    narrowest_bar: int = NARROWEST_BAR

    def __post_init__(self) -> None:
        if not 1 <= self.narrowest_bar <= WIDEST_BAR:
            raise ValueError(f"narrowest_bar {self.narrowest_bar}: expected 1..{WIDEST_BAR} dots")

    @classmethod
    def of(cls, printer_settings: Any) -> Paper:
        """The paper of a `[printer]` section (width, dots, print_qr, narrowest_bar); dots 0 (or none) means
        `paper_dots(width)`."""
        columns = int(printer_settings.width)
        dots = int(getattr(printer_settings, "dots", 0) or 0) or paper_dots(columns)
        narrowest = int(getattr(printer_settings, "narrowest_bar", NARROWEST_BAR))
        return cls(columns, dots, bool(printer_settings.print_qr), narrowest)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "dots": self.dots, "print_qr": self.print_qr,
                "narrowest_bar": self.narrowest_bar}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Paper:
        columns = int(d["columns"])
        # A record kept before the paper carried its narrowest bar was printed when the bar went down to
        # 1 dot (GS w 1 was sent where the code needed it): 1 lays it out as it was printed, so its picture
        # (the terminal's, headquarters') keeps showing the receipt the printer was given, whether or not that
        # printer honoured GS w 1. The setting's default (2) would turn those barcodes into QR codes that were
        # never printed.
        return cls(columns, int(d.get("dots") or paper_dots(columns)), bool(d["print_qr"]),
                   int(d.get("narrowest_bar", 1)))


# Receipts kept before they carried their paper are drawn on the printer's defaults.
DEFAULT_PAPER = Paper()


class ReceiptKind(StrEnum):
    SALE = "SALE"
    REFUND = "REFUND"
    REPORT = "REPORT"
    QR_SLIP = "QR_SLIP"   # "scan to pay": the wallet's code for a merchant-presented QR sale


@dataclass(frozen=True)
class ReceiptAmount:
    """An amount as a receipt prints it; `text` is written by the terminal, e.g. "12.50 SGD"."""

    minor: int
    currency: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"minor": self.minor, "currency": self.currency, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReceiptAmount:
        minor, currency = int(d["minor"]), str(d["currency"])
        # A record queued before amounts carried their text: say plainly what the number is.
        return cls(minor, currency, str(d.get("text") or f"{minor} {currency} (minor units)"))


@dataclass(frozen=True)
class RefundLine:
    merchant_refund_id: str
    amount: ReceiptAmount
    state: str      # a receipt status label key, e.g. "status_refunded"
    when: datetime
    refund_id: str = ""   # the gateway's own id for the refund (Alipay's refundId), once known


@dataclass(frozen=True)
class ReceiptData:
    """Everything a receipt shows; the journal record is the source."""

    kind: ReceiptKind
    merchant_name: str
    terminal_id: str
    when: datetime                      # local time (the terminal's time zone)
    store_name: str = ""
    amount: ReceiptAmount | None = None
    status_key: str = ""                # a [receipt] label key, e.g. "status_paid"
    merchant_trans_id: str = ""
    acquirement_id: str = ""
    code_last4: str = ""
    order_title: str = ""
    refunds: tuple[RefundLine, ...] = ()
    reprint: bool = False
    report_title_key: str = ""          # "report_x" | "report_z" for REPORT
    report_lines: tuple[tuple[str, str], ...] = ()   # (label, value) rows of an X/Z report
    store_id: str = ""                  # the store's id with the acquirer ([store] id)
    store_address: str = ""
    pay_amount: ReceiptAmount | None = None   # what the customer paid, when in another currency
    conversion_rate: str = ""           # the rate between the two, as the gateway gave it
    pay_qr: str = ""                    # QR_SLIP: what the code the customer scans carries
    paper: Paper | None = None          # the paper it was printed on (set by the print queue)

    def __post_init__(self) -> None:
        if len(self.code_last4) > 4 or not (self.code_last4 == "" or self.code_last4.isdigit()):
            raise ValueError("code_last4 must be at most the last 4 digits of the payment code")
        object.__setattr__(self, "kind", ReceiptKind(self.kind))
        object.__setattr__(self, "refunds", tuple(self.refunds))
        object.__setattr__(self, "report_lines", tuple(tuple(r) for r in self.report_lines))

    def as_reprint(self) -> ReceiptData:
        return replace(self, reprint=True)

    # JSON-able form, so the print queue can keep the record and re-render it.
    def to_dict(self) -> dict[str, Any]:
        def money(m: ReceiptAmount | None) -> dict[str, Any] | None:
            return None if m is None else m.to_dict()
        return {
            "kind": self.kind.value, "merchant_name": self.merchant_name,
            "terminal_id": self.terminal_id, "when": self.when.isoformat(),
            "store_name": self.store_name, "amount": money(self.amount),
            "status_key": self.status_key, "merchant_trans_id": self.merchant_trans_id,
            "acquirement_id": self.acquirement_id, "code_last4": self.code_last4,
            "order_title": self.order_title,
            "refunds": [{"merchant_refund_id": r.merchant_refund_id, "amount": money(r.amount),
                         "state": r.state, "when": r.when.isoformat(), "refund_id": r.refund_id}
                        for r in self.refunds],
            "reprint": self.reprint, "report_title_key": self.report_title_key,
            "report_lines": [list(r) for r in self.report_lines],
            "store_id": self.store_id, "store_address": self.store_address,
            "pay_amount": money(self.pay_amount), "conversion_rate": self.conversion_rate,
            "pay_qr": self.pay_qr, "paper": None if self.paper is None else self.paper.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReceiptData:
        def money(m: dict[str, Any] | None) -> ReceiptAmount | None:
            return None if m is None else ReceiptAmount.from_dict(m)
        refunds = tuple(RefundLine(r["merchant_refund_id"], ReceiptAmount.from_dict(r["amount"]),
                                   r["state"], datetime.fromisoformat(r["when"]), str(r.get("refund_id") or ""))
                        for r in d["refunds"])
        return cls(
            kind=ReceiptKind(d["kind"]), merchant_name=d["merchant_name"], terminal_id=d["terminal_id"],
            when=datetime.fromisoformat(d["when"]), store_name=d["store_name"], amount=money(d["amount"]),
            status_key=d["status_key"], merchant_trans_id=d["merchant_trans_id"],
            acquirement_id=d["acquirement_id"], code_last4=d["code_last4"], order_title=d["order_title"],
            refunds=refunds, reprint=d["reprint"], report_title_key=d["report_title_key"],
            report_lines=tuple((str(label), str(value)) for label, value in d["report_lines"]),
            # Records queued before these fields existed have none of them.
            store_id=str(d.get("store_id") or ""), store_address=str(d.get("store_address") or ""),
            pay_amount=money(d.get("pay_amount")), conversion_rate=str(d.get("conversion_rate") or ""),
            pay_qr=str(d.get("pay_qr") or ""),
            paper=Paper.from_dict(d["paper"]) if d.get("paper") else None,
        )


def _plain(text: str) -> bool:
    """Printable ASCII only (most of a receipt): no control character, one column and one byte a
    character in every encoding here. The per-character rules below (the *_each functions) take
    this fast path for such text, which gives what the rule gives character by character
    (tests/test_receipt_layout.py checks)."""
    return text.isascii() and text.isprintable()


def printable(text: str) -> str:
    """Text with every control character (C0, DEL, C1) replaced by '?'.

    Text reaches the printer from the till (orderTitle), the config and the
    gateway: an ESC p in it would open the cash drawer, a GS V cut the paper.
    Commands are made by python-escpos, never carried in text.
    """
    return text if _plain(text) else _printable_each(text)


def _printable_each(text: str) -> str:
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def encode_text(text: str, encoding: str) -> bytes:
    """Printer bytes for text in the configured encoding (see module doc); control characters become '?'."""
    if _plain(text):
        return text.encode("ascii")   # what each encoding makes of printable ASCII
    return _encode_each(_printable_each(text), encoding)


def _encode_each(text: str, encoding: str) -> bytes:
    codec = _ENCODINGS.get(encoding.upper(), encoding)
    if codec == "ascii":
        return text.encode("ascii", errors="replace")
    if codec == "utf-8":
        return text.encode("utf-8")
    out = bytearray()
    run: list[str] = []

    def flush_run() -> None:
        if run:
            out.extend(_FS_KANJI_ON + "".join(run).encode(codec, errors="replace") + _FS_KANJI_OFF)
            run.clear()

    for ch in text:
        if ch.isascii():
            flush_run()
            out.extend(ch.encode("ascii"))
        else:
            run.append(ch)
    flush_run()
    return bytes(out)


def _cut_to_width(text: str, width: int) -> str:
    return text[:max(width, 0)] if _plain(text) else _cut_each(text, width)


def _cut_each(text: str, width: int) -> str:
    out, used = [], 0
    for ch in text:
        w = max(text_width(ch), 0)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def _wrap_to_width(text: str, width: int) -> list[str]:
    """`text` over as many lines as it needs: an id is never cut (a support call needs all of it)."""
    lines: list[str] = []
    while text:
        head = _cut_to_width(text, width) or text[0]
        lines.append(head)
        text = text[len(head):]
    return lines or [""]


def _tokens(text: str) -> list[str]:
    """Runs of spaces, words, and each wide (CJK) character on its own: a line may break around those."""
    return _RUNS.findall(text) if _plain(text) else _tokens_each(text)


def _tokens_each(text: str) -> list[str]:
    out: list[str] = []
    for ch in text:
        if out and text_width(ch) < 2 and text_width(out[-1][-1]) < 2 and (ch == " ") == (out[-1][-1] == " "):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def wrap_words(text: str, width: int) -> list[str]:
    """`text` over as many lines of `width` columns as it needs, broken at spaces where it has them.

    Chinese may break between any two characters; a word longer than a line (an id) is broken where
    the line ends, never cut. The spaces where a line breaks are dropped."""
    lines: list[str] = []
    line, used, gap = "", 0, ""

    def end_line() -> None:
        nonlocal line, used
        lines.append(line)
        line, used = "", 0

    for token in _tokens(text):
        if token[0] == " ":
            gap += token
            continue
        tw, gw = text_width(token), text_width(gap)
        if used + gw + tw <= width:          # on this line
            line, used = line + gap + token, used + gw + tw
        elif tw <= width:                    # on a line of its own
            if line:
                end_line()
            line, used = token, tw
        else:                                # longer than a line: broken where each line ends
            if line and used + gw < width:
                line, used = line + gap, used + gw
            elif line:
                end_line()
            rest = token
            while rest:
                head = _cut_to_width(rest, width - used) or ("" if line else rest[0])
                if not head:
                    end_line()
                    continue
                line, used, rest = line + head, used + text_width(head), rest[len(head):]
                if rest:
                    end_line()
        gap = ""
    lines.append(line)
    return lines


def _pair(label: str, value: str, width: int) -> list[str]:
    """'label      value' on one line, or the label, then the value right-aligned (wrapped when longer)."""
    lw, vw = text_width(label), text_width(value)
    if lw + 1 + vw <= width:
        return [label + " " * (width - lw - vw) + value]
    chunks = wrap_words(value, width)
    if len(chunks) == 1:
        chunks = [" " * (width - text_width(chunks[0])) + chunks[0]]
    return [*wrap_words(label, width), *chunks]


# -- the layout: one list of blocks, drawn by the printer (below) and by the picture (receipt_image.py) ----

class Size(StrEnum):
    NORMAL = "normal"
    DOUBLE_HEIGHT = "double_height"   # twice as tall, the same columns


@dataclass(frozen=True)
class Style:
    """How a line is printed: the printer's state when it gets the line."""

    align: str = "left"     # "left" | "center"
    bold: bool = False
    size: Size = Size.NORMAL


@dataclass(frozen=True)
class SetStyle:
    """An ESC/POS style command: what is None stays as it was."""

    align: str | None = None
    bold: bool | None = None
    size: Size | None = None


@dataclass(frozen=True)
class Line:
    """One printed line: the text as sent (control characters already '?'), aligned by its style."""

    text: str
    style: Style


@dataclass(frozen=True)
class Qr:
    content: str
    module: int      # dots per module, the printer's QR "size"
    style: Style


@dataclass(frozen=True)
class Barcode:
    content: str     # Code 128 (code sets as `escpos_code128` chooses them)
    module: int      # dots per bar (GS w), chosen so the code fits the paper (`bar_width`)
    style: Style


@dataclass(frozen=True)
class Cut:
    pass


Block = SetStyle | Line | Qr | Barcode | Cut


@dataclass(frozen=True)
class ReceiptLayout:
    """A receipt as the printer prints it, in order; what the paper and the picture both show."""

    width: int                      # columns (a Hanzi takes two)
    blocks: tuple[Block, ...]


class _Layout:
    def __init__(self, width: int) -> None:
        self.width = width
        self.blocks: list[Block] = []
        self.style = Style()   # the printer's state after ESC @

    def set(self, align: str | None = None, bold: bool | None = None, size: Size | None = None) -> None:
        self.blocks.append(SetStyle(align, bold, size))
        self.style = Style(self.style.align if align is None else align,
                           self.style.bold if bold is None else bold,
                           self.style.size if size is None else size)

    def line(self, text: str = "") -> None:
        for part in wrap_words(printable(text), self.width):
            self.blocks.append(Line(part, self.style))

    def pair(self, name: str, value: str) -> None:
        for text in _pair(name, value, self.width):
            self.line(text)

    def qr(self, content: str, module: int) -> None:
        self.blocks.append(Qr(content, module, self.style))

    def barcode(self, content: str, module: int) -> None:
        self.blocks.append(Barcode(content, module, self.style))

    def cut(self) -> None:
        self.blocks.append(Cut())

    def done(self) -> ReceiptLayout:
        return ReceiptLayout(self.width, tuple(self.blocks))


def _qr_slip_layout(data: ReceiptData, catalogue: Catalogue, width: int) -> ReceiptLayout:
    """A "scan to pay" slip: the amount and the wallet's code."""
    label = catalogue.receipt
    p = _Layout(width)
    p.set(align="center", bold=True, size=Size.DOUBLE_HEIGHT)
    p.line(_cut_to_width(data.merchant_name, width))
    p.set(align="center", bold=True, size=Size.NORMAL)
    p.line(label("scan_to_pay"))
    p.set(align="left", bold=False, size=Size.NORMAL)
    p.line("-" * width)
    for name, value in [(label("terminal"), data.terminal_id),
                        (label("date"), data.when.strftime("%Y-%m-%d %H:%M:%S")),
                        *([(label("order"), data.order_title)] if data.order_title else []),
                        (label("trans_id"), data.merchant_trans_id)]:
        p.pair(name, value)
    if data.amount is not None:
        p.set(align="left", bold=True, size=Size.NORMAL)
        p.pair(label("amount"), data.amount.text)
    p.line()
    p.set(align="center", bold=False, size=Size.NORMAL)
    p.qr(data.pay_qr, 8)   # the code itself comes from the gateway
    p.line(label("scan_with_alipay"))
    p.line(label("not_a_receipt"))
    p.set(align="left", size=Size.NORMAL)
    p.cut()
    return p.done()


def receipt_layout(data: ReceiptData, catalogue: Catalogue, paper: Paper | None = None) -> ReceiptLayout:
    """The receipt's lines and blocks with their styles, in the order the printer prints them.

    On `paper`; without one, on the paper the receipt was printed on (`data.paper`), else `DEFAULT_PAPER`."""
    paper = paper or data.paper or DEFAULT_PAPER
    width = paper.columns
    if data.kind is ReceiptKind.QR_SLIP:
        return _qr_slip_layout(data, catalogue, width)
    label = catalogue.receipt
    p = _Layout(width)
    p.set(align="center", bold=True, size=Size.DOUBLE_HEIGHT)
    p.line(_cut_to_width(data.merchant_name, width))
    p.set(align="center", bold=False, size=Size.NORMAL)
    if data.store_name:
        p.line(_cut_to_width(data.store_name, width))
    if data.store_address:
        p.line(data.store_address)
    if data.reprint:
        p.set(align="center", bold=True, size=Size.NORMAL)
        p.line(label("reprint"))
    title = label(data.report_title_key) if data.kind is ReceiptKind.REPORT and data.report_title_key \
        else label("sale" if data.kind is ReceiptKind.SALE else "refund"
                   if data.kind is ReceiptKind.REFUND else "report_x")
    p.set(align="center", bold=True, size=Size.NORMAL)
    p.line(title)
    p.set(align="left", bold=False, size=Size.NORMAL)
    p.line("-" * width)
    rows: list[tuple[str, str]] = [
        *([(label("store_id"), data.store_id)] if data.store_id else []),
        (label("terminal"), data.terminal_id),
        (label("date"), data.when.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if data.kind is not ReceiptKind.REPORT:
        if data.order_title:
            rows.append((label("order"), data.order_title))
        if data.merchant_trans_id:
            rows.append((label("trans_id"), data.merchant_trans_id))
        if data.acquirement_id:
            rows.append((label("acquirement_id"), data.acquirement_id))
        if data.code_last4:
            rows.append((label("code"), "*" * MASKED_CODE_STARS + data.code_last4))
    for name, value in [*rows, *data.report_lines]:
        p.pair(name, value)
    if data.amount is not None:
        p.line("-" * width)
        p.set(align="left", bold=True, size=Size.NORMAL)
        p.pair(label("amount"), data.amount.text)
        p.set(align="left", bold=False, size=Size.NORMAL)
        if data.pay_amount is not None:
            p.pair(label("pay_amount"), data.pay_amount.text)
        if data.conversion_rate:
            p.pair(label("rate"), data.conversion_rate)
    if data.status_key:
        p.pair(label("status"), label(data.status_key))
    if data.refunds:
        p.line("-" * width)
        p.line(label("refunds"))
        for r in data.refunds:
            p.pair(r.when.strftime("%Y-%m-%d %H:%M"), r.merchant_refund_id)
            if r.refund_id:
                p.pair(label("refund_id"), r.refund_id)
            p.pair(label(r.state), r.amount.text)
    if data.merchant_trans_id and data.kind is not ReceiptKind.REPORT:
        code = receipt_code(data.merchant_trans_id)
        p.line()
        p.set(align="center", bold=False, size=Size.NORMAL)
        module = None if paper.print_qr else bar_width(code, paper.dots, narrowest=paper.narrowest_bar)
        if module is None:
            p.qr(code, 6)
        else:
            p.barcode(code, module)
        p.line(label("scan_to_refund"))
    p.set(align="center", bold=False, size=Size.NORMAL)
    p.line()
    p.line(label("thanks"))
    p.set(align="left", size=Size.NORMAL)
    p.cut()
    return p.done()


# -- the receipt code as Code 128 ---------------------------------------------------------------------

def code128_modules(content: str) -> int:
    """How many modules (narrowest bars) the Code 128 barcode of `content` spans, start to stop."""
    from barcode import Code128

    return len(Code128(content).build()[0])


def bar_width(content: str, dots: int, *, narrowest: int) -> int | None:
    """The widest bar (GS w: `narrowest`..WIDEST_BAR dots) at which `content`'s barcode fits `dots`;
    None if none does (the receipt then carries a QR code)."""
    modules = code128_modules(content)
    return next((w for w in range(WIDEST_BAR, narrowest - 1, -1) if modules * w <= dots), None)


def escpos_code128(content: str) -> str:
    """The data of GS k 73 (Code 128) for `content`: code sets as python-barcode chooses them
    (set C packs two digits in one symbol where a run of digits makes it shorter), each set
    named with python-escpos's `{A`/`{B`/`{C`, set C's digit pairs as one byte each."""
    from barcode import Code128

    symbols = Code128(content).encoded
    start = {103: "A", 104: "B", 105: "C"}[symbols[0]]
    out, code_set = ["{" + start], start
    switch = {"A": {99: "C", 100: "B"}, "B": {99: "C", 101: "A"}, "C": {100: "B", 101: "A"}}
    for value in symbols[1:]:
        if code_set == "C" and value < 100:
            out.append(chr(value))
        elif code_set != "C" and value < 96:
            ch = chr(value + 32) if code_set == "B" or value < 64 else chr(value - 64)
            out.append("{{" if ch == "{" else ch)
        elif value in switch[code_set]:
            code_set = switch[code_set][value]
            out.append("{" + code_set)
        else:
            raise ValueError(f"{content!r}: Code 128 symbol {value} in code set {code_set} has no ESC/POS form")
    return "".join(out)


def _barcode_bytes(content: str, module: int) -> bytes:
    """GS h, GS w, HRI off, GS k 73: the barcode as python-escpos sends it, but for the bar width,
    which may be 1 dot where `[printer] narrowest_bar = 1` says the printer takes it (python-escpos
    accepts 2..6, as Epson documents GS w on many models; some printers take 1..6)."""
    escpos = load_escpos()
    from escpos import constants

    data = escpos_code128(content)
    if not escpos.Escpos.check_barcode("CODE128", data):
        raise ValueError(f"{content!r} cannot be printed as Code 128")
    return bytes(constants.BARCODE_HEIGHT + bytes([64]) + constants.BARCODE_WIDTH + bytes([module])
            + constants.BARCODE_FONT_A + constants.BARCODE_TXT_OFF + constants.BARCODE_TYPE_B["CODE128"]
            + bytes([len(data)]) + data.encode("ascii"))


# -- the ESC/POS back end ----------------------------------------------------------------------------

def render_layout(layout: ReceiptLayout, printer_settings: Any) -> bytes:
    """ESC/POS bytes of a laid-out receipt (python-escpos's encoder), in the printer's encoding."""
    encoding = printer_settings.encoding
    profile = None if printer_settings.profile == "default" else printer_settings.profile
    p = escpos_buffer(profile)
    with quiet_stdout():
        p.hw("INIT")
        for block in layout.blocks:
            if isinstance(block, Line):
                p._raw(encode_text(block.text, encoding) + b"\n")
            elif isinstance(block, SetStyle):
                size: dict[str, bool] = {} if block.size is None else \
                    {"normal_textsize": True} if block.size is Size.NORMAL else \
                    {"double_height": True, "double_width": False}
                p.set(align=block.align, bold=block.bold, **size)
            elif isinstance(block, Qr):
                # native: the printer draws the QR (GS ( k), no image library needed
                p.qr(block.content, native=True, size=block.module, center=False)
            elif isinstance(block, Barcode):
                p._raw(_barcode_bytes(block.content, block.module))
            else:
                p.cut()
    return bytes(p.output)


def render_qr_slip(data: ReceiptData, printer_settings: Any, catalogue: Catalogue) -> bytes:
    """ESC/POS bytes of a "scan to pay" slip: the amount and the wallet's code, drawn by the printer."""
    return render_layout(_qr_slip_layout(data, catalogue, Paper.of(printer_settings).columns), printer_settings)


def render_receipt(data: ReceiptData, printer_settings: Any, catalogue: Catalogue) -> bytes:
    """ESC/POS bytes of one receipt (python-escpos's encoder), laid out on the printer's paper."""
    paper = Paper.of(printer_settings)
    layout = receipt_layout(data, catalogue, paper)
    if not paper.print_qr and any(isinstance(b, Qr) for b in layout.blocks) and data.kind is not ReceiptKind.QR_SLIP:
        log.warning("receipt code of %s printed as a QR code: its Code 128 barcode (%d modules) is wider than "
                    "the paper's %d dots even at %d dot(s) a bar ([printer] narrowest_bar)", data.merchant_trans_id,
                    code128_modules(receipt_code(data.merchant_trans_id)), paper.dots, paper.narrowest_bar)
    return render_layout(layout, printer_settings)


# Columns as on paper, for the receipt picture (devices/receipt_image.py): a Hanzi takes two.
# wrap_to_width breaks where the line ends, as a printer wraps a line longer than the paper.
wrap_to_width = _wrap_to_width
cut_to_width = _cut_to_width
