"""The manager's flows on the keypad: PIN, refund, reprint, X and Z reports, late charges.

REFUND, REPRINT and REPORT ask for the manager's PIN first (pos/terminal/pin.py
locks the menu after wrong tries). A sale is chosen by scanning its receipt
or typing its number; a refund's outcome is shown on the displays when the
engine reports it, whichever sale it belongs to. A sale chosen under REFUND
that was charged after the cashier said "No goods" (PAID_LATE) offers
1 = refund it now, 2 = the goods were given.
"""

from __future__ import annotations

import logging

from devices.keypad import Key
from pos.core.money import AmountError, CurrencyError, parse_amount
from pos.core.records import Resolution, SaleRecord, SaleState
from pos.core.reports import Report
from pos.core.rules import Refusal
from pos.terminal.business_day import BusinessDay
from pos.terminal.cashier import CashierFlow
from pos.terminal.counter import Action, Counter, Mode
from pos.terminal.displays import Displays
from pos.terminal.pin import PinGuard
from pos.terminal.receipts import Receipts
from pos.terminal.sales import SaleDesk
from pos.terminal.till_service import refusal_title

__all__ = ["ManagerFlow"]

log = logging.getLogger("pos.terminal.manager")

_MENU_OF_KEY = {Key.REFUND: Mode.REFUND_SELECT, Key.REPRINT: Mode.REPRINT_SELECT, Key.REPORT: Mode.REPORT_SELECT}
_PROMPT_OF_MENU = {Mode.REFUND_SELECT: "refund_scan", Mode.REPRINT_SELECT: "refund_scan",
                   Mode.REPORT_SELECT: "report_menu"}
_PIN_DIGITS, _SALE_DIGITS, _AMOUNT_DIGITS = 12, 10, 12


class ManagerFlow:
    def __init__(self, *, counter: Counter, displays: Displays, pin: PinGuard, cashier: CashierFlow,
                 sales: SaleDesk, receipts: Receipts, day: BusinessDay) -> None:
        self._counter = counter
        self._displays = displays
        self.pin = pin
        self._cashier = cashier
        self._sales = sales
        self._receipts = receipts
        self._day = day

    def actions(self) -> dict[str, Action]:
        return {"manager.open": self._open, "pin.clear": self._clear_pin, "pin.type": self._type_pin,
                "pin.enter": self._enter_pin, "select.clear": self._clear_select, "select.type": self._type_select,
                "select.enter": self._enter_select, "refund.clear": self._clear_refund,
                "refund.type": self._type_refund, "refund.enter": self._enter_refund,
                "report.x": self._x_report, "report.z": self._z_report,
                "resolve.refund": self._resolve_refund, "resolve.goods_given": self._resolve_goods_given}

    # ------------------------------------------------------------ PIN

    def _open(self, key: Key) -> None:
        c = self._counter
        c.show_nothing()
        if not self.pin.enabled:
            self._displays.show_cashier("Manager menu off", "Set PIN: pos pin set")
            c.mode = Mode.RESULT
            return
        if self.pin.locked_for() > 0:
            self._displays.show("pin_locked")
            c.mode = Mode.RESULT
            return
        c.mode, c.buffer, c.after_pin = Mode.PIN, "", _MENU_OF_KEY[key]
        self._displays.show("pin_prompt")

    def _clear_pin(self, _key: Key) -> None:
        self._counter.buffer = ""
        self._displays.show("pin_prompt")

    def _type_pin(self, key: Key) -> None:
        c = self._counter
        if len(c.buffer) < _PIN_DIGITS:
            c.buffer += key.value
            self._displays.show_cashier(self._displays.cashier_lines("pin_prompt")[0], "*" * len(c.buffer))

    def _enter_pin(self, _key: Key) -> None:
        c = self._counter
        result = self.pin.check(c.buffer)
        c.buffer = ""
        if result.ok:
            c.mode = c.after_pin or Mode.IDLE
            log.info("manager menu opened", extra={"kv": {"action": c.mode.value}})
            self._displays.show(_PROMPT_OF_MENU.get(c.mode, "manager_menu"))
        elif result.locked:
            log.warning("manager menu locked", extra={"kv": {"seconds": result.locked_for}})
            c.mode = Mode.RESULT
            self._displays.show("pin_locked")
        else:
            self._displays.show("pin_wrong")

    # ------------------------------------------------------------ choosing a sale

    def _clear_select(self, _key: Key) -> None:
        self._counter.buffer = ""

    def _type_select(self, key: Key) -> None:
        c = self._counter
        if len(c.buffer) < _SALE_DIGITS:
            c.buffer += key.value
            self._displays.show_cashier("Sale number:", c.buffer)

    def _enter_select(self, _key: Key) -> None:
        c = self._counter
        if c.buffer:
            self.select_sale(c.buffer)
            c.buffer = ""

    def select_sale(self, key: str) -> None:
        """A sale chosen by its receipt (scanned) or its number (typed) for a refund or a reprint."""
        c = self._counter
        sale = self._sales.keyed(key) if key.isascii() and key.isdigit() else None
        sale = sale or self._sales.find(key)
        if sale is None:
            self._displays.show_cashier("No such sale", "Scan receipt again")
            return
        if c.mode == Mode.REPRINT_SELECT:
            if self._receipts.queue is None:
                self._displays.show_cashier("No printer", "[printer] kind none")
                return
            self._receipts.reprint(sale)
            c.mode = Mode.RESULT
            self._displays.show("report_printed")
            return
        if sale.state == SaleState.PAID_LATE:
            # Charged after "No goods": the manager refunds it now or records the goods were given.
            c.refund_sale, c.mode, c.buffer = sale, Mode.RESOLVE, ""
            self._displays.show("resolve_menu")
            return
        if sale.state != SaleState.PAID:
            self._displays.show_cashier("Sale not paid", "Nothing to refund")
            return
        c.refund_sale, c.mode, c.buffer = sale, Mode.REFUND_AMOUNT, ""
        self._displays.show("refund_amount", amount=self._sales.left(sale).display())

    # ------------------------------------------------------------ refund amount

    def _clear_refund(self, _key: Key) -> None:
        c = self._counter
        c.buffer = ""
        if c.refund_sale is not None:
            self._displays.show("refund_amount", amount=self._sales.left(c.refund_sale).display())

    def _type_refund(self, key: Key) -> None:
        c = self._counter
        if len(c.buffer) < _AMOUNT_DIGITS:
            c.buffer += key.value
            self._displays.show_cashier("Refund amount:", c.buffer)

    def _enter_refund(self, _key: Key) -> None:
        c = self._counter
        sale = c.refund_sale
        if sale is None:
            self._cashier.reset()
            return
        try:
            amount = parse_amount(c.buffer, sale.amount.currency) if c.buffer else None
        except (AmountError, CurrencyError):
            self._displays.show("amount_invalid")
            c.buffer = ""
            return
        outcome = self._sales.refund(sale, amount, "refund at the terminal")
        if isinstance(outcome, Refusal):
            log.info("refund refused", extra={"kv": {"reason": outcome.message}})
            self._show_refusal(sale, outcome)
            c.buffer = ""
            return
        # The displays now belong to this refund: its outcome is shown when the engine reports it.
        c.mode, c.refund_sale, c.buffer = Mode.RESULT, None, ""
        c.shown_sale, c.shown_refund = None, outcome
        self._displays.show("processing")

    def _show_refusal(self, sale: SaleRecord, refusal: Refusal) -> None:
        """Every refusal in 2x20 with the amount that matters (the catalogue's refusal.<reason>)."""
        key = f"refusal.{refusal.reason}"
        if not self._displays.has(key):
            self._displays.show_cashier("Refund refused", refusal_title(refusal)[:20])
            return
        limit = self._sales.refund_limit(sale.amount.currency)
        amount = limit if refusal.reason == "over_refund_limit" and limit is not None else self._sales.left(sale)
        self._displays.show(key, amount=amount.display())

    # ------------------------------------------------------------ a late charge (PAID_LATE)

    def _resolve_refund(self, _key: Key) -> None:
        self._resolve("refund")

    def _resolve_goods_given(self, _key: Key) -> None:
        self._resolve("goods_given")

    def _resolve(self, action: Resolution) -> None:
        c = self._counter
        sale = c.refund_sale
        if sale is None:
            self._cashier.reset()
            return
        # The displays now belong to this sale: "refunding"/"refunded" or "paid" reach both.
        c.mode, c.refund_sale, c.buffer = Mode.RESULT, None, ""
        c.shown_sale, c.shown_refund = sale.sale_id, None
        outcome = self._sales.resolve(sale, action, "the keypad (manager PIN)")
        if isinstance(outcome, Refusal):
            log.info("late charge not settled", extra={"kv": {"reason": outcome.message}})
            c.shown_sale = None
            line = {"not_paid_late": "Not paid late", "no_acquirement_id": "No Alipay ID: call"}.get(
                outcome.reason, "Try again later")
            self._displays.show_cashier("Cannot settle sale", line)

    # ------------------------------------------------------------ reports

    def _x_report(self, _key: Key) -> None:
        self._show_report(self._day.x_report(print_it=True))

    def _z_report(self, _key: Key) -> None:
        self._show_report(self._day.close())

    def _show_report(self, report: Report) -> None:
        self._counter.mode = Mode.RESULT
        self._displays.show("report_printed")
        # The paper has the detail; the display shows the bottom line of each currency.
        nets = [f"Net {t.net.display()}" for _, t in sorted(report.totals.items())]
        if nets:
            self._displays.show_cashier(self._displays.cashier_lines("report_printed")[0], nets[0])
