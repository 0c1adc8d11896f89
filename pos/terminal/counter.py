"""The keypad's state machine: its modes, what each key does in each mode, and the shared counter state.

One keypad serves the cashier (amounts, cancel) and the manager (PIN,
refund, reprint, reports). `KEY_TABLE` says, for each mode, which action a
key runs; the flows (pos/terminal/cashier.py, pos/terminal/manager.py)
provide the actions by name. A key with no entry in its mode does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from devices.keypad import Key
from pos.core.records import SaleRecord
from pos.journal.till import TillSale

__all__ = ["Mode", "Counter", "DIGIT", "ANY", "KEY_TABLE", "Action", "action_for", "check_actions"]


class Mode(StrEnum):
    IDLE = "IDLE"                   # ready; digits start an amount
    AMOUNT = "AMOUNT"               # the cashier is typing an amount
    AWAIT_SCAN = "AWAIT_SCAN"       # an amount is set; waiting for the customer's code
    SALE = "SALE"                   # a payment is in progress
    RESULT = "RESULT"               # the outcome is on the display; any key returns to IDLE
    PIN = "PIN"                     # the manager types the PIN
    REFUND_SELECT = "REFUND_SELECT"  # scan the receipt or type the sale number
    REFUND_AMOUNT = "REFUND_AMOUNT"  # type the refund amount (ENTER alone = all that is left)
    REPRINT_SELECT = "REPRINT_SELECT"
    REPORT_SELECT = "REPORT_SELECT"  # 1 = X report, 2 = Z report
    RESOLVE = "RESOLVE"              # a PAID_LATE sale: 1 = refund it now, 2 = the goods were given


DIGIT = "digit"   # any of 0-9 (a row keyed by the Key itself, e.g. Key.DIGIT_1, wins)
ANY = "any"       # any key not named in the mode's row

Action = Callable[[Key], None]

# The manager's keys open the PIN prompt from wherever the cashier is not mid-sale.
_MANAGER_KEYS: dict[Key | str, str] = {Key.REFUND: "manager.open", Key.REPRINT: "manager.open",
                                      Key.REPORT: "manager.open"}
_AMOUNT_START: dict[Key | str, str] = {DIGIT: "amount.start", Key.DOT: "amount.start"}

KEY_TABLE: dict[Mode, dict[Key | str, str]] = {
    Mode.IDLE: {**_MANAGER_KEYS, **_AMOUNT_START},
    Mode.RESULT: {**_MANAGER_KEYS, **_AMOUNT_START, ANY: "ready"},
    Mode.AMOUNT: {**_MANAGER_KEYS, DIGIT: "amount.type", Key.DOT: "amount.type", Key.CLEAR: "amount.clear",
                  Key.CANCEL: "reset", Key.ENTER: "amount.enter", Key.QR: "amount.qr"},
    # QR: the customer scans the terminal's code (a printed slip) instead of showing theirs.
    Mode.AWAIT_SCAN: {Key.CANCEL: "scan.cancel", Key.QR: "scan.qr"},
    Mode.SALE: {Key.CANCEL: "sale.abort"},
    Mode.PIN: {Key.CANCEL: "reset", Key.CLEAR: "pin.clear", DIGIT: "pin.type", Key.ENTER: "pin.enter"},
    Mode.REFUND_SELECT: {Key.CANCEL: "reset", Key.CLEAR: "select.clear", DIGIT: "select.type",
                         Key.ENTER: "select.enter"},
    Mode.REPRINT_SELECT: {Key.CANCEL: "reset", Key.CLEAR: "select.clear", DIGIT: "select.type",
                          Key.ENTER: "select.enter"},
    Mode.REFUND_AMOUNT: {Key.CANCEL: "reset", Key.CLEAR: "refund.clear", DIGIT: "refund.type",
                         Key.DOT: "refund.type", Key.ENTER: "refund.enter"},
    Mode.REPORT_SELECT: {Key.CANCEL: "reset", Key.DIGIT_1: "report.x", Key.DIGIT_2: "report.z"},
    Mode.RESOLVE: {Key.CANCEL: "reset", Key.DIGIT_1: "resolve.refund", Key.DIGIT_2: "resolve.goods_given"},
}


def action_for(mode: Mode, key: Key) -> str | None:
    """The action a key runs in a mode: its own entry, else the digits' entry, else the catch-all."""
    row = KEY_TABLE[mode]
    if key in row:
        return row[key]
    if key.char is not None and key.char.isdigit() and DIGIT in row:
        return row[DIGIT]
    return row.get(ANY)


def check_actions(actions: Mapping[str, Action]) -> None:
    """Every action the table names is provided (checked once, when the terminal is built)."""
    missing = {name for row in KEY_TABLE.values() for name in row.values()} - set(actions)
    if missing:
        raise RuntimeError(f"keypad actions without a handler: {sorted(missing)}")


@dataclass
class Counter:
    """What the keypad and the displays are busy with; shared by the cashier's and the manager's flows."""

    mode: Mode = Mode.IDLE
    buffer: str = ""                       # digits typed so far (amount, PIN, sale number)
    pending: TillSale | None = None        # the sale waiting for the customer's code
    current_sale: int | None = None        # the journal sale being paid
    current_till: str | None = None        # the till sale it was started for
    # Whose texts may reach the displays: a sale, or a refund the manager started.
    # Cleared as soon as the cashier moves on (types an amount, opens the manager
    # menu), so a late text of a finished sale never covers what is done now.
    shown_sale: int | None = None
    shown_refund: int | None = None
    after_pin: Mode | None = None          # where the manager's PIN leads
    refund_sale: SaleRecord | None = None  # the sale the manager is refunding (or settling, in RESOLVE)

    def show_nothing(self) -> None:
        self.shown_sale = self.shown_refund = None
