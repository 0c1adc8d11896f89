"""The receipt picture is the paper: one layout (devices.receipt.receipt_layout) drawn by the ESC/POS printer
and by the PNG renderer, so every line the printer prints is in the picture, in order, with its style; the
QR code and the barcode in the picture are real codes a scanner reads (zxing-cpp reads them back).
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime

import pytest
import zxingcpp
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from devices import receipt
from devices.emulated import escpos_to_text
from devices.emulated.escpos_text import CUT_LINE
from devices.messages import Catalogue
from devices.receipt import (
    Paper,
    ReceiptAmount,
    ReceiptData,
    ReceiptKind,
    RefundLine,
    SetStyle,
    Size,
    receipt_layout,
    render_receipt,
)
from devices.receipt_image import Drawn, render_picture
from pos.config import PrinterSection
from pos.terminal.receipts import RECEIPT_STATUS

WHEN = datetime(2024, 5, 1, 12, 30, 5)
LATER = datetime(2024, 5, 2, 9, 15, 0)


def sale(**kw: object) -> ReceiptData:
    base: dict[str, object] = dict(
        kind=ReceiptKind.SALE, merchant_name="Harbour Cafe", store_name="Orchard Rd", terminal_id="POS01",
        when=WHEN, amount=ReceiptAmount(123456, "SGD", "1234.56 SGD"), status_key="status_paid",
        merchant_trans_id="POS01-20240501-0001", acquirement_id="2015032412007101547201355678",
        code_last4="1234", order_title="Coffee")
    base.update(kw)
    return ReceiptData(**base)  # type: ignore[arg-type]


def refund(merchant_refund_id: str, minor: int, state: str, refund_id: str = "") -> RefundLine:
    return RefundLine(merchant_refund_id, ReceiptAmount(minor, "SGD", f"{minor // 100}.{minor % 100:02d} SGD"),
                      state, LATER, refund_id)


STORE: dict[str, object] = dict(store_id="2188000000000001",
                                store_address="1 Orchard Road, #01-23 Ion Orchard, Singapore 238801")
CNY: dict[str, object] = dict(amount=ReceiptAmount(1000, "USD", "10.00 USD"),
                              pay_amount=ReceiptAmount(7213, "CNY", "72.13 CNY"), conversion_rate="7.2130")
REVERSAL = "POS01-20240501-0001-REV"
RECEIPTS = {
    "sale": sale(),
    "sale with the store's id and address": sale(**STORE),
    "AlipayCN: paid in CNY at a rate": sale(**STORE, **CNY),
    "sale with nothing optional": sale(store_name="", acquirement_id="", code_last4="", order_title="",
                                       status_key=""),
    "sale with refunds and Alipay's refund ids": sale(status_key="status_refunded", refunds=(
        refund("R-1", 1000, "status_refunded", "2024050222001400000000000001"),
        refund("R-2", 500, "status_refund_pending"))),
    "refund receipt": sale(kind=ReceiptKind.REFUND, status_key="status_refunded", when=LATER,
                           amount=ReceiptAmount(1000, "SGD", "10.00 SGD"),
                           refunds=(refund("POS01-20240501-0001-R1", 1000, "status_refunded",
                                           "2024050222001400000000000001"),)),
    "refund declined": sale(kind=ReceiptKind.REFUND, status_key="status_refund_declined",
                            refunds=(refund("R-3", 100, "status_refund_declined"),)),
    "reversed": sale(status_key="status_reversed",
                     refunds=(refund(REVERSAL, 123456, "status_reversed", "2024050222001400000000000009"),)),
    "reversing": sale(status_key="status_reversing", refunds=(refund(REVERSAL, 123456, "status_reversing"),)),
    "paid late": sale(status_key="status_paid_late", refunds=(refund(REVERSAL, 123456, "status_refund_declined"),)),
    "not settled": sale(status_key="status_manual_review", acquirement_id=""),
    "declined": sale(status_key="status_declined", acquirement_id=""),
    "cancelled": sale(status_key="status_cancelled", acquirement_id=""),
    "reprint": sale(**STORE, reprint=True),
    "printed on 58 mm paper with a barcode": sale(**STORE, paper=Paper(32, 384, False, narrowest_bar=1)),
    "Chinese": sale(merchant_name="上海小笼包", store_name="人民广场店", order_title="小笼包 x2",
                    store_address="上海市黄浦区人民大道100号一楼101室靠近地铁站出口", **CNY),
    "control characters in the title": sale(order_title="Tea\x1bp\x00\x19\x1dV\x00x2\x85"),
    "ids longer than a line": sale(acquirement_id="A" * 70, merchant_trans_id="POS01-" + "9" * 58,
                                   refunds=(refund("R-" + "7" * 50, 100, "status_refunded", "B" * 66),)),
    "X report": ReceiptData(kind=ReceiptKind.REPORT, merchant_name="Harbour Cafe", terminal_id="POS01", when=WHEN,
                            report_title_key="report_x",
                            report_lines=(("Sales 12", "1234.56 SGD"), ("Refunds 1", "-10.00 SGD"))),
    "Z report with a total": ReceiptData(kind=ReceiptKind.REPORT, merchant_name="Harbour Cafe", terminal_id="POS01",
                                         when=WHEN, report_title_key="report_z", store_id="2188000000000001",
                                         amount=ReceiptAmount(122456, "SGD", "1224.56 SGD"),
                                         report_lines=(("Sales 12", "1234.56 SGD"),)),
    "scan-to-pay slip": ReceiptData(kind=ReceiptKind.QR_SLIP, merchant_name="Harbour Cafe", terminal_id="POS01",
                                    when=WHEN, amount=ReceiptAmount(4200, "SGD", "42.00 SGD"),
                                    merchant_trans_id="POS01-20240501-0002", order_title="Lunch set",
                                    pay_qr="https://qr.alipay.com/bax01234567890abcdef"),
    "scan-to-pay slip, Chinese, no title": ReceiptData(
        kind=ReceiptKind.QR_SLIP, merchant_name="上海小笼包", terminal_id="POS01", when=WHEN,
        amount=ReceiptAmount(4200, "CNY", "42.00 CNY"), merchant_trans_id="POS01-20240501-0003",
        pay_qr="https://qr.alipay.com/bax0000"),
}


def test_the_receipts_cover_every_kind_field_and_status() -> None:
    """A field added to ReceiptData (or RefundLine) without a receipt here fails: the picture must show it too."""
    assert {r.kind for r in RECEIPTS.values()} == set(ReceiptKind)
    blank = ReceiptData(kind=ReceiptKind.SALE, merchant_name="", terminal_id="", when=WHEN)
    for field in dataclasses.fields(ReceiptData):
        assert any(getattr(r, field.name) != getattr(blank, field.name) for r in RECEIPTS.values()), field.name
    refunds = [line for r in RECEIPTS.values() for line in r.refunds]
    assert all(any(getattr(line, f.name) for line in refunds) for f in dataclasses.fields(RefundLine))
    statuses = {r.status_key for r in RECEIPTS.values()} | {line.state for line in refunds}
    assert set(RECEIPT_STATUS.values()) <= statuses


def paper_lines(data: ReceiptData, lang: str, settings: PrinterSection) -> list[str]:
    """The printer's bytes read back as lines: text as printed, [QR: ...], [BARCODE: ...], the cut."""
    text = escpos_to_text(render_receipt(data, settings, Catalogue.load(lang)), settings.encoding)
    assert text.endswith("\n")
    return text[:-1].split("\n")


def as_paper(row: Drawn) -> str:
    return {"text": row.text, "cut": CUT_LINE}.get(row.kind) or row.shown


@pytest.mark.parametrize("case", RECEIPTS)
@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_printed_line_is_drawn_in_the_picture(case: str, lang: str) -> None:
    for width, print_qr, encoding, narrowest in [(42, True, "GB18030", 2), (42, False, "UTF-8", 2),
                                                 (32, True, "UTF-8", 2), (32, False, "UTF-8", 2),
                                                 (32, False, "UTF-8", 1), (48, False, "GB18030", 1)]:
        settings = PrinterSection(encoding=encoding, width=width, print_qr=print_qr, narrowest_bar=narrowest)
        # The receipt as the print queue keeps it: with the paper it was printed on.
        data = dataclasses.replace(RECEIPTS[case], paper=Paper.of(settings))
        picture = render_picture(data, Catalogue.load(lang))
        drawn = [as_paper(row) for row in picture.drawn]
        assert drawn == paper_lines(data, lang, settings), (width, print_qr, encoding, narrowest)
        # The same bold, centring and size: the style each line was printed with is the one it was drawn with.
        layout = receipt_layout(data, Catalogue.load(lang))
        styles = [b.style for b in layout.blocks if not isinstance(b, SetStyle) and hasattr(b, "style")]
        assert [row.style for row in picture.drawn if row.kind != "cut"] == styles


def test_what_the_printer_prints_about_money_and_ids_is_in_the_picture() -> None:
    """The lines the picture used to leave out: store id and address, CNY paid and the rate, refund ids."""
    data = sale(**STORE, **CNY, status_key="status_reversed",
                refunds=(refund(REVERSAL, 1000, "status_reversed", "2024050222001400000000000009"),))
    drawn = "\n".join(row.text for row in render_picture(data, Catalogue.load("en")).drawn)
    for text in ("2188000000000001", "1 Orchard Road", "Singapore 238801", "You paid", "72.13 CNY", "7.2130",
                 REVERSAL, "Alipay refund ID", "2024050222001400000000000009", "REVERSED: REFUNDED"):
        assert text in drawn
    reprint = render_picture(data.as_reprint(), Catalogue.load("zh-CN")).drawn
    assert any(row.text == Catalogue.load("zh-CN").receipt("reprint") and row.style.bold for row in reprint)


def read_codes(png: bytes) -> list[tuple[str, str]]:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return sorted((code.format.name, code.text) for code in found)


def test_the_codes_in_the_picture_scan() -> None:
    en = Catalogue.load("en")
    paid = render_picture(RECEIPTS["AlipayCN: paid in CNY at a rate"], en)
    assert read_codes(paid.png) == [("QRCode", "POS:POS01-20240501-0001")]
    slip = render_picture(RECEIPTS["scan-to-pay slip"], en)
    assert read_codes(slip.png) == [("QRCode", "https://qr.alipay.com/bax01234567890abcdef")]
    barcode = render_picture(RECEIPTS["sale"], en, Paper(print_qr=False))
    assert read_codes(barcode.png) == [("Code128", "POS:POS01-20240501-0001")]
    # 58 mm: 1-dot bars where the printer takes them (bars one pixel wide); at the default 2, a QR code.
    thin = render_picture(RECEIPTS["sale"], en, Paper(32, 384, False, narrowest_bar=1))
    assert [row.module for row in thin.drawn if row.kind == "barcode"] == [1]
    assert read_codes(thin.png) == [("Code128", "POS:POS01-20240501-0001")]
    assert read_codes(render_picture(RECEIPTS["sale"], en, Paper(32, 384, False)).png) == \
        [("QRCode", "POS:POS01-20240501-0001")]
    assert read_codes(render_picture(RECEIPTS["X report"], en).png) == []


def test_double_height_is_twice_as_tall_and_centred_lines_are_centred() -> None:
    rows = render_picture(RECEIPTS["reprint"], Catalogue.load("en")).drawn
    name, store = rows[0], rows[1]
    assert (name.text, name.style.size, name.style.bold) == ("Harbour Cafe", Size.DOUBLE_HEIGHT, True)
    assert name.box[3] - name.box[1] == 2 * (store.box[3] - store.box[1])
    assert store.text == "Orchard Rd" and store.column == (42 - len("Orchard Rd")) // 2
    assert rows[-1].kind == "cut"


PRINTABLE_ASCII = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90)


@given(PRINTABLE_ASCII, st.integers(min_value=-2, max_value=60))
def test_printable_ascii_takes_a_fast_path_that_gives_what_the_per_character_rules_give(text: str,
                                                                                        width: int) -> None:
    assert receipt.printable(text) == receipt._printable_each(text)
    for encoding in ("GB18030", "BIG5", "UTF-8", "ASCII"):
        assert receipt.encode_text(text, encoding) == receipt._encode_each(text, encoding)
    assert receipt._cut_to_width(text, width) == receipt._cut_each(text, width)
    assert receipt._tokens(text) == receipt._tokens_each(text)


def test_text_that_is_not_printable_ascii_keeps_the_per_character_rules() -> None:
    assert receipt.printable("Tea\x1bp\x00x2\x85") == "Tea?p?x2?"
    assert receipt.encode_text("小笼包 x2\x1b", "GB18030") == b"\x1c&" + "小笼包".encode("gb18030") + b"\x1c. x2?"
    assert receipt._cut_to_width("小笼包", 5) == "小笼"
    assert receipt._tokens("ab 小笼 cd") == ["ab", " ", "小", "笼", " ", "cd"]
