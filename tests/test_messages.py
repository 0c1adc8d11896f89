"""The message catalogue: same keys in both languages, every line fits 2x20."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from wcwidth import wcswidth, wcwidth

from devices.messages import (
    DISPLAY_COLUMNS,
    LANGUAGES,
    Catalogue,
    CatalogueError,
    char_width,
    messages_dir,
    text_width,
)
from pos.core.money import Money
from pos.gateway.ams.codes import result_codes as ams_result_codes
from pos.gateway.offline.codes import result_codes

REQUIRED = [
    "ready", "enter_amount", "scan_code", "processing", "checking", "confirm_in_app", "cancelling", "paid",
    "declined", "cancelled", "manual_review", "reversing", "reversed", "refund_done", "refund_declined",
    "refund_pending", "busy", "scan_invalid", "scan_too_old", "scanner_lost", "scanner_back", "printer_away",
    "printer_back", "network_down", "journal_error", "recovering", "pin_prompt", "pin_wrong", "pin_locked",
    "manager_menu", "refund_amount", "refund_scan", "report_printed", "amount_invalid", "amount_too_large",
    "not_ready",
]

# Realistic, long amount strings: the widest a 100000-major-unit sale shows.
AMOUNTS = ["SGD 1234.56", Money(10_000_000, "IDR").display(), Money(10_000_000, "CNY").display(),
           Money(1234, "EUR").display()]


@pytest.fixture(scope="module", params=LANGUAGES)
def catalogue(request: pytest.FixtureRequest) -> Catalogue:
    return Catalogue.load(request.param)


def test_text_width_counts_cjk_as_two() -> None:
    assert text_width("谢谢") == 4
    assert text_width("Ready") == 5


def _wcwidth_text_width(text: str) -> int:
    """What text_width answered when it was wcwidth's alone."""
    width = wcswidth(text)
    return width if width >= 0 else sum(max(wcswidth(ch), 1) for ch in text)


def test_widths_are_wcwidths_for_every_character() -> None:
    # Every code point: the ranges measured without wcwidth, and wcwidth's own answer (0 combining,
    # -1 control) for the rest.
    differ = [hex(code) for code in range(0x110000) if char_width(chr(code)) != wcwidth(chr(code))]
    assert differ == []


def test_text_widths_are_wcwidths() -> None:
    # Each character a display or a receipt is given alone, beside ASCII, beside itself and beside a
    # Hanzi: the ranges text_width measures itself hold no character that wcwidth joins to its neighbour.
    for code in [*range(0x20, 0x7F), *range(0xA0, 0x3100), *range(0x3400, 0xA000), *range(0xAC00, 0xD7A4),
                 *range(0xFF00, 0xFFF0)]:
        ch = chr(code)
        for text in (ch, f"a{ch}{ch}b", f"{ch}中{ch}"):
            assert text_width(text) == _wcwidth_text_width(text), (hex(code), text)
    rng = random.Random(12)
    alphabet = [*"aZ 9.:-", *"中文，。（）：、", "\u00e9", "\u00a5", "\u0301", "\u200d", "\U0001f600", "\ufe0f",
                "\x00", "\x1b", "\u1161", "\uac00"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert text_width(text) == _wcwidth_text_width(text), repr(text)


def test_required_keys_and_every_result_code(catalogue: Catalogue) -> None:
    keys = catalogue.keys()
    missing = [k for k in REQUIRED if k not in keys]
    missing += [f"code.{c}" for c in result_codes() if f"code.{c}" not in keys]
    missing += [f"code.{c}" for c in ams_result_codes() if f"code.{c}" not in keys]   # the v1 API's codes too
    assert missing == []


def test_both_languages_have_the_same_keys() -> None:
    en, zh = Catalogue.load("en"), Catalogue.load("zh-CN")
    assert en.keys() == zh.keys()
    assert en.receipt_keys() == zh.receipt_keys()


def test_every_line_fits_the_display(catalogue: Catalogue) -> None:
    too_wide = []
    for key in sorted(catalogue.keys()):
        for amount in AMOUNTS:
            for side in (catalogue.cashier, catalogue.customer):
                for line in side(key, amount=amount):
                    if text_width(line) > DISPLAY_COLUMNS:
                        too_wide.append((key, line))
    for label in catalogue.receipt_keys():
        if text_width(catalogue.receipt(label)) > DISPLAY_COLUMNS:
            too_wide.append((label, catalogue.receipt(label)))
    assert too_wide == []


def test_amount_parameter_is_filled_in() -> None:
    en = Catalogue.load("en")
    assert en.cashier("scan_code", amount="SGD 1234.56")[1] == "SGD 1234.56"
    assert en.customer("paid", amount="SGD 1234.56")[1] == "SGD 1234.56"
    assert en.cashier("code.USER_BALANCE_NOT_ENOUGH") == ("Declined: no funds", "Ask other payment")
    assert en.customer("confirm_in_app") == ("Please confirm in", "your Alipay app")
    # Issue 17: a system error or a timeout does not send the customer to their app.
    assert en.customer("checking") == ("Checking payment", "Please wait")


def test_cashier_and_customer_texts_differ_where_it_matters() -> None:
    en = Catalogue.load("en")
    assert en.cashier("checking") != en.customer("checking")
    assert "goods" in " ".join(en.cashier("manual_review")) + " ".join(en.cashier("checking"))


def test_unknown_result_code_falls_back_to_generic_decline_but_unknown_key_raises() -> None:
    en = Catalogue.load("en")
    assert en.cashier("code.SOMETHING_NEW") == en.cashier("declined")
    with pytest.raises(KeyError):
        en.cashier("no_such_key")


def test_directory_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('[ready]\ncashier = ["A", "B"]\ncustomer = ["C", ""]\n', "utf-8")
    monkeypatch.setenv("POS_MESSAGES_DIR", str(tmp_path))
    assert messages_dir() == tmp_path
    assert Catalogue.load("en").cashier("ready") == ("A", "B")


@pytest.mark.parametrize("body, words", [
    ('[ready]\ncashier = ["A"]\ncustomer = ["C", ""]\n', "two lines"),
    ('[ready]\ncashier = ["{code}", ""]\ncustomer = ["C", ""]\n', "unknown parameter"),
    ('[ready]\ncashier = ["A", ""]\n', "exactly"),
    ('[ready\n', "valid UTF-8 TOML"),
])
def test_malformed_catalogue_is_refused_with_a_clear_message(tmp_path: Path, body: str, words: str) -> None:
    (tmp_path / "en.toml").write_text(body, "utf-8")
    with pytest.raises(CatalogueError, match=words):
        Catalogue.load("en", tmp_path)


def test_missing_catalogue_and_unknown_language(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="POS_MESSAGES_DIR"):
        Catalogue.load("en", tmp_path)
    with pytest.raises(CatalogueError, match="unknown language"):
        Catalogue.load("fr")


def test_every_sale_state_has_its_display_text_and_receipt_label(catalogue: Catalogue) -> None:
    """A new state (PAID_LATE, issue 17) is told on the displays, the till's view and the receipt."""
    from pos.core.records import RefundState, SaleState
    from pos.terminal.receipts import RECEIPT_STATUS
    from pos.terminal.till_service import REFUND_MESSAGE, STATE_MESSAGE

    assert set(STATE_MESSAGE) == {s.value for s in SaleState}
    assert all(catalogue.has(key) for key in STATE_MESSAGE.values())
    assert all(catalogue.has(key) for key in REFUND_MESSAGE.values())
    final = {s.value for s in SaleState} - {"CREATED", "PAYING", "QUERYING", "CANCELLING"}
    assert final | {s.value for s in RefundState} - {"REFUND_CREATED", "REFUNDING"} <= set(RECEIPT_STATUS)
    assert set(RECEIPT_STATUS.values()) <= catalogue.receipt_keys()
