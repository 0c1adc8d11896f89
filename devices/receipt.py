"""Receipts: built from a record (`ReceiptData`), never from free text.

`receipt_layout(data, catalogue, width, print_qr)` lays a receipt out once:
the lines and blocks in print order with their styles (`ReceiptLayout`):
header, the sale's lines, a QR code (or a Code 128 barcode with print_qr =
false) carrying the merchantTransId (`devices.receipt_code`) so a manager can
scan the receipt to refund it, and a cut. Two back ends draw that one layout:
`render_layout` here (ESC/POS bytes made with python-escpos's `Dummy`
printer; `render_receipt(data, printer_settings, catalogue)` does both steps)
and the receipt picture (devices/receipt_image.py), so every line on paper is
in the picture.

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

import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from devices.messages import Catalogue, text_width
from devices.printer import load_escpos, quiet_stdout
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
]

MASKED_CODE_STARS = 14  # "**************1234": the width of a typical 18-digit code
_FS_KANJI_ON = b"\x1c\x26"   # FS &
_FS_KANJI_OFF = b"\x1c\x2e"  # FS .
_ENCODINGS = {"GB18030": "gb18030", "BIG5": "big5", "UTF-8": "utf-8", "ASCII": "ascii"}


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
            "pay_qr": self.pay_qr,
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
        )


def printable(text: str) -> str:
    """Text with every control character (C0, DEL, C1) replaced by '?'.

    Text reaches the printer from the till (orderTitle), the config and the
    gateway: an ESC p in it would open the cash drawer, a GS V cut the paper.
    Commands are made by python-escpos, never carried in text.
    """
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def encode_text(text: str, encoding: str) -> bytes:
    """Printer bytes for text in the configured encoding (see module doc); control characters become '?'."""
    text = printable(text)
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


def _pair(label: str, value: str, width: int) -> list[str]:
    """'label      value' on one line, or the label, then the value right-aligned (wrapped when longer)."""
    lw, vw = text_width(label), text_width(value)
    if lw + 1 + vw <= width:
        return [label + " " * (width - lw - vw) + value]
    chunks = _wrap_to_width(value, width)
    if len(chunks) == 1:
        chunks = [" " * (width - text_width(chunks[0])) + chunks[0]]
    return [*_wrap_to_width(label, width), *chunks]


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
    content: str     # Code 128, code set B
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
        self.blocks.append(Line(printable(text), self.style))

    def pair(self, name: str, value: str) -> None:
        for text in _pair(name, value, self.width):
            self.line(text)

    def qr(self, content: str, module: int) -> None:
        self.blocks.append(Qr(content, module, self.style))

    def barcode(self, content: str) -> None:
        self.blocks.append(Barcode(content, self.style))

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


def receipt_layout(data: ReceiptData, catalogue: Catalogue, width: int = 42, print_qr: bool = True) -> ReceiptLayout:
    """The receipt's lines and blocks with their styles, in the order the printer prints them."""
    if data.kind is ReceiptKind.QR_SLIP:
        return _qr_slip_layout(data, catalogue, width)
    label = catalogue.receipt
    p = _Layout(width)
    p.set(align="center", bold=True, size=Size.DOUBLE_HEIGHT)
    p.line(_cut_to_width(data.merchant_name, width))
    p.set(align="center", bold=False, size=Size.NORMAL)
    if data.store_name:
        p.line(_cut_to_width(data.store_name, width))
    for text in _wrap_to_width(data.store_address, width) if data.store_address else []:
        p.line(text)
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
        if print_qr:
            p.qr(code, 6)
        else:
            p.barcode(code)
        p.line(label("scan_to_refund"))
    p.set(align="center", bold=False, size=Size.NORMAL)
    p.line()
    p.line(label("thanks"))
    p.set(align="left", size=Size.NORMAL)
    p.cut()
    return p.done()


# -- the ESC/POS back end ----------------------------------------------------------------------------

def render_layout(layout: ReceiptLayout, printer_settings: Any) -> bytes:
    """ESC/POS bytes of a laid-out receipt (python-escpos Dummy), in the printer's encoding."""
    escpos = load_escpos()
    encoding = printer_settings.encoding
    profile = None if printer_settings.profile == "default" else printer_settings.profile
    p = escpos.Dummy(profile=profile)
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
                p.barcode("{B" + block.content, "CODE128", function_type="B", pos="OFF", align_ct=False)
            else:
                p.cut()
    return bytes(p.output)


def render_qr_slip(data: ReceiptData, printer_settings: Any, catalogue: Catalogue) -> bytes:
    """ESC/POS bytes of a "scan to pay" slip: the amount and the wallet's code, drawn by the printer."""
    return render_layout(_qr_slip_layout(data, catalogue, int(printer_settings.width)), printer_settings)


def render_receipt(data: ReceiptData, printer_settings: Any, catalogue: Catalogue) -> bytes:
    """ESC/POS bytes of one receipt (python-escpos Dummy)."""
    return render_layout(receipt_layout(data, catalogue, int(printer_settings.width), printer_settings.print_qr),
                         printer_settings)


# Columns as on paper, for the receipt picture (devices/receipt_image.py): a Hanzi takes two.
wrap_to_width = _wrap_to_width
cut_to_width = _cut_to_width
