"""The terminal: the cashier's and manager's flows and the till service over one keypad, two displays,
a scanner, a printer and the payment engine.

Who each part serves lives in its own module:

- pos/terminal/counter.py: the keypad's modes and what each key does in each (a table);
- pos/terminal/cashier.py: amounts, the customer's code, and which outcome the displays show;
- pos/terminal/manager.py: PIN, refund, reprint, X/Z reports on the keypad;
- pos/terminal/till_service.py: what the till's HTTP interface calls (pos/till/api.py);
- pos/terminal/business_day.py: the day's reports and its close;
- pos/terminal/receipts.py: receipts built from journal records, into the print queue.

`Terminal` only builds them over shared state and routes the devices' and
the engine's events to them, each under one lock: a key, a scan, an engine
notification and a till request never interleave.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devices.display import Display
from devices.keypad import Key
from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.scanner import ScannerEvent
from pos.backoffice.customs import CustomsRequest
from pos.backoffice.registration import sales_refusal
from pos.config import Config
from pos.core.engine import Alarm, Command, Finished, PrintReceipt, Show, ShowQr
from pos.core.goods import GoodsLine
from pos.core.money import Money
from pos.core.records import Resolution
from pos.gateway.client import GatewayClient
from pos.journal.backoffice import BackOfficeJournal
from pos.journal.journal import Journal
from pos.journal.till import TillLinks
from pos.payments.runner import PaymentRunner
from pos.terminal.business_day import BusinessDay
from pos.terminal.cashier import CashierFlow
from pos.terminal.counter import Action, Counter, Mode, action_for, check_actions
from pos.terminal.customs_desk import CustomsDesk
from pos.terminal.displays import DeviceBoard, DeviceHealth, Displays, new_device_board
from pos.terminal.manager import ManagerFlow
from pos.terminal.pin import PinGuard
from pos.terminal.receipts import Receipts, receipt_for
from pos.terminal.sales import SaleDesk
from pos.terminal.till_service import TillError, TillService

__all__ = ["Terminal", "Mode", "receipt_for"]

log = logging.getLogger("pos.terminal.terminal")


class Terminal:
    """Cashier and manager flows on the devices; the till interface's backend (pos.till.api.TillBackend)."""

    def __init__(self, *, config: Config, journal: Journal, payments: PaymentRunner,
                 cashier_display: Display, customer_display: Display,
                 cashier_catalogue: Catalogue, customer_catalogue: Catalogue,
                 print_queue: PrintQueue | None = None, clock: Callable[[], float] = time.time,
                 pin_state_file: Path | None = None, gateway: GatewayClient | None = None) -> None:
        self.cfg = config
        self.journal = journal
        self.payments = payments
        self.default_currency = config.terminal.currency
        self.devices: DeviceBoard = new_device_board()
        self.cashier_text = cashier_catalogue
        self.customer_text = customer_catalogue
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self.counter = Counter()
        links = TillLinks(journal)
        self._displays = displays = Displays(cashier_display, customer_display, cashier_catalogue,
                                             customer_catalogue, self.devices)
        self.receipts = Receipts(config, journal, print_queue, self.devices, clock)
        if self.receipts.in_outcome_transaction:
            # A PAID sale's or REFUNDED refund's receipt is queued in the transaction of its outcome.
            payments.write_receipts(self.receipts.queue_with_outcome)
        # Receipts owed by a daemon that died between an outcome and its receipt (a version that
        # queued them apart) are looked for once recovery is over: start-up never waits for it.
        self._closing = threading.Event()
        self._owed = threading.Thread(target=self._queue_owed, name="pos-receipts-owed", daemon=True)
        self._owed.start()
        day = BusinessDay(journal, links, self.receipts, ZoneInfo(config.terminal.timezone), clock)
        sales = SaleDesk(config, journal, links, payments)
        self.cashier = CashierFlow(cfg=config, journal=journal, links=links, payments=payments, displays=displays,
                                   devices=self.devices, counter=self.counter, changed=self._changed, clock=clock,
                                   gateway=gateway)
        self.manager = ManagerFlow(
            counter=self.counter, displays=displays, cashier=self.cashier, sales=sales, receipts=self.receipts,
            day=day, pin=PinGuard(config.manager.pin_hash, max_attempts=config.manager.max_attempts,
                                  lockout=config.manager.lockout, state_file=pin_state_file, clock=clock))
        self.till = TillService(cfg=config, journal=journal, links=links, payments=payments, displays=displays,
                                devices=self.devices, counter=self.counter, cashier=self.cashier, sales=sales,
                                day=day, lock=self._lock, changed=self._changed, clock=clock, gateway=gateway)
        self.customs = CustomsDesk(config, journal, gateway)
        if config.merchant.registration_required:
            store = BackOfficeJournal(journal.db, journal.install_id)
            self.cashier.sales_refusal = lambda: sales_refusal(store, required=True)
        self._actions: dict[str, Action] = {**self.cashier.actions(), **self.manager.actions()}
        check_actions(self._actions)
        for till_id, sale_id in links.close_stale(clock()):
            log.warning("till sale linked to its journal sale after a restart",
                        extra={"kv": {"till_id": till_id, "sale_id": sale_id}})
        self.cashier.adopt_recovered_sale()
        self._unsubscribe = payments.subscribe(self.on_payment_command)

    @property
    def mode(self) -> Mode:
        return self.counter.mode

    @property
    def pin(self) -> PinGuard:
        return self.manager.pin

    @property
    def last_alarm(self) -> str | None:
        return self.till.last_alarm

    # ------------------------------------------------------------ devices

    def on_key(self, key: Key) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.cashier.sync_mode()
                action = action_for(self.counter.mode, key)
                if action is not None:
                    self._actions[action](key)
            except Exception:  # a key must never take the terminal down
                log.exception("key handling failed", extra={"kv": {"key": key.name}})
                self.cashier.reset()

    def on_scanner_event(self, event: ScannerEvent) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.cashier.on_scanner_event(event, on_receipt=self.manager.select_sale)
            except Exception:  # a scan must never take the terminal down
                log.exception("scan handling failed")

    def on_printer_status(self, status: str) -> None:
        with self._lock:
            self.devices["printer"] = (DeviceHealth(False, "printer not accepting data") if status == "printer_away"
                                       else DeviceHealth())
            if self.counter.mode in (Mode.IDLE, Mode.RESULT):
                self._displays.show(status)

    # ------------------------------------------------------------ engine

    def on_payment_command(self, command: Command) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if isinstance(command, Show):
                    self.cashier.on_show(command)
                elif isinstance(command, ShowQr):
                    sale = self.journal.get_sale(command.sale_id)
                    if sale is not None:
                        self.receipts.print_qr_slip(sale, command.qr_text)
                    self.cashier.on_show_qr(command)
                    log.info("QR sale code ready", extra={"kv": {"sale_id": command.sale_id, "qr": command.qr_text}})
                elif isinstance(command, PrintReceipt):
                    self.receipts.print_outcome(command.sale_id, command.refund_id)
                elif isinstance(command, Alarm):
                    self.till.last_alarm = command.text
                    log.error("alarm", extra={"kv": {"text": command.text, "sale_id": command.sale_id,
                                                     "refund_id": command.refund_id}})
                elif isinstance(command, Finished):
                    self.cashier.on_finished(command)
                    self._changed.notify_all()
                    # Its receipt was queued with the outcome (queue_with_outcome); the outcome is
                    # on the displays now (the Show came first): print it.
                    self.receipts.wake_printer()
            except Exception:  # a notification must never take the terminal down
                log.exception("payment notification failed")

    # ------------------------------------------------------------ the till interface (TillBackend)

    def create_sale(self, amount: Money, reference: str, order_title: str,
                    method: str = "code", goods: Sequence[GoodsLine] = ()) -> dict[str, Any]:
        return self.till.create_sale(amount, reference, order_title, method, goods)

    def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        return self.till.get_sale(sale_id)

    def wait_sale(self, sale_id: str, timeout: float) -> dict[str, Any] | None:
        return self.till.wait_sale(sale_id, timeout)

    def cancel_sale(self, sale_id: str) -> dict[str, Any]:
        return self.till.cancel_sale(sale_id)

    def resolve(self, sale_id: str, action: Resolution, by: str = "") -> dict[str, Any]:
        return self.till.resolve(sale_id, action, by)

    def refund(self, sale_id: str, amount: Money | None, reason: str,
               idempotency_key: str | None = None) -> dict[str, Any]:
        return self.till.refund(sale_id, amount, reason, idempotency_key)

    def x_report(self) -> dict[str, Any]:
        return self.till.x_report()

    def z_report(self) -> dict[str, Any]:
        return self.till.z_report()

    def health(self) -> dict[str, Any]:
        return self.till.health()

    def raise_alarm(self, text: str) -> None:
        """An alarm from outside the payments (the end-of-day reconciliation): logged, shown in health."""
        with self._lock:
            self.till.last_alarm = text
        log.error("alarm", extra={"kv": {"text": text}})

    def reconciliation(self, day: str) -> dict[str, Any]:
        return self.till.reconciliation(day)

    def _paid_sale_id(self, sale_id: str) -> str:
        view = self.till.get_sale(sale_id)
        if view is None:
            raise TillError(404, "No such sale", f"no sale with id {sale_id!r}")
        if not view["merchantTransId"]:
            raise TillError(409, "Declaration refused", f"sale {sale_id} is {view['state']}, not PAID: only a "
                                                         "paid sale can be declared to customs")
        return str(view["merchantTransId"])

    def declare_customs(self, sale_id: str, request: CustomsRequest) -> tuple[dict[str, Any], bool]:
        # Outside the terminal's lock: the call may take up to the gateway's read timeout.
        return self.customs.declare(self._paid_sale_id(sale_id), request)

    def customs_declarations(self, sale_id: str) -> list[dict[str, Any]]:
        return self.customs.declarations(self._paid_sale_id(sale_id))

    def _queue_owed(self) -> None:
        while not self.payments.wait_recovered(timeout=0.2):
            if self._closing.is_set():
                return
        if not self._closing.is_set():
            self.receipts.queue_missing()

    def close(self) -> None:
        self._unsubscribe()
        if self.receipts.in_outcome_transaction:
            self.payments.write_receipts(None)
        self._closing.set()
        self._owed.join(5.0)
        # Under the lock: a notification being handled on the runner's thread finishes first.
        with self._lock:
            self._closed = True
        self._displays.close()   # outside the lock: a writer may wait out a display's write timeout
