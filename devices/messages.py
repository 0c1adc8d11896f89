"""The message catalogue: every text the cashier or customer sees.

Texts live in `config/messages/<language>.toml` (en, zh-CN), so they can be
translated without touching code and checked by tests to fit the 2x20 display
(CJK characters count two columns, as wcwidth measures them: `char_width`,
`text_width`). Each key has
separate cashier and customer lines; `code.<RESULT_CODE>` entries exist for
every row of pos/data/result_codes.csv. `[receipt]` holds printed labels.

The folder is found next to the repository (`config/messages`), or in
`$POS_MESSAGES_DIR` (the installer copies the folder to /etc/pos/messages).
"""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Catalogue",
    "CatalogueError",
    "DISPLAY_COLUMNS",
    "LANGUAGES",
    "MESSAGE_PARAMS",
    "char_width",
    "messages_dir",
    "text_width",
]

DISPLAY_COLUMNS = 20
LANGUAGES = ("en", "zh-CN")
# The only parameters a message may use: short display strings.
MESSAGE_PARAMS = frozenset({"amount"})
ENV_DIR = "POS_MESSAGES_DIR"

Lines = tuple[str, str]


class CatalogueError(ValueError):
    """A catalogue file is missing or malformed; the message says which and where."""


def messages_dir() -> Path:
    """$POS_MESSAGES_DIR, else config/messages beside the package."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "config" / "messages"


# Columns without wcwidth: printable ASCII and Latin-1 (1), and the blocks Chinese text is written in
# (2: CJK punctuation, kana, the ideographs, Hangul syllables, full-width forms). wcwidth's answer for
# every one of them, alone and in any string of them (tests/test_messages.py checks both); a
# character outside them is measured by wcwidth itself, imported then. wcwidth's package imports its
# grapheme, wrapping and terminal-sequence modules with it (1.2 MB), which a display of Chinese and
# ASCII never needs.
_NARROW = ((0x20, 0x7E), (0xA0, 0xFF))
_WIDE = ((0x3000, 0x3029), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
         (0xAC00, 0xD7A3), (0xFF01, 0xFF60), (0xFFE0, 0xFFE6))


def _known_width(ch: str) -> int:
    """1 or 2 for a character of the ranges above, 0 for any other."""
    code = ord(ch)
    if code <= 0xFF:
        return 1 if 0x20 <= code <= 0x7E or code >= 0xA0 else 0
    for low, high in _WIDE:
        if code < low:
            return 0
        if code <= high:
            return 2
    return 0


def char_width(ch: str) -> int:
    """wcwidth's columns for one character: 1 or 2; 0 for a combining mark, -1 for a control character."""
    width = _known_width(ch)
    if width:
        return width
    from wcwidth import wcwidth  # the rare character outside the ranges above

    return int(wcwidth(ch))


def text_width(text: str) -> int:
    """Display columns of text (CJK = 2); a non-printable character counts as 1."""
    if text.isascii() and text.isprintable():
        return len(text)
    width = 0
    for ch in text:
        known = _known_width(ch)
        if not known:
            return _wcwidth_text_width(text)
        width += known
    return width


def _wcwidth_text_width(text: str) -> int:
    """text_width by wcwidth itself (grapheme clusters: emoji sequences, combining marks, ...)."""
    from wcwidth import wcswidth

    width = int(wcswidth(text))
    if width >= 0:
        return width
    return sum(max(int(wcswidth(ch)), 1) for ch in text)


@dataclass(frozen=True)
class _Entry:
    cashier: Lines
    customer: Lines


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _lines(path: Path, key: str, side: str, value: Any) -> Lines:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, str) for v in value)):
        raise CatalogueError(f"{path}: [{key}] {side}: expected two lines of text, e.g. [\"Ready\", \"\"]")
    for line in value:
        unknown = _fields(line) - MESSAGE_PARAMS
        if unknown:
            raise CatalogueError(
                f"{path}: [{key}] {side}: unknown parameter {sorted(unknown)[0]!r}; "
                f"allowed: {', '.join(sorted(MESSAGE_PARAMS))}")
    return (value[0], value[1])


class Catalogue:
    """Display texts of one language."""

    def __init__(self, language: str, entries: dict[str, _Entry], receipt: dict[str, str]) -> None:
        self.language = language
        self._entries = entries
        self._receipt = receipt

    @classmethod
    def load(cls, language: str, directory: Path | None = None) -> Catalogue:
        if language not in LANGUAGES:
            raise CatalogueError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
        path = (directory or messages_dir()) / f"{language}.toml"
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise CatalogueError(
                f"{path}: message catalogue not found: set {ENV_DIR} to the folder holding "
                f"{', '.join(lang + '.toml' for lang in LANGUAGES)}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CatalogueError(f"{path}: not a valid UTF-8 TOML file: {exc}") from None
        entries: dict[str, _Entry] = {}
        receipt: dict[str, str] = {}

        def add(key: str, table: Any) -> None:
            if not isinstance(table, dict) or set(table) != {"cashier", "customer"}:
                raise CatalogueError(f"{path}: [{key}]: expected exactly 'cashier' and 'customer' lines")
            entries[key] = _Entry(_lines(path, key, "cashier", table["cashier"]),
                                  _lines(path, key, "customer", table["customer"]))

        for key, table in data.items():
            if key == "receipt":
                for label, text in table.items():
                    if not isinstance(text, str):
                        raise CatalogueError(f"{path}: [receipt] {label}: expected text in quotes")
                    receipt[label] = text
            elif key in ("code", "refusal"):   # [code.<RESULT_CODE>], [refusal.<reason>]
                for code, sub in table.items():
                    add(f"{key}.{code}", sub)
            elif key == "qr":   # [qr.code.<RESULT_CODE>]: a QR sale's own text for a code
                codes = table.get("code") if isinstance(table, dict) and set(table) == {"code"} else None
                if not isinstance(codes, dict):
                    raise CatalogueError(f"{path}: [qr]: expected only [qr.code.<RESULT_CODE>] tables")
                for code, sub in codes.items():
                    add(f"qr.code.{code}", sub)
            else:
                add(key, table)
        return cls(language, entries, receipt)

    def keys(self) -> frozenset[str]:
        return frozenset(self._entries)

    def receipt_keys(self) -> frozenset[str]:
        return frozenset(self._receipt)

    def has(self, key: str) -> bool:
        return key in self._entries

    def _entry(self, key: str) -> _Entry:
        try:
            return self._entries[key]
        except KeyError:
            # A QR sale's own text for a result code (qr.code.*) where there is one,
            # else the code's general text.
            if key.startswith("qr.code."):
                return self._entry(key[len("qr."):])
            # A result code the table does not know yet is a generic decline:
            # the engine only asks for code.* texts on a final F answer.
            if key.startswith("code.") and "declined" in self._entries:
                return self._entries["declined"]
            raise KeyError(f"no message {key!r} in the {self.language} catalogue") from None

    @staticmethod
    def _format(lines: Lines, params: dict[str, str]) -> Lines:
        return (lines[0].format_map(params), lines[1].format_map(params))

    def cashier(self, key: str, **params: str) -> Lines:
        """The cashier's two lines for key, with {amount} filled in."""
        return self._format(self._entry(key).cashier, params)

    def customer(self, key: str, **params: str) -> Lines:
        """The customer's two lines for key, with {amount} filled in."""
        return self._format(self._entry(key).customer, params)

    def receipt(self, label: str) -> str:
        """A printed receipt label such as 'amount' or 'status_paid'."""
        try:
            return self._receipt[label]
        except KeyError:
            raise KeyError(f"no receipt label {label!r} in the {self.language} catalogue") from None
