"""Receipts and printers: python-escpos output, encodings, status, and the escpos traps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from devices.emulated import EmulatedNetworkPrinter, PtyDevice, escpos_to_text
from devices.messages import Catalogue
from devices.printer import (
    DummyPrinter,
    FilePrinter,
    NetworkPrinter,
    NullPrinter,
    PrinterError,
    SerialPrinter,
    open_printer,
)
from devices.receipt import ReceiptAmount, ReceiptData, ReceiptKind, RefundLine, render_receipt
from pos.config import PrinterSection

FULL_CODE = "281234567890121234"
WHEN = datetime(2024, 5, 1, 12, 30, 5)


def sale(**kw: object) -> ReceiptData:
    base: dict[str, object] = dict(
        kind=ReceiptKind.SALE, merchant_name="My Store", store_name="Orchard Rd", terminal_id="POS01",
        when=WHEN, amount=ReceiptAmount(123456, "SGD", "1234.56 SGD"), status_key="status_paid",
        merchant_trans_id="POS01-20240501-0001", acquirement_id="2015032412007101547201355678",
        code_last4=FULL_CODE[-4:], order_title="Coffee")
    base.update(kw)
    return ReceiptData(**base)  # type: ignore[arg-type]


def test_sale_receipt_in_chinese_is_gb18030_with_a_qr_of_the_trans_id() -> None:
    data = render_receipt(sale(), PrinterSection(encoding="GB18030"), Catalogue.load("zh-CN"))
    assert "谢谢".encode("gb18030") in data
    assert data.startswith(b"\x1b@") and data.endswith(b"\x1dV\x00")
    text = escpos_to_text(data, "GB18030")
    assert "谢谢惠顾" in text and "已支付" in text
    assert "[QR: POS:POS01-20240501-0001]" in text
    assert "**************1234" in text and FULL_CODE not in text
    assert "1234.56 SGD" in text and "-------- cut --------" in text


@pytest.mark.parametrize("encoding, codec", [("BIG5", "big5"), ("UTF-8", "utf-8")])
def test_other_encodings(encoding: str, codec: str) -> None:
    # Big5 is traditional Chinese: the simplified catalogue's 谢 cannot be sent, 咖啡 can
    data = render_receipt(sale(order_title="咖啡"), PrinterSection(encoding=encoding), Catalogue.load("zh-CN"))
    assert "咖啡".encode(codec) in data
    assert "咖啡" in escpos_to_text(data, encoding)


def test_english_receipt_with_barcode_and_refunds_and_quiet_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    refund = RefundLine("R-1", ReceiptAmount(1000, "SGD", "10.00 SGD"), "status_refunded", WHEN)
    data = sale(refunds=(refund,), reprint=True)
    out = render_receipt(data, PrinterSection(encoding="ASCII", print_qr=False, width=32, narrowest_bar=1),
                         Catalogue.load("en"))
    text = escpos_to_text(out, "ASCII")
    assert "[BARCODE: POS:POS01-20240501-0001]" in text
    assert "*** REPRINT ***" in text and "REFUNDED" in text and "R-1" in text
    assert all(len(line) <= 32 for line in text.splitlines() if not line.startswith("["))
    assert capsys.readouterr().out == ""   # escpos's "Using hardware barcode renderer" is kept out


def test_report_receipt() -> None:
    data = ReceiptData(kind=ReceiptKind.REPORT, merchant_name="My Store", terminal_id="POS01", when=WHEN,
                       report_title_key="report_z", report_lines=(("Sales 12", "1234.56 SGD"),))
    text = escpos_to_text(render_receipt(data, PrinterSection(), Catalogue.load("en")))
    assert "Z REPORT" in text and "Sales 12" in text and "[QR" not in text


def test_a_full_payment_code_cannot_go_on_a_receipt() -> None:
    with pytest.raises(ValueError, match="last 4"):
        sale(code_last4=FULL_CODE)


def test_receipt_record_round_trips_as_json() -> None:
    data = sale(refunds=(RefundLine("R-1", ReceiptAmount(1000, "SGD", "10.00 SGD"), "status_refunded", WHEN),))
    assert ReceiptData.from_dict(json.loads(json.dumps(data.to_dict()))) == data


def test_a_record_queued_without_amount_texts_still_reprints() -> None:
    record = sale().to_dict()
    del record["amount"]["text"]   # as queued before amounts carried their text
    assert ReceiptData.from_dict(record).amount == ReceiptAmount(123456, "SGD", "123456 SGD (minor units)")


# -- printers -------------------------------------------------------------

def test_network_printer_prints_and_reads_status() -> None:
    with EmulatedNetworkPrinter() as emu:
        p = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=2)
        p.send(b"\x1b@hello\n")
        assert emu.wait_for_jobs(1) and emu.texts() == ["hello\n"]
        status = p.status()
        assert (status.online, status.paper) == (True, "ok")
        emu.paper_out = True
        assert p.status().paper == "out"
        assert len(emu.jobs) == 1   # status connections are not jobs


def test_a_printer_that_keeps_the_connection_open_costs_no_wait_per_job() -> None:
    """Issue 17: the driver waited drain_timeout (2 s) per receipt for the printer to close."""
    import time

    with EmulatedNetworkPrinter(hold_open=10.0) as emu:
        p = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=2)
        started = time.monotonic()
        for n in range(3):
            p.send(b"\x1b@job %d\n" % n)
        took = time.monotonic() - started
        assert emu.wait_for_jobs(3) and emu.texts() == ["job 0\n", "job 1\n", "job 2\n"]
        assert took < 1.5, f"3 jobs took {took:.1f} s"


def test_jobs_share_one_connection_and_a_printer_that_went_away_since_is_reconnected_to() -> None:
    with EmulatedNetworkPrinter() as emu:
        p = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=2)
        for n in range(3):
            p.send(b"\x1b@job %d\n" % n)
        assert emu.wait_for_jobs(3) and emu.connections == 1      # one connection for every job
        emu.switch_off()                                          # the kept connection is reset
        emu.switch_on()
        p.send(b"\x1b@after\n")                                  # noticed before sending: a new one
        assert emu.wait_for_jobs(4) and emu.texts()[3] == "after\n" and emu.connections == 2
        p.close()
        emu.switch_off()
        with pytest.raises(PrinterError, match="cannot connect"):
            p.send(b"x")                                          # away: the job waits in the queue


def test_a_printer_that_does_not_answer_status_gets_a_connection_per_job() -> None:
    with EmulatedNetworkPrinter(answer_status=False) as emu:
        p = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=0.3)
        for n in range(3):
            p.send(b"\x1b@job %d\n" % n)
        assert emu.wait_for_jobs(3) and emu.texts() == ["job 0\n", "job 1\n", "job 2\n"]
        assert emu.connections == 3


def test_unanswered_status_is_unknown_not_no_paper() -> None:
    with EmulatedNetworkPrinter(answer_status=False) as emu:
        p = NetworkPrinter(emu.host, emu.port, timeout=0.3)
        status = p.status()
        assert status.online is None and status.paper is None and not status.known


def test_network_printer_switched_off_raises_and_reports_offline() -> None:
    with EmulatedNetworkPrinter() as emu:
        emu.switch_off()
        p = NetworkPrinter(emu.host, emu.port, timeout=1)
        with pytest.raises(PrinterError, match="cannot connect"):
            p.send(b"x")
        assert p.status().online is False


def test_network_printer_reset_mid_job_is_an_error() -> None:
    with EmulatedNetworkPrinter() as emu:
        emu.fail_after(10)
        p = NetworkPrinter(emu.host, emu.port, timeout=2, drain_timeout=2)
        with pytest.raises(PrinterError):
            p.send(b"A" * 50_000)
        assert emu.jobs == [] and len(emu.torn) == 1


def test_file_printer(tmp_path: Path) -> None:
    target = tmp_path / "lp0"
    FilePrinter(str(target)).send(b"\x1b@abc")
    assert target.read_bytes() == b"\x1b@abc"
    with pytest.raises(PrinterError, match="cannot open"):
        FilePrinter(str(tmp_path / "missing" / "lp0")).send(b"x")


def test_serial_printer_over_a_pty_uses_pyserial_urls(tmp_path: Path) -> None:
    with PtyDevice("printer", tmp_path) as dev:
        p = SerialPrinter(dev.path, status_timeout=0.1)
        p.send(b"\x1b@serial receipt\n")
        assert dev.read(2) == b"\x1b@serial receipt\n"
        assert p.status().online is None      # nobody answers DLE EOT: unknown
    with pytest.raises(PrinterError):
        SerialPrinter(str(tmp_path / "gone")).send(b"x")


def test_open_printer_kinds_and_dummy() -> None:
    assert isinstance(open_printer(PrinterSection(kind="none")), NullPrinter)
    d = open_printer(PrinterSection(kind="dummy"))
    assert isinstance(d, DummyPrinter)
    d.send(b"x")
    d.online = False
    with pytest.raises(PrinterError):
        d.send(b"y")
    assert d.jobs == [b"x"]
    assert isinstance(open_printer(PrinterSection(kind="network", host="127.0.0.1")), NetworkPrinter)


# -- python-escpos import traps --------------------------------------------

_PROBE = """
import json, logging, os, sys
sys.path.insert(0, sys.argv[1])
import devices.printer as dp
dp.load_escpos()
import escpos.capabilities as caps
print(json.dumps({"handlers": len(logging.getLogger().handlers), "pickle": caps.pickle_path,
                  "env": os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR")}))
"""


def test_escpos_import_leaves_no_temp_dir_no_root_handler_and_keeps_its_pickle(tmp_path: Path) -> None:
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "POS_CACHE_DIR": str(cache)}
    env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
    repo = str(Path(__file__).resolve().parents[1])

    def probe() -> dict[str, object]:
        out = subprocess.run([sys.executable, "-c", _PROBE, repo], env=env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)

    first = probe()
    assert first["handlers"] == 0
    assert first["env"] == str(cache / "escpos")
    pickle = Path(str(first["pickle"]))
    assert pickle.parent == cache / "escpos" and pickle.exists()
    assert list(tmp.iterdir()) == []
    mtime = pickle.stat().st_mtime_ns
    second = probe()
    assert second["pickle"] == first["pickle"] and pickle.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert list(tmp.iterdir()) == []


_RENDER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import devices.printer as dp
if sys.argv[2]:
    dp.configure_escpos_cache(sys.argv[2], profiles=[sys.argv[3]])
from devices.messages import Catalogue
from devices.receipt import render_receipt
from pos.config import PrinterSection
from test_printer import sale
en = Catalogue.load("en")
out = [render_receipt(sale(), PrinterSection(profile=sys.argv[3], encoding=enc, print_qr=qr), en).hex()
       for enc in ("GB18030", "ASCII") for qr in (True, False)]
import escpos.capabilities as caps
import types
yaml_loaded = type(sys.modules.get("yaml")) is types.ModuleType
import yaml
with open(caps.capabilities_path, encoding="utf-8") as f:
    as_escpos_parses_it = yaml.safe_load(f)
print(json.dumps({"out": out, "file": os.environ.get("ESCPOS_CAPABILITIES_FILE"), "pickle": caps.pickle_path,
                  "profiles": sorted(caps.CAPABILITIES["profiles"]), "yaml": yaml_loaded,
                  "parsed": caps.CAPABILITIES == as_escpos_parses_it,
                  "back_ends": sorted(m for m in sys.modules if m.startswith(("escpos.printer", "usb")))}))
"""


@pytest.mark.parametrize("profile", ["default", "TM-T88V"])
def test_the_daemon_loads_only_its_printer_profile_and_prints_the_same_bytes(tmp_path: Path, profile: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCPOS_")}
    env["POS_CACHE_DIR"] = str(tmp_path / "all")
    repo = str(Path(__file__).resolve().parents[1])

    def render(cache: str) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-c", _RENDER, repo, cache, profile], env=env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)

    every = render("")                            # escpos's own file: every profile
    assert every["file"] is None and len(every["profiles"]) > 2  # type: ignore[arg-type]
    cache = tmp_path / "cache"
    first = render(str(cache))
    folder = Path(str(first["file"])).parent
    assert folder.parent == cache and first["profiles"] == sorted({"default", profile})
    assert Path(str(first["pickle"])).parent == folder and Path(str(first["pickle"])).exists()
    assert first["out"] == every["out"]           # byte for byte what escpos makes with its whole database
    # escpos parsed its own file with PyYAML; the file of the profiles in use came with its pickle, the same
    # capabilities as PyYAML reads from that file, and PyYAML stayed unloaded
    assert every["yaml"] is True and every["parsed"] is True
    assert first["yaml"] is False and first["parsed"] is True
    assert first["back_ends"] == [] == every["back_ends"]   # a receipt imports no printer back end
    mtime = Path(str(first["file"])).stat().st_mtime_ns
    again = render(str(cache))
    assert again["out"] == every["out"] and Path(str(first["file"])).stat().st_mtime_ns == mtime   # kept
    assert again["yaml"] is False and again["parsed"] is True


_DRAWN = """
import json, os, sys, types
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from devices.messages import Catalogue
from test_printer import sale
out = {}
if sys.argv[2] == "daemon":     # as the daemon loads escpos, and a receipt first
    import devices.printer as dp
    from devices.receipt import render_receipt
    from pos.config import PrinterSection
    for qr in (True, False):
        render_receipt(sale(), PrinterSection(print_qr=qr), Catalogue.load("en"))
    out["loaded"] = sorted(n for n in dp.ESCPOS_LAZY_MODULES if type(sys.modules.get(n)) is types.ModuleType)
    printer = dp.escpos_buffer()
else:                           # escpos as its documentation shows it, nothing of ours before it
    from escpos.printer import Dummy
    printer = Dummy()
from PIL import Image, ImageDraw
picture = Image.new("RGB", (64, 24), "white")
ImageDraw.Draw(picture).rectangle((8, 4, 40, 20), fill="black")
printer.qr("POS01-20240501-0001", native=False, size=4)   # a software QR code: qrcode and Pillow
printer.image(picture)
printer.barcode("4006381333931", "EAN13", force_software=True)   # python-barcode's image writer
out["escpos"] = printer.output.hex()
from devices.receipt_image import receipt_png
out["png"] = receipt_png(sale(), Catalogue.load("en")).hex()
print(json.dumps(out))
"""


def test_images_software_qr_codes_and_pictures_still_work_after_the_daemon_loads_escpos(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCPOS_")}
    env["POS_CACHE_DIR"] = str(tmp_path / "cache")
    env["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(tmp_path)
    repo = str(Path(__file__).resolve().parents[1])

    def run(how: str) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-c", _DRAWN, repo, how], env=env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.splitlines()[-1])    # escpos says which barcode renderer it uses

    first, daemon, plain = run("daemon"), run("daemon"), run("plain")
    assert first["loaded"] == ["yaml"]     # PyYAML reads escpos's capabilities once, to make their pickle
    assert daemon["loaded"] == []          # then receipts, QR code or barcode, load none of those libraries
    assert first["escpos"] == daemon["escpos"]
    assert daemon["escpos"] == plain["escpos"] and len(str(plain["escpos"])) > 1000
    assert daemon["png"] == plain["png"]


def test_usb_printer_that_is_not_there_is_a_clear_printer_error():
    from devices.printer import PrinterError, UsbPrinter
    printer = UsbPrinter(0x04B8, 0x0E15)  # an Epson TM-T20 id; no such device on a test machine
    with pytest.raises(PrinterError) as err:
        printer.send(b"\x1b@hello")
    assert "USB printer 04b8:0e15" in str(err.value) and "cannot open" in str(err.value)
    assert printer.status().online in (False, None)


# -- what a receipt says (issue 17) -------------------------------------------

def test_a_refund_receipt_wraps_long_ids_and_names_alipays_refund_id() -> None:
    """Before: the merchantRefundId was cut to '...-R0' and Alipay's refundId was on no receipt."""
    mrid = "POS01-20240501-VE6E99-R000001"
    refund_id = "20240501111212800100166000012345"
    line = RefundLine(mrid, ReceiptAmount(1000, "SGD", "10.00 SGD"), "status_refunded", WHEN, refund_id)
    data = sale(kind=ReceiptKind.REFUND, refunds=(line,))
    text = escpos_to_text(render_receipt(data, PrinterSection(encoding="ASCII", width=32), Catalogue.load("en")),
                          "ASCII")
    lines = text.splitlines()
    assert all(len(x) <= 32 for x in lines if not x.startswith("["))
    stripped = [x.strip() for x in lines]
    assert mrid in stripped and "Alipay refund ID" in text and refund_id in stripped
    long_id = "X" * 70   # longer than any line: wrapped over three, never cut
    wrapped = escpos_to_text(render_receipt(sale(acquirement_id=long_id), PrinterSection(encoding="ASCII",
                                                                                         width=32),
                                            Catalogue.load("en")), "ASCII")
    assert "".join(x.strip() for x in wrapped.splitlines() if set(x.strip()) == {"X"}) == long_id


def test_a_receipt_names_the_store_and_what_the_customer_paid_in_their_currency() -> None:
    data = sale(store_id="S-0042", store_address="Pier 3, Harbour", order_title="",
                pay_amount=ReceiptAmount(6712, "CNY", "67.12 CNY"), conversion_rate="5.3696")
    text = escpos_to_text(render_receipt(data, PrinterSection(encoding="ASCII"), Catalogue.load("en")), "ASCII")
    assert "Pier 3, Harbour" in text and "S-0042" in text
    assert "You paid" in text and "67.12 CNY" in text and "5.3696" in text
    assert "Item" not in text   # no order title: no Item line (it showed the store's address before)
    assert ReceiptData.from_dict(json.loads(json.dumps(data.to_dict()))) == data


def test_the_scan_to_pay_slip_carries_the_wallet_code_and_the_amount() -> None:
    url = "http://127.0.0.1:8080/sandbox/cashier/2027011511121280010016000000000007"
    slip = ReceiptData(kind=ReceiptKind.QR_SLIP, merchant_name="Sandbox Coffee", terminal_id="T1",
                       when=datetime(2027, 1, 15, 12, 0), amount=ReceiptAmount(990, "SGD", "9.90 SGD"),
                       merchant_trans_id="T1-20270115-AAAAAA-000001", order_title="Iced tea", pay_qr=url)
    for language, title in (("en", "SCAN TO PAY"), ("zh-CN", "扫码付款")):
        text = escpos_to_text(render_receipt(slip, PrinterSection(), Catalogue.load(language)))
        assert f"[QR: {url}]" in text and title in text and "9.90 SGD" in text and "Iced tea" in text
        assert "POS:" not in text     # not a receipt: no refund code on it
    assert ReceiptData.from_dict(json.loads(json.dumps(slip.to_dict()))) == slip   # the print queue keeps it


def test_a_refund_receipt_keeps_the_whole_merchant_refund_id() -> None:
    """Issue 17, defect 4, as the receipt came before Alipay's refundId was known: the
    merchantRefundId was cut at the line's end ('POS01-20240501-')."""
    mrid = "POS01-20240501-VE6E99-R000001"
    line = RefundLine(mrid, ReceiptAmount(1000, "SGD", "10.00 SGD"), "status_refunded", WHEN)
    data = sale(kind=ReceiptKind.REFUND, refunds=(line,))
    text = escpos_to_text(render_receipt(data, PrinterSection(encoding="ASCII", width=32), Catalogue.load("en")),
                          "ASCII")
    assert mrid in [x.strip() for x in text.splitlines()], text


# -- the receipt code as a barcode: it must fit the paper, or it cannot be scanned for a refund ---------

def printed_barcode(out: bytes) -> tuple[int, list[int]]:
    """The bar width (GS w n) and the Code 128 symbols (start, data, code set changes) the bytes print."""
    bar = out[out.rindex(b"\x1dw") + 2]
    at = out.index(b"\x1dkI")
    data = out[at + 4:at + 4 + out[at + 3]]
    starts, switches = {"A": 103, "B": 104, "C": 105}, {"A": 101, "B": 100, "C": 99}
    symbols: list[int] = []
    code_set, i = "", 0
    while i < len(data):
        if data[i:i + 1] == b"{" and data[i + 1:i + 2] in (b"A", b"B", b"C"):
            code_set = chr(data[i + 1])
            symbols.append(switches[code_set] if symbols else starts[code_set])
            i += 2
            continue
        assert symbols, "Code 128 data must start with {A, {B or {C"
        symbols.append(data[i] if code_set == "C" else data[i] - 32)
        i += 1
    return bar, symbols


def bars_of(symbols: list[int]) -> str:
    """The printer's bars for these symbols: each 11 modules, the check symbol, the 13-module stop."""
    from barcode.charsets import code128

    check = (symbols[0] + sum(i * v for i, v in enumerate(symbols[1:], start=1))) % 103
    return "".join(code128.CODES[v] for v in [*symbols, check]) + code128.STOP + "11"


SHORT_ID, TYPICAL_ID = "POS01-20240501-0001", "POS01-20240501-VE6E99-000001"   # 255 and 343 modules


@pytest.mark.parametrize("trans_id, narrowest, bars", [
    # the bar width on (576, 512, 384) dots; None: the code does not fit, a QR code is printed
    (SHORT_ID, 1, (2, 2, 1)),
    (TYPICAL_ID, 1, (1, 1, 1)),
    (SHORT_ID, 2, (2, 2, None)),          # [printer] narrowest_bar's default: no bar under 2 dots
    (TYPICAL_ID, 2, (None, None, None)),
    (SHORT_ID, 3, (None, None, None)),
])
@pytest.mark.parametrize("width, dots", [(48, 576), (42, 512), (32, 384)])
def test_the_receipt_barcode_fits_the_paper_and_scans(width: int, dots: int, trans_id: str, narrowest: int,
                                                       bars: tuple[int | None, ...],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Before: Code 128 set B at python-escpos's 3 dots a bar, 864 dots or more: wider than any paper.
    Then: bars of 1 dot, which a printer that takes GS w 2..6 only (as Epson documents many) ignores,
    printing at its default 3 dots: clipped again. The bar is never narrower than `narrowest_bar`."""
    import zxingcpp
    from PIL import Image

    out = render_receipt(sale(merchant_trans_id=trans_id),
                         PrinterSection(width=width, print_qr=False, narrowest_bar=narrowest), Catalogue.load("en"))
    expected = bars[[576, 512, 384].index(dots)]
    if expected is None:   # the QR fallback, with a warning saying why
        assert f"[QR: POS:{trans_id}]" in escpos_to_text(out) and b"\x1dkI" not in out and b"\x1dw" not in out
        assert any("printed as a QR code" in r.getMessage() and f"at {narrowest} dot(s) a bar" in r.getMessage()
                   for r in caplog.records if r.levelname == "WARNING")
        return
    bar, symbols = printed_barcode(out)
    bars_ = bars_of(symbols)
    assert bar == expected and narrowest <= bar and len(bars_) * bar <= dots, (bar, len(bars_))
    assert len(bars_) * (bar + 1) > dots or bar == 3   # as wide as the paper allows
    assert not caplog.records
    # Digit runs in code set C: fewer modules than set B alone.
    assert 105 in symbols or 99 in symbols
    # The bars the printer draws from these bytes scan as the receipt code.
    quiet = 10 * bar
    img = Image.new("L", (len(bars_) * bar + 2 * quiet, 64), 255)
    for x, dark in enumerate(bars_):
        if dark == "1":
            img.paste(0, (quiet + x * bar, 0, quiet + (x + 1) * bar, 64))
    assert [c.text for c in zxingcpp.read_barcodes(img)] == [f"POS:{trans_id}"]
    assert f"[BARCODE: POS:{trans_id}]" in escpos_to_text(out)


def test_a_receipt_code_too_wide_for_the_paper_prints_as_a_qr_code_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # The default config on 58 mm paper: a terminal's id (343 modules) needs 686 dots at 2 dots a bar.
    out = render_receipt(sale(merchant_trans_id=TYPICAL_ID), PrinterSection(width=32, print_qr=False),
                         Catalogue.load("en"))
    assert f"[QR: POS:{TYPICAL_ID}]" in escpos_to_text(out) and b"\x1dkI" not in out
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"receipt code of {TYPICAL_ID} printed as a QR code: its Code 128 barcode (343 modules) is wider than "
        "the paper's 384 dots even at 2 dot(s) a bar ([printer] narrowest_bar)"]
    caplog.clear()
    long_id = "POS01-" + "ABCDEFGH" * 7   # 62 characters: 800 modules at one dot a bar
    out = render_receipt(sale(merchant_trans_id=long_id), PrinterSection(width=32, print_qr=False, narrowest_bar=1),
                         Catalogue.load("en"))
    assert f"[QR: POS:{long_id}]" in escpos_to_text(out) and b"\x1dkI" not in out
    assert any("printed as a QR code" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    # The same code fits wider paper with dots to spare, where the printer takes 1-dot bars.
    caplog.clear()
    out = render_receipt(sale(merchant_trans_id=long_id),
                         PrinterSection(width=48, dots=1000, print_qr=False, narrowest_bar=1), Catalogue.load("en"))
    assert f"[BARCODE: POS:{long_id}]" in escpos_to_text(out) and not caplog.records
    assert printed_barcode(out)[0] == 1


def test_long_lines_wrap_at_spaces() -> None:
    """Before: 'Singap' / 'ore 238801': lines were cut where the paper ended, mid-word."""
    address = "1 Orchard Road, #01-23 Ion Orchard, Singapore 238801"
    title = "Iced lemon tea with extra honey, large"
    out = render_receipt(sale(store_address=address, order_title=title),
                         PrinterSection(encoding="ASCII", width=32), Catalogue.load("en"))
    lines = [x.strip() for x in escpos_to_text(out, "ASCII").splitlines()]
    assert "1 Orchard Road, #01-23 Ion" in lines and "Orchard, Singapore 238801" in lines
    assert "Iced lemon tea with extra honey," in lines and "large" in lines
    words = {w for x in lines for w in x.split()}
    assert set(address.split()) <= words and set(title.split()) <= words
    # Chinese has no spaces: it still fills each line (two columns a character).
    zh = "上海市黄浦区人民大道100号一楼101室靠近地铁站出口"
    text = escpos_to_text(render_receipt(sale(store_address=zh), PrinterSection(encoding="UTF-8", width=32),
                                         Catalogue.load("zh-CN")), "UTF-8")
    assert "上海市黄浦区人民大道100号一楼101" in text and "室靠近地铁站出口" in text
