"""Receipt pictures tell the truth in Chinese too: every Hanzi drawn with a font that has it (never the
mono font's "missing glyph" box), in the two columns the printer gives it; and with no such font
installed the renderer, `pos receipt show --png` and `pos doctor` say so instead of drawing boxes silently.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
from PIL import Image, ImageFont

from devices import receipt_image
from devices.messages import Catalogue, text_width
from devices.receipt import ReceiptAmount, ReceiptData, ReceiptKind
from devices.receipt_image import Drawn, cell_box, cjk_font, glyph_mask, picture_rows, receipt_png, undrawable
from pos.config import Config
from pos.ops.checks import Level
from pos.ops.device_checks import check_receipt_font

MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
NOTDEF = "\U0010fffd"


def sale(**fields: str) -> ReceiptData:
    base: dict[str, object] = dict(
        kind=ReceiptKind.SALE, merchant_name="Harbour Cafe", terminal_id="POS01", when=datetime(2024, 5, 1, 12),
        amount=ReceiptAmount(4200, "CNY", "42.00 CNY"), status_key="status_paid",
        merchant_trans_id="T2024050100001", order_title="Coffee", code_last4="1234")
    base.update(fields)
    return ReceiptData(**base)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fresh_fonts() -> Iterator[None]:
    receipt_image._fonts.cache_clear()
    yield
    receipt_image._fonts.cache_clear()


@pytest.fixture
def cjk() -> None:
    if cjk_font() is None:
        pytest.skip("no font with Chinese characters installed (tests/system-deps.sh installs fonts-wqy-microhei)")


@pytest.fixture
def no_cjk_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receipt_image, "cjk_font", lambda: None)
    monkeypatch.setattr(receipt_image, "_warned", False)


def picture(data: ReceiptData, lang: str) -> Image.Image:
    return Image.open(io.BytesIO(receipt_png(data, Catalogue.load(lang)))).convert("L")


def wide_cells(data: ReceiptData, lang: str) -> list[tuple[str, Drawn, int]]:
    """(Hanzi, row, column) of every wide character of the picture, columns counted as the printer does."""
    found = []
    for row in picture_rows(data, Catalogue.load(lang)):
        column = row.column
        for ch in row.text if row.kind == "text" else "":
            if text_width(ch) == 2:
                found.append((ch, row, column))
            column += max(text_width(ch), 0)
    return found


def inked(img: Image.Image) -> bool:
    return img.getextrema()[0] < 128


def test_the_mono_font_has_no_hanzi_and_the_cjk_font_has(cjk: None) -> None:
    mono = ImageFont.truetype(MONO, 16)
    found = cjk_font()
    assert found is not None
    hanzi = ImageFont.truetype(str(found.path), 16, index=found.index)
    # What DejaVu draws for 中 is its .notdef box: the boxes this fix is about.
    assert glyph_mask(mono, "中") == glyph_mask(mono, NOTDEF)
    assert glyph_mask(hanzi, "中") != glyph_mask(hanzi, NOTDEF)
    assert glyph_mask(hanzi, "中") != glyph_mask(mono, NOTDEF)


CASES = {
    "zh-CN receipt": (sale(merchant_name="上海小笼包", store_name="人民广场店", order_title="小笼包 x2"), "zh-CN"),
    "English receipt, Chinese title": (sale(order_title="咖啡 Coffee x2", store_name="人民广场店"), "en"),
}


@pytest.mark.parametrize("case", CASES)
def test_every_hanzi_is_drawn_not_a_box(case: str, cjk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    data, lang = CASES[case]
    cells = wide_cells(data, lang)
    assert len(cells) >= 4
    assert undrawable(data, Catalogue.load(lang)) == ""
    drawn = picture(data, lang)
    # The same receipt where only the mono font is there: each Hanzi is then its .notdef box.
    monkeypatch.setattr(receipt_image, "cjk_font", lambda: None)
    receipt_image._fonts.cache_clear()
    boxes = picture(data, lang)
    assert drawn.size == boxes.size
    for ch, row, column in cells:
        box = cell_box(row, column, 2)
        glyph, notdef = drawn.crop(box), boxes.crop(box)
        assert inked(glyph) and inked(notdef), (ch, row.text, column)
        assert glyph.tobytes() != notdef.tobytes(), f"{ch} in {row.text!r} is drawn as a box"


def test_hanzi_take_two_columns_as_on_paper(cjk: None) -> None:
    data = sale(order_title="咖啡 Coffee x2")
    n = next(row for row in picture_rows(data, Catalogue.load("en")) if "Coffee" in row.text)
    assert text_width(n.shown) == 42 and n.text.endswith("咖啡 Coffee x2")
    img = picture(data, "en")
    start = 42 - text_width("咖啡 Coffee x2")
    # The value is right-aligned to the last column, and nothing is drawn past it nor just before it.
    assert inked(img.crop(cell_box(n, 41)))
    assert inked(img.crop(cell_box(n, start, 2))) and inked(img.crop(cell_box(n, start + 2, 2)))
    assert not inked(img.crop(cell_box(n, start - 3, 3)))
    right = cell_box(n, 42)[0]
    assert not inked(img.crop((right + 1, cell_box(n, 0)[1], img.width, cell_box(n, 0)[3])))


def test_without_a_cjk_font_it_says_so(no_cjk_font: None, caplog: pytest.LogCaptureFixture) -> None:
    data = sale(order_title="咖啡")
    assert "咖啡" in undrawable(data, Catalogue.load("en")) and "消费" in undrawable(data, Catalogue.load("zh-CN"))
    with caplog.at_level(logging.WARNING, logger="devices.receipt_image"):
        picture(data, "zh-CN")
        picture(data, "en")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "apt-get install fonts-wqy-microhei" in warnings[0]
    result = check_receipt_font(Config())
    assert result.level is Level.WARN and "boxes" in result.detail and "fonts-wqy-microhei" in result.detail
    # A Latin-only receipt has nothing to warn about.
    assert undrawable(sale(), Catalogue.load("en")) == ""


def test_receipt_show_png_warns_when_chinese_would_be_boxes(tmp_path, no_cjk_font: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from pos.cli.main import main
    from pos.core.money import Money
    from pos.journal.journal import Journal
    from pos.sandbox.scenarios import make_code

    cfg = tmp_path / "terminal.toml"
    cfg.write_text(f'[terminal]\nterminal_id = "POS01"\nstate_dir = "{tmp_path}"\n[ecr]\nenabled = false\n')
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    sale = journal.create_sale(amount=Money(700, "USD"), code=make_code("00"), scanned_at=0.0, now=0.0,
                               order_title="小笼包")
    journal.close()
    png = tmp_path / "r.png"
    assert main(["receipt", "show", str(sale.sale_id), "--png", str(png), "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert "written to" in out and png.exists()
    assert "小笼包" in err and "boxes" in err and "apt-get install fonts-wqy-microhei" in err


def test_doctor_names_the_font(cjk: None) -> None:
    result = check_receipt_font(Config())
    assert result.level is Level.OK and str(cjk_font().path) in result.detail  # type: ignore[union-attr]
