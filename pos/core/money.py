"""Money: an integer number of minor units plus an ISO 4217 currency.

No float is ever used. Cashier input is parsed as text, digit by digit, so
"12.50" USD is exactly 1250 cents and "1250" on a JPY till is exactly 1250 yen.
The gateway's wire form is the minor-unit integer as a string (reference §5.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CURRENCY_EXPONENTS",
    "AmountError",
    "CurrencyError",
    "Money",
    "MAX_WIRE_DIGITS",
    "check_currency",
    "parse_amount",
    "validate_cn_currencies",
    "CN_PAYMENT_CURRENCIES",
    "CN_SETTLEMENT_CURRENCIES",
]

# ISO 4217 minor-unit exponents for the currencies Alipay's barcode product and
# the AlipayCN wallet accept (reference §5.1, seed 002). JPY and KRW have no
# minor unit; everything else here has two.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "JPY": 0, "GBP": 2, "CAD": 2, "AUD": 2, "SGD": 2,
    "CHF": 2, "SEK": 2, "DKK": 2, "NOK": 2, "NZD": 2, "THB": 2, "HKD": 2,
    "CNY": 2, "KRW": 0, "MYR": 2, "IDR": 2,
}

# Symbols used on the display and the receipt; a code is printed where none is
# unambiguous (several currencies share "$" and "kr").
_SYMBOLS: dict[str, str] = {"EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "KRW": "₩", "THB": "฿"}

# The gateway documents at most 16 digits for a minor-unit value (reference §5.1 [A]).
MAX_WIRE_DIGITS = 16

# Seed 002 ("More information"): AlipayCN wallet currencies.
CN_PAYMENT_CURRENCIES = frozenset(
    ["USD", "EUR", "JPY", "GBP", "CAD", "AUD", "SGD", "CHF", "SEK", "DKK", "NOK", "NZD", "THB", "HKD", "CNY"])
CN_SETTLEMENT_CURRENCIES = frozenset(
    ["USD", "EUR", "JPY", "GBP", "CAD", "AUD", "SGD", "CHF", "SEK", "DKK", "NOK", "NZD", "THB", "HKD"])

_AMOUNT_RE = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]*))?")


class AmountError(ValueError):
    """An amount the cashier or the till typed is not a valid amount."""


class CurrencyError(ValueError):
    """A currency code is unknown or not allowed here."""


def check_currency(code: str) -> str:
    """Return the currency code if we know its exponent, else raise CurrencyError."""
    if not isinstance(code, str) or code not in CURRENCY_EXPONENTS:
        known = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise CurrencyError(f"unknown currency {code!r}: use one of {known}")
    return code


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in minor units of one currency. Immutable, comparable by value."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if type(self.minor) is not int:  # bool and float are refused on purpose
            raise AmountError(f"minor units must be an integer, got {self.minor!r}")

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    def major_str(self) -> str:
        """Plain decimal text in major units: 1250 USD -> "12.50", 1250 JPY -> "1250"."""
        sign = "-" if self.minor < 0 else ""
        digits = str(abs(self.minor))
        exp = self.exponent
        if exp == 0:
            return sign + digits
        digits = digits.rjust(exp + 1, "0")
        return f"{sign}{digits[:-exp]}.{digits[-exp:]}"

    def display(self) -> str:
        """Short form for a 20-column display: "USD 12.50" or "¥1250"."""
        symbol = _SYMBOLS.get(self.currency)
        if symbol and self.currency not in ("JPY", "CNY"):
            return f"{symbol}{self.major_str()}"
        return f"{self.currency} {self.major_str()}"

    def receipt(self) -> str:
        """Unambiguous form for receipts and reports: "12.50 USD"."""
        return f"{self.major_str()} {self.currency}"

    def wire(self) -> dict[str, str]:
        """The gateway's Money object: value is a string of minor units (§5.1)."""
        if self.minor < 0:
            raise AmountError("a negative amount cannot be sent to the gateway")
        return {"currency": self.currency, "value": str(self.minor)}

    @classmethod
    def from_wire(cls, obj: object) -> Money:
        """Read the gateway's Money object; accepts a string or an integer value."""
        if not isinstance(obj, dict):
            raise AmountError(f"expected an amount object, got {obj!r}")
        currency = obj.get("currency")
        value = obj.get("value")
        check_currency(currency)  # type: ignore[arg-type]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AmountError(f"amount value must be a string of digits, got {value!r}")
        text = str(value)
        if not text.isascii() or not text.isdigit() or len(text) > MAX_WIRE_DIGITS:
            raise AmountError(f"amount value must be 1-{MAX_WIRE_DIGITS} digits, got {value!r}")
        return cls(int(text), currency)  # type: ignore[arg-type]

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def __str__(self) -> str:
        return self.receipt()


def parse_amount(text: str, currency: str, *, allow_zero: bool = False) -> Money:
    """Parse what a cashier types ("12.50", "1250") into Money, exactly.

    Refuses signs, exponents, separators, more decimals than the currency has,
    zero (unless allowed) and amounts longer than the gateway accepts. Every
    error message says what is wrong and what a correct entry looks like.
    """
    check_currency(currency)
    exp = CURRENCY_EXPONENTS[currency]
    example = "1250" if exp == 0 else "12.50"
    if not isinstance(text, str):
        raise AmountError(f"amount must be text like {example!r}, got {text!r}")
    raw = text.strip()
    if raw == "":
        raise AmountError(f"amount is empty: type an amount like {example!r}")
    if raw.startswith("-"):
        raise AmountError(f"amount {text!r} is negative: type a positive amount like {example!r}")
    match = _AMOUNT_RE.fullmatch(raw)
    if match is None or not raw.isascii():
        raise AmountError(
            f"amount {text!r} is not a number: use digits and at most one '.', like {example!r}")
    whole, frac = match.group("int"), match.group("frac")
    if frac is not None:
        if exp == 0:
            raise AmountError(f"{currency} has no decimals: type whole units like {example!r}, not {text!r}")
        if frac == "":
            raise AmountError(f"amount {text!r} ends with '.': type the decimals too, like {example!r}")
        if len(frac) > exp:
            raise AmountError(
                f"amount {text!r} has {len(frac)} decimals; {currency} allows {exp}, like {example!r}")
    minor = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if frac else 0)
    if minor == 0 and not allow_zero:
        raise AmountError(f"amount {text!r} is zero: type an amount above zero")
    if len(str(minor)) > MAX_WIRE_DIGITS:
        raise AmountError(f"amount {text!r} is too large for the gateway ({MAX_WIRE_DIGITS} digits at most)")
    return Money(minor, currency)


def validate_cn_currencies(payment: str, settlement: str) -> None:
    """Check AlipayCN's payment/settlement currency rules (seed 002); raise CurrencyError.

    - the payment currency is one the AlipayCN wallet supports;
    - the settlement currency is supported and is never CNY;
    - a non-CNY payment settles in the same currency;
    - a CNY payment settles in a non-CNY currency (guaranteed by the rule above).
    """
    if payment not in CN_PAYMENT_CURRENCIES:
        raise CurrencyError(
            f"payment currency {payment!r} is not supported by AlipayCN: use one of "
            + ", ".join(sorted(CN_PAYMENT_CURRENCIES)))
    if settlement == "CNY":
        raise CurrencyError("settlement currency cannot be CNY: settle in your contract's currency, e.g. USD")
    if settlement not in CN_SETTLEMENT_CURRENCIES:
        raise CurrencyError(
            f"settlement currency {settlement!r} is not supported by AlipayCN: use one of "
            + ", ".join(sorted(CN_SETTLEMENT_CURRENCIES)))
    if payment != "CNY" and settlement != payment:
        raise CurrencyError(
            f"a {payment} payment must settle in {payment}, not {settlement}")
