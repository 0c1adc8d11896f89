"""Money: exact parsing of cashier input, formatting, wire form, AlipayCN currency rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos.core.money import (
    CN_PAYMENT_CURRENCIES,
    CN_SETTLEMENT_CURRENCIES,
    CURRENCY_EXPONENTS,
    AmountError,
    CurrencyError,
    Money,
    parse_amount,
    validate_cn_currencies,
)

LISTED = ["USD", "EUR", "JPY", "GBP", "CAD", "AUD", "SGD", "CHF", "SEK", "DKK", "NOK", "NZD", "THB", "HKD",
          "CNY", "KRW", "MYR", "IDR"]

# (currency, exponent, cashier text, minor units, display of the receipt form)
TABLE = [
    ("USD", 2, "12.50", 1250, "12.50 USD"),
    ("EUR", 2, "0.99", 99, "0.99 EUR"),
    ("JPY", 0, "1250", 1250, "1250 JPY"),
    ("GBP", 2, "7", 700, "7.00 GBP"),
    ("CAD", 2, "100.1", 10010, "100.10 CAD"),
    ("AUD", 2, "0.01", 1, "0.01 AUD"),
    ("SGD", 2, "12.50", 1250, "12.50 SGD"),
    ("CHF", 2, "3.05", 305, "3.05 CHF"),
    ("SEK", 2, "250", 25000, "250.00 SEK"),
    ("DKK", 2, "49.95", 4995, "49.95 DKK"),
    ("NOK", 2, "1000.00", 100000, "1000.00 NOK"),
    ("NZD", 2, "8.8", 880, "8.80 NZD"),
    ("THB", 2, "239", 23900, "239.00 THB"),
    ("HKD", 2, "38.5", 3850, "38.50 HKD"),
    ("CNY", 2, "67.12", 6712, "67.12 CNY"),
    ("KRW", 0, "15000", 15000, "15000 KRW"),
    ("MYR", 2, "4.20", 420, "4.20 MYR"),
    ("IDR", 2, "15000.50", 1500050, "15000.50 IDR"),
]


def test_every_listed_currency_is_in_the_table():
    assert sorted(t[0] for t in TABLE) == sorted(LISTED)
    assert set(LISTED) <= set(CURRENCY_EXPONENTS)


@pytest.mark.parametrize("currency,exponent,text,minor,receipt", TABLE)
def test_parse_and_format_each_currency(currency, exponent, text, minor, receipt):
    assert CURRENCY_EXPONENTS[currency] == exponent
    money = parse_amount(text, currency)
    assert money == Money(minor, currency)
    assert money.receipt() == receipt
    assert money.wire() == {"currency": currency, "value": str(minor)}
    assert Money.from_wire(money.wire()) == money
    assert parse_amount(money.major_str(), currency) == money


@pytest.mark.parametrize("text,currency,fragment", [
    ("12.505", "USD", "USD allows 2"),
    ("-1", "USD", "negative"),
    ("1e3", "USD", "not a number"),
    ("", "USD", "empty"),
    ("   ", "USD", "empty"),
    ("12.5.0", "USD", "not a number"),
    ("12,50", "USD", "not a number"),
    ("+5", "USD", "not a number"),
    ("12.", "USD", "ends with '.'"),
    (".5", "USD", "not a number"),
    ("12.5", "JPY", "no decimals"),
    ("0", "USD", "zero"),
    ("0.00", "USD", "zero"),
    ("١٢", "USD", "not a number"),  # Arabic-Indic digits are digits to Python, not to a till
    ("nan", "USD", "not a number"),
    ("99999999999999999", "USD", "too large"),
])
def test_bad_cashier_input_is_refused_with_a_reason(text, currency, fragment):
    with pytest.raises(AmountError) as err:
        parse_amount(text, currency)
    assert fragment in str(err.value)


def test_unknown_currency_is_refused():
    with pytest.raises(CurrencyError, match="unknown currency 'XYZ'"):
        parse_amount("1", "XYZ")
    with pytest.raises(CurrencyError):
        Money(1, "usd")


def test_money_refuses_floats_and_bools():
    with pytest.raises(AmountError):
        Money(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(AmountError):
        Money(True, "USD")  # type: ignore[arg-type]


def test_arithmetic_keeps_currencies_apart():
    assert Money(100, "USD") + Money(50, "USD") == Money(150, "USD")
    assert Money(100, "USD") - Money(150, "USD") == Money(-50, "USD")
    assert Money(-50, "USD").major_str() == "-0.50"
    assert Money(1, "USD") < Money(2, "USD")
    with pytest.raises(CurrencyError):
        Money(1, "USD") + Money(1, "EUR")
    with pytest.raises(CurrencyError):
        _ = Money(1, "USD") < Money(1, "EUR")


def test_wire_refuses_negative_and_from_wire_refuses_junk():
    with pytest.raises(AmountError):
        Money(-1, "USD").wire()
    assert Money.from_wire({"currency": "USD", "value": 100}) == Money(100, "USD")
    for bad in [{"currency": "USD", "value": "1.5"}, {"currency": "USD", "value": "-1"},
                {"currency": "USD", "value": 1.5}, {"currency": "USD"}, {"value": "1"},
                {"currency": "USD", "value": True}, "100", {"currency": "USD", "value": "1" * 17}]:
        with pytest.raises((AmountError, CurrencyError)):
            Money.from_wire(bad)


def test_display_is_short():
    assert Money(1250, "USD").display() == "USD 12.50"
    assert Money(1250, "EUR").display() == "€12.50"
    assert Money(1250, "JPY").display() == "JPY 1250"


currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))


@given(currencies, st.integers(min_value=1, max_value=10**15))
def test_format_then_parse_is_identity(currency, minor):
    money = Money(minor, currency)
    assert parse_amount(money.major_str(), currency) == money
    assert Money.from_wire(money.wire()) == money


@given(currencies, st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=99))
def test_parse_matches_decimal_arithmetic(currency, whole, frac):
    exp = CURRENCY_EXPONENTS[currency]
    if exp == 0:
        text, expected = str(whole), whole
    else:
        text, expected = f"{whole}.{frac:02d}", whole * 100 + frac
    if expected == 0:
        with pytest.raises(AmountError):
            parse_amount(text, currency)
    else:
        money = parse_amount(text, currency)
        assert money.minor == expected
        assert money.major_str() == (text if exp == 0 else f"{whole}.{frac:02d}")


@given(st.text(max_size=12), currencies)
def test_parse_never_crashes_and_never_returns_nonpositive(text, currency):
    try:
        money = parse_amount(text, currency)
    except (AmountError, CurrencyError):
        return
    assert isinstance(money.minor, int) and money.minor > 0
    assert parse_amount(money.major_str(), currency) == money


def test_cn_rules():
    assert CN_SETTLEMENT_CURRENCIES < CN_PAYMENT_CURRENCIES
    validate_cn_currencies("USD", "USD")
    validate_cn_currencies("CNY", "USD")
    validate_cn_currencies("JPY", "JPY")
    with pytest.raises(CurrencyError, match="cannot be CNY"):
        validate_cn_currencies("CNY", "CNY")
    with pytest.raises(CurrencyError, match="must settle in USD"):
        validate_cn_currencies("USD", "EUR")
    with pytest.raises(CurrencyError, match="not supported"):
        validate_cn_currencies("KRW", "KRW")
    with pytest.raises(CurrencyError, match="not supported"):
        validate_cn_currencies("CNY", "MYR")


@given(st.sampled_from(sorted(CN_PAYMENT_CURRENCIES)), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_cn_rules_property(payment, settlement):
    ok = (settlement != "CNY" and settlement in CN_SETTLEMENT_CURRENCIES
          and (settlement == payment if payment != "CNY" else True))
    if ok:
        validate_cn_currencies(payment, settlement)
    else:
        with pytest.raises(CurrencyError):
            validate_cn_currencies(payment, settlement)
