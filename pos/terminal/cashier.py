"""The cashier's flow: an amount (typed, or sent by the till), the customer's code, the outcome.

    amount (keypad or till) -> "Scan customer code" -> scan -> pay -> outcome
    amount -> QR key (or the till's "method": "qr") -> pay asks for the wallet's code ->
        "scan to pay" slip -> the customer scans it -> queries / notification -> outcome

One sale at a time (design rule 4): a scan or a till request while a sale is
open is refused with a message, not queued. Money movement is the engine's
(via pos/payments/runner.py); this flow decides what the keys and the
scanner do and which outcome texts reach the displays: those of the sale
being served or of the refund the manager started, never a late text of an
older item over what the cashier is doing now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from devices.keypad import Key
from devices.scanner import ReceiptScan, Rejected, Scan, ScannerBack, ScannerEvent, ScannerLost
from pos.config import Config
from pos.core.engine import Finished, Show, ShowQr
from pos.core.errors import UserError
from pos.core.money import AmountError, CurrencyError, Money, parse_amount
from pos.core.records import SALE_ACTIVE, SALE_SETTLED_FOR_CASHIER
from pos.core.redact import mask_code
from pos.core.rules import Refusal, check_sale_amount
from pos.gateway.client import GatewayClient
from pos.journal.db import JournalError
from pos.journal.journal import Journal
from pos.journal.till import TillLinks, TillSale
from pos.payments.runner import PaymentRunner, SaleRefused
from pos.terminal.counter import Action, Counter, Mode
from pos.terminal.displays import DeviceBoard, DeviceHealth, Displays

__all__ = ["CashierFlow", "FINAL_FOR_TILL"]

log = logging.getLogger("pos.terminal.cashier")

FINAL_FOR_TILL = {s.value for s in SALE_SETTLED_FOR_CASHIER}
_AMOUNT_DIGITS = 12
# How a refused scan is told: the runner's reason keys that are not display keys themselves.
_REFUSED_SCAN_SHOWN = {"recovering": "not_ready"}


class CashierFlow:
    def __init__(self, *, cfg: Config, journal: Journal, links: TillLinks, payments: PaymentRunner,
                 displays: Displays, devices: DeviceBoard, counter: Counter, changed: threading.Condition,
                 clock: Callable[[], float], gateway: GatewayClient | None) -> None:
        self._cfg = cfg
        self._journal = journal
        self._links = links
        self._payments = payments
        self._displays = displays
        self._devices = devices
        self._counter = counter
        self._changed = changed
        self._clock = clock
        self._gateway = gateway
        # Why sales are closed, or None: `[merchant] registration_required` until the registration is
        # approved (pos.backoffice.registration.sales_refusal; set by the terminal).
        self.sales_refusal: Callable[[], str | None] = lambda: None

    def actions(self) -> dict[str, Action]:
        return {"amount.start": self._start_amount, "amount.type": self._type_amount,
                "amount.clear": self._clear_amount, "amount.enter": self._enter_amount,
                "reset": self.reset, "ready": self._ready, "scan.cancel": self._cancel_key,
                "sale.abort": self._abort, "scan.qr": self._qr_key, "amount.qr": self._amount_qr}

    # ------------------------------------------------------------ state

    def sync_mode(self) -> None:
        # The outcome is committed before its notification arrives: a key or a
        # scan in between must already see the sale as over.
        if self._counter.mode == Mode.SALE and not self._payments.busy():
            self._counter.mode = Mode.RESULT

    def busy(self) -> bool:
        # The engine is the truth about a sale in progress; the UI mode may lag
        # it by one notification (the outcome is committed before it is shown).
        return self._counter.mode == Mode.AWAIT_SCAN or self._payments.busy()

    def adopt_recovered_sale(self) -> None:
        """On start: a sale left in progress by the last run is the one being served, so its
        outcome (settled by recovery) reaches the displays."""
        active = [s for s in self._journal.list_sales(open_only=True) if s.state in SALE_ACTIVE]
        if not active:
            self._displays.show("ready")
            return
        sale = active[-1]
        c = self._counter
        c.mode, c.current_sale, c.shown_sale = Mode.SALE, sale.sale_id, sale.sale_id
        self._displays.show("checking", amount=sale.amount.display())
        log.info("serving the sale left open by the last run", extra={"kv": {"sale_id": sale.sale_id}})

    def reset(self, _key: Key | None = None) -> None:
        c = self._counter
        c.mode, c.buffer, c.after_pin, c.refund_sale = Mode.IDLE, "", None, None
        self._displays.show("ready")

    def _ready(self, _key: Key) -> None:
        self._counter.mode = Mode.IDLE
        self._displays.show("ready")

    def journal_failed(self, exc: BaseException) -> None:
        self._devices["journal"] = DeviceHealth(False, str(exc))
        log.error("journal write failed: no sale can start", extra={"kv": {"error": str(exc)}})
        self._displays.show("journal_error")

    # ------------------------------------------------------------ amounts

    def check_amount(self, amount: Money) -> Refusal | None:
        """[payment] max_amount, as the runner will check it (in the sale's own currency)."""
        try:
            limit: Money | None = parse_amount(self._cfg.payment.max_amount, amount.currency)
        except AmountError:
            limit = None
        return check_sale_amount(amount, limit)

    def _show_amount(self) -> None:
        line1, line2 = self._displays.cashier_lines("enter_amount")
        self._displays.show_cashier(line1 + " " + self._counter.buffer, line2)

    def _start_amount(self, key: Key) -> None:
        c = self._counter
        c.mode, c.buffer = Mode.AMOUNT, key.value
        c.show_nothing()
        self._show_amount()

    def _type_amount(self, key: Key) -> None:
        if len(self._counter.buffer) < _AMOUNT_DIGITS:
            self._counter.buffer += key.value
            self._show_amount()

    def _clear_amount(self, _key: Key) -> None:
        self._counter.buffer = ""
        self._show_amount()

    def _enter_amount(self, _key: Key) -> None:
        c = self._counter
        if not self._devices["journal"].ok:
            self._displays.show("journal_error")
            return
        why = self.sales_refusal()
        if why is not None:
            log.info("sale refused", extra={"kv": {"reason": why}})
            self._displays.show("registration_required")
            c.buffer = ""
            return
        try:
            amount = parse_amount(c.buffer, self._cfg.terminal.currency)
        except (AmountError, CurrencyError):
            self._displays.show("amount_invalid")
            c.buffer = ""
            return
        refusal = self.check_amount(amount)
        if refusal is not None:
            if refusal.reason == "over_max_amount":
                limit = parse_amount(self._cfg.payment.max_amount, amount.currency)
                self._displays.show("amount_too_large", amount=limit.display())   # the most it takes
            else:
                self._displays.show("amount_invalid")
            c.buffer = ""
            return
        try:
            self.await_scan(amount, "", "")
        except JournalError as exc:
            self.journal_failed(exc)
            c.mode, c.buffer = Mode.IDLE, ""

    def await_scan(self, amount: Money, reference: str, title: str, goods: str = "") -> TillSale:
        """A new sale waits for the customer's code (keypad and till alike); from here the
        displays belong to it, and late texts of the last sale are dropped. `goods`: the till's
        line items (checked already, pos/core/goods.py), kept with it and sent with its pay."""
        till = self._links.new_sale(amount, reference, title, self._clock(), goods)
        c = self._counter
        c.pending, c.current_sale, c.mode, c.buffer = till, None, Mode.AWAIT_SCAN, ""
        c.show_nothing()
        self._displays.show("scan_code", amount=amount.display())
        log.info("sale waiting for scan", extra={"kv": {"till_id": till.till_id, "amount": amount.receipt()}})
        self._changed.notify_all()
        return till

    def cancel_pending(self) -> None:
        c = self._counter
        if c.pending is not None:
            self._links.cancel(c.pending.till_id, self._clock())
            log.info("sale cancelled before scan", extra={"kv": {"till_id": c.pending.till_id}})
        c.pending, c.mode = None, Mode.RESULT
        self._displays.show("cancelled")
        self._changed.notify_all()

    def _cancel_key(self, _key: Key) -> None:
        self.cancel_pending()

    def _amount_qr(self, key: Key) -> None:
        """QR typed right after the amount: the amount is entered, then the QR sale starts."""
        self._enter_amount(key)
        if self._counter.mode == Mode.AWAIT_SCAN:
            self._qr_key(key)

    def _qr_key(self, _key: Key) -> None:
        self.start_qr_sale()

    def start_qr_sale(self) -> int | None:
        """The sale waiting for a scan is paid by the terminal's code instead (merchant-presented QR):
        its pay asks the gateway for the code, printed on a "scan to pay" slip. The sale id, or None
        when it was refused (shown on the displays; the sale still waits for a scan)."""
        return self._start_payment("", self._clock(), qr=True)

    def _abort(self, _key: Key) -> None:
        if self._counter.current_sale is not None:
            self._payments.abort(self._counter.current_sale)

    # ------------------------------------------------------------ scanner

    def on_scanner_event(self, event: ScannerEvent, on_receipt: Callable[[str], None]) -> None:
        """A scanner event; a receipt scanned while the manager selects a sale goes to `on_receipt`."""
        self.sync_mode()
        if isinstance(event, ScannerLost):
            self._devices["scanner"] = DeviceHealth(False, event.reason)
            self._displays.show("scanner_lost")
        elif isinstance(event, ScannerBack):
            self._devices["scanner"] = DeviceHealth()
            self._displays.show("scanner_back")
        elif isinstance(event, Rejected):
            log.info("scan refused", extra={"kv": {"reason": event.reason}})
            self._displays.show(event.message_key)
        elif isinstance(event, ReceiptScan):
            if self._counter.mode in (Mode.REFUND_SELECT, Mode.REPRINT_SELECT):
                on_receipt(event.merchant_trans_id)
            else:
                self._displays.show("busy" if self.busy() else "ready")
        elif isinstance(event, Scan):
            self._on_payment_code(event.code, self._clock())

    def _on_payment_code(self, code: str, scanned_at: float) -> None:
        c = self._counter
        if c.mode == Mode.SALE or (c.mode != Mode.AWAIT_SCAN and self.busy()):
            log.info("scan refused: sale open", extra={"kv": {"code": mask_code(code)}})
            self._displays.show("busy")
            return
        if c.mode != Mode.AWAIT_SCAN or c.pending is None:
            self._displays.show("enter_amount")
            return
        self._start_payment(code, scanned_at)

    def _start_payment(self, code: str, scanned_at: float, *, qr: bool = False) -> int | None:
        """The sale waiting for a scan starts paying (AWAIT_SCAN with a pending sale); its id, or None."""
        c = self._counter
        pending = c.pending
        if c.mode != Mode.AWAIT_SCAN or pending is None:
            return None
        if not self._devices["journal"].ok:
            # No sale may start until a person has looked at the journal.
            self._displays.show("journal_error")
            return None
        try:
            # The journal commits the sale and its link to this till sale together. The
            # order title is the till's or none: the receipt's Item line shows only a real one
            # (the gateway client names the store on the wire when there is none).
            sale_id = self._payments.start_sale(pending.amount, code, scanned_at,
                                                pending.order_title, pending.reference,
                                                till_id=pending.till_id, goods=pending.goods, qr=qr)
        except SaleRefused as exc:
            log.info("QR sale refused" if qr else "scan refused",
                     extra={"kv": {"reason": str(exc), "code": "QR" if qr else mask_code(code)}})
            key = _REFUSED_SCAN_SHOWN.get(exc.key, exc.key)
            self._displays.show(key if self._displays.has(key) else "scan_invalid",
                                amount=pending.amount.display())
            return None
        except UserError as exc:  # JournalError included
            # The journal could not record the sale: nothing was sent (write before
            # you send), and no sale may start until a person has looked.
            self.journal_failed(exc)
            return None
        c.pending, c.current_sale, c.current_till, c.mode = None, sale_id, pending.till_id, Mode.SALE
        c.shown_sale, c.shown_refund = sale_id, None
        if qr:
            log.info("QR sale started", extra={"kv": {"sale_id": sale_id, "amount": pending.amount.receipt()}})
        self._changed.notify_all()
        return sale_id

    # ------------------------------------------------------------ engine notifications

    def on_show(self, show: Show) -> None:
        c = self._counter
        if show.sale_id is not None or show.refund_id is not None:
            # Only the item being served speaks on the displays; the background
            # corrector's texts about older items go to the log and the manager list.
            mine = ((show.refund_id is not None and show.refund_id == c.shown_refund)
                    or (show.sale_id is not None and show.sale_id == c.shown_sale))
            if not mine:
                log.info("message for another item", extra={"kv": {"key": show.key, "sale_id": show.sale_id,
                                                                   "refund_id": show.refund_id}})
                return
        elif c.mode not in (Mode.IDLE, Mode.RESULT):
            return  # a message about no item never interrupts someone typing
        key = show.key
        if key == "checking" and self._link_down():
            key = "network_down"  # same instruction (no goods yet), and the cashier knows why
        self._displays.show(key, **show.params)

    def on_show_qr(self, show: ShowQr) -> None:
        """A QR sale's code: its whole text where the cashier's display can show it (the console)."""
        if show.sale_id != self._counter.shown_sale:
            return
        self._displays.show_cashier_text("QR", show.qr_text)

    def on_finished(self, finished: Finished) -> None:
        c = self._counter
        if (finished.kind == "sale" and finished.item_id == c.current_sale
                and finished.state in FINAL_FOR_TILL and c.mode == Mode.SALE):
            c.mode = Mode.RESULT

    def _link_down(self) -> bool:
        return self._gateway is not None and self._gateway.health().link_down
