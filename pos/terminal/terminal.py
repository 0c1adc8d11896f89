"""The terminal: cashier and manager flows over the devices and the payment engine.

What each key does and what each display says lives here; money movement
lives in the engine (pos/engine.py via pos/runner.py). The terminal is also
the `TerminalService` behind the till interface (pos/ecr.py), so a sale
started by the till and one typed on the keypad follow the same path:

    amount (keypad or till) -> "Scan customer code" -> scan -> pay -> outcome

One sale at a time (design rule 4): a scan or a till request while a sale is
open is refused with a message, not queued.

Till sales get an id before the customer's code is scanned, so they are kept
in a small `till_sales` table beside the journal's own tables (same SQLite
file, WAL, synchronous=FULL); once scanned, the row points at the journal's
sale, which is the truth from then on.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devices.display import Display
from devices.keypad import Key
from devices.messages import Catalogue
from devices.receipt import ReceiptData, ReceiptKind, RefundLine
from devices.scanner import ReceiptScan, Rejected, Scan, ScannerBack, ScannerLost
from pos.config import Config
from pos.till.api import ServiceError
from pos.core.engine import Alarm, Command, Finished, PrintReceipt, Show
from pos.core.errors import UserError
from pos.gateway.client import GatewayClient, GatewayHealth
from pos.gateway.offline.codes import result_codes
from pos.journal.journal import Journal
from pos.core.redact import mask_code
from pos.core.money import AmountError, CurrencyError, Money, parse_amount, validate_cn_currencies
from pos.terminal.pin import PinGuard
from pos.core.records import SALE_SETTLED_FOR_CASHIER, RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.reports import build_report, report_rows
from pos.payments.runner import PaymentService, RefundRefused, SaleRefused

__all__ = ["Terminal", "Mode", "receipt_for"]

log = logging.getLogger("pos.terminal.terminal")

TILL_SCHEMA = """
CREATE TABLE IF NOT EXISTS till_sales (
    till_id      TEXT PRIMARY KEY,
    amount_minor INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    reference    TEXT NOT NULL,
    order_title  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    state        TEXT NOT NULL,           -- CREATED or CANCELLED until scanned
    sale_id      INTEGER UNIQUE           -- the journal's sale once the code is scanned
);
CREATE TABLE IF NOT EXISTS till_refunds (
    idem_key     TEXT PRIMARY KEY,        -- the till's Idempotency-Key
    sale_id      INTEGER NOT NULL,
    amount_minor INTEGER,                 -- NULL: "all that is left"
    created_at   REAL NOT NULL,
    refund_id    INTEGER UNIQUE           -- the journal's refund once created
);
CREATE TABLE IF NOT EXISTS business_days (
    day        INTEGER PRIMARY KEY,
    opened_at  REAL NOT NULL,
    closed_at  REAL
);
"""

# Which catalogue entry tells the cashier about a sale in each state.
STATE_MESSAGE = {
    "CREATED": "scan_code", "PAYING": "processing", "QUERYING": "checking", "CANCELLING": "cancelling",
    "PAID": "paid", "DECLINED": "declined", "CANCELLED": "cancelled", "MANUAL_REVIEW": "manual_review",
}
RECEIPT_STATUS = {
    "PAID": "status_paid", "DECLINED": "status_declined", "CANCELLED": "status_cancelled",
    "MANUAL_REVIEW": "status_manual_review", "REFUNDED": "status_refunded",
    "REFUND_PENDING": "status_refund_pending", "REFUND_DECLINED": "status_refund_declined",
}
FINAL_FOR_TILL = {s.value for s in SALE_SETTLED_FOR_CASHIER}


def receipt_for(cfg: Config, journal: Journal, sale: SaleRecord, refund: RefundRecord | None = None, *,
                reprint: bool = False) -> ReceiptData:
    """A receipt built from the journal's record of a sale (and one of its refunds), never from free text."""
    tz = ZoneInfo(cfg.terminal.timezone)

    def local(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, tz)

    refunds = tuple(
        RefundLine(r.merchant_refund_id, r.amount, RECEIPT_STATUS.get(r.state.value, "status_refund_pending"),
                   local(r.updated_at))
        for r in journal.list_refunds(sale_id=sale.sale_id)
        if r.state != RefundState.REFUND_DECLINED or (refund and r.refund_id == refund.refund_id))
    term = cfg.terminal
    return ReceiptData(
        kind=ReceiptKind.REFUND if refund else ReceiptKind.SALE,
        merchant_name=term.merchant_name, store_name=term.store_name, terminal_id=term.terminal_id,
        when=local(refund.updated_at if refund else sale.updated_at),
        amount=refund.amount if refund else sale.amount,
        status_key=RECEIPT_STATUS.get((refund.state if refund else sale.state).value, "status_declined"),
        merchant_trans_id=sale.merchant_trans_id, acquirement_id=sale.acquirement_id or "",
        code_last4=sale.code_masked[-4:] if sale.code_masked else "", order_title=sale.order_title,
        refunds=refunds, reprint=reprint)


class Mode(str, Enum):
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


@dataclass
class DeviceHealth:
    ok: bool = True
    last_error: str | None = None


class Terminal:
    """Cashier and manager flows; the TerminalService of the till interface."""

    def __init__(self, *, config: Config, journal: Journal, payments: PaymentService,
                 cashier_display: Display, customer_display: Display,
                 cashier_catalogue: Catalogue, customer_catalogue: Catalogue,
                 print_queue: Any = None, clock: Callable[[], float] = time.time,
                 pin_state_file: Path | None = None, gateway: GatewayClient | None = None) -> None:
        self.cfg = config
        self.journal = journal
        self.payments = payments
        self.cashier_display = cashier_display
        self.customer_display = customer_display
        self.cashier_text = cashier_catalogue
        self.customer_text = customer_catalogue
        self.print_queue = print_queue
        self.clock = clock
        self.gateway = gateway
        self.tz = ZoneInfo(config.terminal.timezone)
        self.default_currency = config.terminal.currency
        self.started_at = clock()
        self.pin = PinGuard(config.manager.pin_hash, max_attempts=config.manager.max_attempts,
                            lockout=config.manager.lockout, state_file=pin_state_file, clock=clock)
        self.devices: dict[str, DeviceHealth] = {"scanner": DeviceHealth(), "printer": DeviceHealth(),
                                                 "display": DeviceHealth(), "journal": DeviceHealth()}
        self.last_alarm: str | None = None
        self._lock = threading.RLock()
        self._closed = False
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(str(journal.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(TILL_SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._close_stale_till_sales()
        # cashier UI state
        self.mode = Mode.IDLE
        self._buffer = ""
        self._pending: str | None = None      # till_id waiting for a scan
        self._current: str | None = None      # till_id of the sale in progress
        self._current_sale: int | None = None  # its journal sale id (held here, not only in the till row)
        # The sale whose texts may reach the displays: cleared as soon as the cashier
        # moves on (types an amount, opens the manager menu), so a late text of a
        # finished sale never covers what the cashier is doing now.
        self._display_sale: int | None = None
        self._after_pin: Mode | None = None
        self._refund_sale: SaleRecord | None = None
        self._last_receipt_job: str | None = None
        self._unsubscribe = payments.subscribe(self.on_payment_command)
        self._show("ready")

    # ================================================================ helpers

    def _show(self, key: str, **params: str) -> None:
        """Cashier and customer texts for one catalogue key, each on its own display."""
        try:
            self.cashier_display.show(*self.cashier_text.cashier(key, **params))
            self.customer_display.show(*self.customer_text.customer(key, **params))
            errors = [e for e in (getattr(self.cashier_display, "last_error", None),
                                  getattr(self.customer_display, "last_error", None)) if e]
            self.devices["display"] = DeviceHealth(not errors, errors[0] if errors else None)
        except KeyError:
            log.error("no catalogue entry", extra={"kv": {"key": key}})
        except Exception as exc:  # noqa: BLE001 - a display fault never stops a sale
            self.devices["display"] = DeviceHealth(False, str(exc))
            log.warning("display fault", extra={"kv": {"error": str(exc)}})

    def _show_cashier(self, line1: str, line2: str = "") -> None:
        try:
            self.cashier_display.show(line1, line2)
        except Exception as exc:  # noqa: BLE001
            self.devices["display"] = DeviceHealth(False, str(exc))

    def _close_stale_till_sales(self) -> None:
        # A till sale that was waiting for a scan when the terminal stopped never
        # reached the gateway: no money moved, and the customer has gone.
        now = self.clock()
        self._relink_orphaned_till_sales(now)
        self._db.execute("UPDATE till_sales SET state = 'CANCELLED', updated_at = ? "
                         "WHERE sale_id IS NULL AND state = 'CREATED'", (now,))

    def _relink_orphaned_till_sales(self, now: float) -> None:
        # The journal commits the sale (and PAYING) and the pay leaves before the
        # till row is linked to it. A stop in between leaves an unlinked row whose
        # pay may have charged the customer: calling it CANCELLED would tell the
        # till "no money was taken". Only one till sale waits for a scan at a time
        # and only it can start a journal sale, so the journal sale created after
        # it (same amount and reference) that no till row points at is its sale.
        rows = self._db.execute("SELECT till_id, amount_minor, currency, reference, created_at FROM till_sales "
                                "WHERE sale_id IS NULL AND state = 'CREATED' ORDER BY created_at").fetchall()
        for row in rows:
            match = self._db.execute(
                "SELECT s.sale_id, s.state FROM sales s WHERE s.created_at >= ? AND s.amount_minor = ? "
                "AND s.currency = ? AND s.reference = ? "
                "AND NOT EXISTS (SELECT 1 FROM till_sales t WHERE t.sale_id = s.sale_id) "
                "ORDER BY s.sale_id LIMIT 1",
                (row["created_at"], row["amount_minor"], row["currency"], row["reference"])).fetchone()
            if match is not None:
                self._db.execute("UPDATE till_sales SET sale_id = ?, state = ?, updated_at = ? WHERE till_id = ?",
                                 (match["sale_id"], match["state"], now, row["till_id"]))
                log.warning("till sale linked to its journal sale after a restart",
                            extra={"kv": {"till_id": row["till_id"], "sale_id": match["sale_id"]}})

    def _new_till_sale(self, amount: Money, reference: str, title: str) -> str:
        till_id = "S" + secrets.token_hex(6).upper()
        now = self.clock()
        self._db.execute(
            "INSERT INTO till_sales (till_id, amount_minor, currency, reference, order_title, created_at, "
            "updated_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'CREATED')",
            (till_id, amount.minor, amount.currency, reference, title, now, now))
        return till_id

    def _till_row(self, key: str) -> sqlite3.Row | None:
        row = self._db.execute("SELECT * FROM till_sales WHERE till_id = ?", (key,)).fetchone()
        if row is None:
            sale = self._journal_sale(key)
            if sale is not None:
                row = self._db.execute("SELECT * FROM till_sales WHERE sale_id = ?", (sale.sale_id,)).fetchone()
        return row

    def _journal_sale(self, key: str) -> SaleRecord | None:
        if key.isascii() and key.isdigit():  # "³".isdigit() is True, int("³") is not
            return self.journal.get_sale(int(key))
        return self.journal.get_sale(key)

    def _busy(self) -> bool:
        # The engine is the truth about a sale in progress; the UI mode may lag
        # it by one notification (the outcome is committed before it is shown).
        return self.mode == Mode.AWAIT_SCAN or self.payments.busy()

    # ================================================================ keypad

    def on_key(self, key: Key) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._on_key(key)
            except Exception:  # noqa: BLE001 - a key must never take the terminal down
                log.exception("key handling failed", extra={"kv": {"key": key.name}})
                self._show("ready")
                self.mode = Mode.IDLE

    def _sync_mode(self) -> None:
        # The outcome is committed before its notification arrives: a key or a
        # scan in between must already see the sale as over.
        if self.mode == Mode.SALE and not self.payments.busy():
            self.mode = Mode.RESULT

    def _on_key(self, key: Key) -> None:
        self._sync_mode()
        digit = key.char if key.char and (key.char.isdigit() or key.char == ".") else None
        if key in (Key.REFUND, Key.REPRINT, Key.REPORT) and self.mode in (Mode.IDLE, Mode.RESULT, Mode.AMOUNT):
            self._start_manager(key)
            return
        mode = self.mode
        if mode in (Mode.IDLE, Mode.RESULT):
            if digit:
                self.mode, self._buffer, self._display_sale = Mode.AMOUNT, digit, None
                self._show_amount()
            elif mode == Mode.RESULT:
                self.mode = Mode.IDLE
                self._show("ready")
            return
        if mode == Mode.AMOUNT:
            if digit and len(self._buffer) < 12:
                self._buffer += digit
                self._show_amount()
            elif key == Key.CLEAR:
                self._buffer = ""
                self._show_amount()
            elif key == Key.CANCEL:
                self._reset()
            elif key == Key.ENTER:
                if not self.devices["journal"].ok:
                    self._show("journal_error")
                    return
                try:
                    amount = parse_amount(self._buffer, self.default_currency)
                    self._check_max(amount)
                except (AmountError, CurrencyError):
                    self._show("amount_invalid")
                    self._buffer = ""
                    return
                except ServiceError:
                    self._show("amount_too_large")
                    self._buffer = ""
                    return
                try:
                    self._await_scan(amount, "", "")
                except sqlite3.Error as exc:
                    self._journal_failed(exc)
                    self.mode, self._buffer = Mode.IDLE, ""
            return
        if mode == Mode.AWAIT_SCAN:
            if key == Key.CANCEL:
                self._cancel_pending()
            return
        if mode == Mode.SALE:
            if key == Key.CANCEL and self._current_sale is not None:
                self.payments.abort(self._current_sale)
            return
        if mode == Mode.PIN:
            self._pin_key(key, digit)
            return
        if mode in (Mode.REFUND_SELECT, Mode.REPRINT_SELECT):
            self._select_key(key, digit)
            return
        if mode == Mode.REFUND_AMOUNT:
            self._refund_amount_key(key, digit)
            return
        if mode == Mode.REPORT_SELECT:
            if key == Key.CANCEL:
                self._reset()
            elif digit == "1":
                self._report("X")
            elif digit == "2":
                self._report("Z")

    def _show_amount(self) -> None:
        self._show_cashier(self.cashier_text.cashier("enter_amount")[0] + " " + self._buffer,
                           self.cashier_text.cashier("enter_amount")[1])

    def _reset(self) -> None:
        self.mode, self._buffer, self._after_pin, self._refund_sale = Mode.IDLE, "", None, None
        self._show("ready")

    def _check_currency(self, currency: str) -> None:
        """The till may only ask for currencies this terminal's contract settles (seed 002 for AlipayCN)."""
        term = self.cfg.terminal
        if currency == term.currency:
            return
        settlement = term.settlement_currency or term.currency
        if term.wallet == "ALIPAY_CN":
            try:
                validate_cn_currencies(currency, settlement)
                return
            except CurrencyError as exc:
                raise ServiceError(422, "Currency not accepted",
                                   f"{exc}; this terminal takes {term.currency}") from None
        raise ServiceError(422, "Currency not accepted",
                           f"this terminal takes {term.currency}, not {currency}")

    def _check_max(self, amount: Money) -> None:
        try:
            limit = parse_amount(self.cfg.payment.max_amount, amount.currency)
        except AmountError:
            return
        if amount > limit:
            raise ServiceError(422, "Amount too large",
                               f"{amount.receipt()} is more than [payment] max_amount ({limit.receipt()})")

    def _await_scan(self, amount: Money, reference: str, title: str) -> str:
        till_id = self._new_till_sale(amount, reference, title)
        # From here the displays belong to the new sale: late texts of the last one are dropped.
        self._pending, self._current, self.mode, self._buffer = till_id, None, Mode.AWAIT_SCAN, ""
        self._current_sale = self._display_sale = None
        self._show("scan_code", amount=amount.display())
        log.info("sale waiting for scan", extra={"kv": {"till_id": till_id, "amount": amount.receipt()}})
        self._changed.notify_all()
        return till_id

    def _cancel_pending(self) -> None:
        if self._pending:
            self._db.execute("UPDATE till_sales SET state = 'CANCELLED', updated_at = ? WHERE till_id = ?",
                             (self.clock(), self._pending))
            log.info("sale cancelled before scan", extra={"kv": {"till_id": self._pending}})
        self._pending = None
        self.mode = Mode.RESULT
        self._show("cancelled")
        self._changed.notify_all()

    # ================================================================ scanner

    def on_scanner_event(self, event: Any) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._on_scanner_event(event)
            except Exception:  # noqa: BLE001
                log.exception("scan handling failed")

    def _on_scanner_event(self, event: Any) -> None:
        self._sync_mode()
        if isinstance(event, ScannerLost):
            self.devices["scanner"] = DeviceHealth(False, event.reason)
            self._show("scanner_lost")
            return
        if isinstance(event, ScannerBack):
            self.devices["scanner"] = DeviceHealth()
            self._show("scanner_back")
            return
        if isinstance(event, Rejected):
            log.info("scan refused", extra={"kv": {"reason": event.reason}})
            self._show(event.message_key)
            return
        if isinstance(event, ReceiptScan):
            if self.mode in (Mode.REFUND_SELECT, Mode.REPRINT_SELECT):
                self._select_sale(event.merchant_trans_id)
            else:
                self._show("busy" if self._busy() else "ready")
            return
        if isinstance(event, Scan):
            self._on_payment_code(event.code, self.clock())

    def _on_payment_code(self, code: str, scanned_at: float) -> None:
        if self.mode == Mode.SALE or (self.mode != Mode.AWAIT_SCAN and self._busy()):
            log.info("scan refused: sale open", extra={"kv": {"code": mask_code(code)}})
            self._show("busy")
            return
        if self.mode != Mode.AWAIT_SCAN or not self._pending:
            self._show("enter_amount")
            return
        row = self._till_row(self._pending)
        assert row is not None
        amount = Money(row["amount_minor"], row["currency"])
        try:
            sale_id = self.payments.start_sale(amount, code, scanned_at, row["order_title"] or self._title(),
                                               row["reference"])
        except SaleRefused as exc:
            log.info("scan refused", extra={"kv": {"reason": str(exc), "code": mask_code(code)}})
            key = getattr(exc, "key", "scan_invalid")
            self._show("not_ready" if key == "recovering" else key if self.cashier_text.has(key) else "scan_invalid")
            return
        except (UserError, sqlite3.Error) as exc:
            # The journal could not record the sale: nothing was sent (write before
            # you send), and no sale may start until a person has looked.
            self._journal_failed(exc)
            return
        # The pay has left: from here this till sale is in progress whatever happens to
        # the write below. Were the link the only record of it, a failed write would
        # leave the terminal waiting for a scan of the same sale (a second charge) and
        # drop the sale's texts. The in-memory state comes first; a failed link is a
        # journal fault (no new sale) and is repaired on the next start.
        till_id = self._pending
        self._current, self._current_sale, self._pending, self.mode = till_id, sale_id, None, Mode.SALE
        self._display_sale = sale_id
        self._changed.notify_all()
        try:
            self._db.execute("UPDATE till_sales SET sale_id = ?, state = 'PAYING', updated_at = ? WHERE till_id = ?",
                             (sale_id, self.clock(), till_id))
        except sqlite3.Error as exc:
            self._journal_failed(exc)

    def _journal_failed(self, exc: BaseException) -> None:
        self.devices["journal"] = DeviceHealth(False, str(exc))
        log.error("journal write failed: no sale can start", extra={"kv": {"error": str(exc)}})
        self._show("journal_error")

    def _title(self) -> str:
        return self.cfg.terminal.store_name or self.cfg.terminal.merchant_name

    # ================================================================ engine

    def on_payment_command(self, command: Command) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._on_payment_command(command)
            except Exception:  # noqa: BLE001
                log.exception("payment notification failed")

    def _on_payment_command(self, command: Command) -> None:
        if isinstance(command, Show):
            if command.sale_id is not None:
                # Only the sale being served speaks on the displays; the background
                # corrector's texts about older sales go to the log and the manager list.
                if command.sale_id != self._display_sale:
                    log.info("message for another sale", extra={"kv": {"key": command.key,
                                                                      "sale_id": command.sale_id}})
                    return
            elif self.mode not in (Mode.IDLE, Mode.RESULT):
                return  # a refund's outcome never interrupts someone typing
            key = command.key
            if key == "checking" and self._link_down():
                key = "network_down"  # same instruction (no goods yet), and the cashier knows why
            self._show(key, **command.params)
        elif isinstance(command, PrintReceipt):
            self._print(command.sale_id, command.refund_id)
        elif isinstance(command, Alarm):
            self.last_alarm = command.text
            log.error("alarm", extra={"kv": {"text": command.text, "sale_id": command.sale_id,
                                             "refund_id": command.refund_id}})
        elif isinstance(command, Finished):
            if command.kind == "sale" and command.item_id == self._current_sale_id():
                if command.state in FINAL_FOR_TILL and self.mode == Mode.SALE:
                    self.mode = Mode.RESULT
            self._changed.notify_all()

    def _link_down(self) -> bool:
        error = self._gateway_health().last_error or ""
        return error.startswith(("timeout", "connection error", "transport error"))

    def _gateway_health(self) -> GatewayHealth:
        return self.gateway.health() if self.gateway is not None else GatewayHealth()

    def _current_sale_id(self) -> int | None:
        return self._current_sale

    def _row_sale_id(self, row: Any) -> int | None:
        """The journal sale of a till row; the sale in progress even if its link write failed."""
        if row["sale_id"] is not None:
            return int(row["sale_id"])
        if self._current is not None and row["till_id"] == self._current:
            return self._current_sale
        return None

    # ================================================================ receipts

    def _local(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self.tz)

    def _receipt(self, sale: SaleRecord, refund: RefundRecord | None = None, reprint: bool = False) -> ReceiptData:
        return receipt_for(self.cfg, self.journal, sale, refund, reprint=reprint)

    def _print(self, sale_id: int, refund_id: int | None) -> None:
        sale = self.journal.get_sale(sale_id)
        if sale is None or self.print_queue is None:
            return
        refund = self.journal.get_refund(refund_id) if refund_id is not None else None
        job = f"refund:{refund_id}" if refund_id is not None else f"sale:{sale_id}"
        try:
            self.print_queue.enqueue(job, self._receipt(sale, refund))
            self._last_receipt_job = job
        except Exception as exc:  # noqa: BLE001 - a printer fault never changes a payment
            self.devices["printer"] = DeviceHealth(False, str(exc))
            log.error("receipt not queued", extra={"kv": {"job": job, "error": str(exc)}})

    def on_printer_status(self, status: str) -> None:
        with self._lock:
            if status == "printer_away":
                self.devices["printer"] = DeviceHealth(False, "printer not accepting data")
            else:
                self.devices["printer"] = DeviceHealth()
            if self.mode in (Mode.IDLE, Mode.RESULT):
                self._show(status)

    def reprint(self, key: str) -> str:
        """Print a sale's receipt again, marked REPRINT. Returns the print job key."""
        with self._lock:
            sale = self._resolve_sale(key)
            if self.print_queue is None:
                raise ServiceError(409, "No printer", "[printer] kind is none: nothing can be printed")
            job = f"sale:{sale.sale_id}"
            if self.print_queue.job(job) is not None:
                return self.print_queue.reprint(job)
            new = f"sale:{sale.sale_id}:reprint:{int(self.clock() * 1000)}"
            self.print_queue.enqueue(new, self._receipt(sale, reprint=True))
            return new

    # ================================================================ manager

    def _start_manager(self, key: Key) -> None:
        self._display_sale = None
        target = {Key.REFUND: Mode.REFUND_SELECT, Key.REPRINT: Mode.REPRINT_SELECT,
                  Key.REPORT: Mode.REPORT_SELECT}[key]
        if not self.pin.enabled:
            self._show_cashier("Manager menu off", "Set PIN: pos pin set")
            self.mode = Mode.RESULT
            return
        if self.pin.locked_for() > 0:
            self._show("pin_locked")
            self.mode = Mode.RESULT
            return
        self.mode, self._buffer, self._after_pin = Mode.PIN, "", target
        self._show("pin_prompt")

    def _pin_key(self, key: Key, digit: str | None) -> None:
        if key == Key.CANCEL:
            self._reset()
        elif key == Key.CLEAR:
            self._buffer = ""
            self._show("pin_prompt")
        elif digit and digit != "." and len(self._buffer) < 12:
            self._buffer += digit
            line1 = self.cashier_text.cashier("pin_prompt")[0]
            self._show_cashier(line1, "*" * len(self._buffer))
        elif key == Key.ENTER:
            result = self.pin.check(self._buffer)
            self._buffer = ""
            if result.ok:
                self.mode = self._after_pin or Mode.IDLE
                log.info("manager menu opened", extra={"kv": {"action": self.mode.value}})
                self._show({Mode.REFUND_SELECT: "refund_scan", Mode.REPRINT_SELECT: "refund_scan",
                            Mode.REPORT_SELECT: "report_menu"}.get(self.mode, "manager_menu"))
            elif result.locked:
                log.warning("manager menu locked", extra={"kv": {"seconds": result.locked_for}})
                self.mode = Mode.RESULT
                self._show("pin_locked")
            else:
                self._show("pin_wrong")

    def _select_key(self, key: Key, digit: str | None) -> None:
        if key == Key.CANCEL:
            self._reset()
        elif key == Key.CLEAR:
            self._buffer = ""
        elif digit and digit != "." and len(self._buffer) < 10:
            self._buffer += digit
            self._show_cashier("Sale number:", self._buffer)
        elif key == Key.ENTER and self._buffer:
            self._select_sale(self._buffer)
            self._buffer = ""

    def _keyed_sale(self, digits: str) -> SaleRecord | None:
        """A sale number typed on the keypad: the number at the end of the Sale ID on the
        receipt (its merchantTransId sequence), or the journal's sale number."""
        row = self._db.execute("SELECT sale_id FROM sales WHERE merchant_trans_id LIKE ? "
                               "ORDER BY sale_id DESC LIMIT 1", (f"%-{int(digits):06d}",)).fetchone()
        if row is not None:
            return self.journal.get_sale(int(row["sale_id"]))
        return self.journal.get_sale(int(digits))

    def _select_sale(self, key: str) -> None:
        if key.isascii() and key.isdigit():
            keyed = self._keyed_sale(key)
            if keyed is not None:
                key = keyed.merchant_trans_id
        try:
            sale = self._resolve_sale(key)
        except ServiceError:
            self._show_cashier("No such sale", "Scan receipt again")
            return
        if self.mode == Mode.REPRINT_SELECT:
            self.reprint(str(sale.sale_id))
            self.mode = Mode.RESULT
            self._show("report_printed")
            return
        if sale.state != SaleState.PAID:
            self._show_cashier("Sale not paid", "Nothing to refund")
            return
        self._refund_sale, self.mode, self._buffer = sale, Mode.REFUND_AMOUNT, ""
        left = self._refundable(sale)
        self._show("refund_amount", amount=left.display())

    def _refund_amount_key(self, key: Key, digit: str | None) -> None:
        sale = self._refund_sale
        assert sale is not None
        if key == Key.CANCEL:
            self._reset()
        elif key == Key.CLEAR:
            self._buffer = ""
            self._show("refund_amount", amount=self._refundable(sale).display())
        elif digit and len(self._buffer) < 12:
            self._buffer += digit
            self._show_cashier("Refund amount:", self._buffer)
        elif key == Key.ENTER:
            try:
                amount = parse_amount(self._buffer, sale.amount.currency) if self._buffer else None
                self._refund(sale, amount, "refund at the terminal")
            except (AmountError, CurrencyError):
                self._show("amount_invalid")
                self._buffer = ""
                return
            except ServiceError as exc:
                log.info("refund refused", extra={"kv": {"reason": exc.detail or exc.title}})
                self._show_cashier("Refund refused", exc.title[:20])
                self._buffer = ""
                return
            self.mode, self._refund_sale, self._buffer = Mode.RESULT, None, ""
            self._show("processing")

    # ================================================================ refunds

    def _refundable(self, sale: SaleRecord) -> Money:
        taken = sum((r.amount.minor for r in self.journal.list_refunds(sale_id=sale.sale_id)
                     if r.state != RefundState.REFUND_DECLINED), 0)
        return Money(sale.amount.minor - taken, sale.amount.currency)

    def _refund(self, sale: SaleRecord, amount: Money | None, reason: str) -> int:
        if sale.state != SaleState.PAID:
            raise ServiceError(409, "Sale is not paid",
                               f"sale {sale.merchant_trans_id} is {sale.state.value}: only a paid sale can be refunded")
        left = self._refundable(sale)
        amount = amount or left
        if amount.currency != sale.amount.currency:
            raise ServiceError(422, "Wrong currency", f"the sale was in {sale.amount.currency}")
        if amount.minor <= 0 or left.minor <= 0:
            raise ServiceError(409, "Nothing left to refund",
                               f"sale {sale.merchant_trans_id} has been refunded in full")
        if amount > left:
            raise ServiceError(409, "Refund above what is left",
                               f"at most {left.receipt()} can still be refunded on {sale.merchant_trans_id}")
        try:
            limit = parse_amount(self.cfg.manager.refund_limit, amount.currency)
        except AmountError:
            limit = None
        if limit is not None and amount > limit:
            raise ServiceError(409, "Refund above the limit",
                               f"{amount.receipt()} is more than [manager] refund_limit ({limit.receipt()})")
        try:
            refund_id = self.payments.refund(sale.sale_id, amount, reason)
        except RefundRefused as exc:
            raise ServiceError(409, "Refund refused", str(exc)) from None
        log.info("refund started", extra={"kv": {"merchantTransId": sale.merchant_trans_id,
                                                 "amount": amount.receipt(), "refund_id": refund_id}})
        return refund_id

    def _resolve_sale(self, key: str) -> SaleRecord:
        row = self._till_row(key)
        sale = None
        if row is not None and self._row_sale_id(row) is not None:
            sale = self.journal.get_sale(self._row_sale_id(row))  # type: ignore[arg-type]
        if sale is None:
            sale = self._journal_sale(key)
        if sale is None:
            raise ServiceError(404, "No such sale", f"no sale with id {key!r}")
        return sale

    # ================================================================ views

    def _message(self, key: str, **params: str) -> dict[str, list[str]]:
        return {"cashier": list(self.cashier_text.cashier(key, **params)),
                "customer": list(self.customer_text.customer(key, **params))}

    @staticmethod
    def _amount(m: Money) -> dict[str, Any]:
        return {"value": m.minor, "currency": m.currency, "text": m.major_str()}

    def _iso(self, epoch: float) -> str:
        return self._local(epoch).isoformat(timespec="seconds")

    def _refund_view(self, r: RefundRecord, till_id: str) -> dict[str, Any]:
        key = {"REFUNDED": "refund_done", "REFUND_DECLINED": "refund_declined",
               "REFUND_PENDING": "refund_pending"}.get(r.state.value, "processing")
        return {"id": str(r.refund_id), "saleId": till_id, "merchantRefundId": r.merchant_refund_id,
                "state": r.state.value, "amount": self._amount(r.amount),
                "final": r.state in (RefundState.REFUNDED, RefundState.REFUND_DECLINED),
                "message": self._message(key, amount=r.amount.display())}

    def _view(self, row: sqlite3.Row) -> dict[str, Any]:
        amount = Money(row["amount_minor"], row["currency"])
        linked = self._row_sale_id(row)
        sale = self.journal.get_sale(linked) if linked is not None else None
        state = sale.state.value if sale else row["state"]
        refunds = self.journal.list_refunds(sale_id=sale.sale_id) if sale else []
        refunded = sum((r.amount.minor for r in refunds if r.state == RefundState.REFUNDED), 0)
        key = STATE_MESSAGE[state]
        # Only an F code explains a decline (a payQuery CLOSED status comes with code
        # SUCCESS, whose text "Done" would be a lie): the same rule as the engine's display.
        code_row = result_codes().get(sale.result_code or "") if sale else None
        if (state == "DECLINED" and sale and code_row is not None and code_row.status == "F"
                and self.cashier_text.has(f"code.{sale.result_code}")):
            key = f"code.{sale.result_code}"
        return {
            "id": row["till_id"], "state": state, "final": state in FINAL_FOR_TILL,
            "merchantTransId": sale.merchant_trans_id if sale else None,
            "acquirementId": sale.acquirement_id if sale else None,
            "amount": self._amount(amount), "refunded": self._amount(Money(refunded, amount.currency)),
            "reference": row["reference"], "orderTitle": row["order_title"],
            "codeLast4": sale.code_masked[-4:] if sale and sale.code_masked else None,
            "message": self._message(key, amount=amount.display()),
            "createdAt": self._iso(row["created_at"]),
            "updatedAt": self._iso(sale.updated_at if sale else row["updated_at"]),
            "refunds": [self._refund_view(r, row["till_id"]) for r in refunds],
        }

    # ================================================================ TerminalService

    def create_sale(self, amount: Money, reference: str, order_title: str) -> dict[str, Any]:
        with self._lock:
            if self.payments.recovering:
                raise ServiceError(503, "Terminal not ready",
                                   "the terminal is settling sales from before a restart; try again in a moment")
            if self._busy():
                raise ServiceError(409, "A sale is already open",
                                   "finish or cancel the open sale first (one sale at a time)")
            if self.mode not in (Mode.IDLE, Mode.RESULT, Mode.AMOUNT, Mode.SALE):
                raise ServiceError(409, "Terminal in use", "the manager menu is open on the terminal")
            self._check_currency(amount.currency)
            self._check_max(amount)
            if not self.devices["journal"].ok:
                raise ServiceError(503, "Journal unavailable",
                                   f"the terminal cannot write its journal ({self.devices['journal'].last_error}): "
                                   "no sale can start; run 'pos doctor'")
            try:
                till_id = self._await_scan(amount, reference, order_title)
            except sqlite3.Error as exc:
                self._journal_failed(exc)
                raise ServiceError(503, "Journal unavailable",
                                   "the terminal cannot write its journal: no sale can start; run 'pos doctor'") from None
            row = self._till_row(till_id)
            assert row is not None
            return self._view(row)

    def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._till_row(sale_id)
            if row is None:
                sale = self._journal_sale(sale_id)
                if sale is None:
                    return None
                return self._sale_without_till_row(sale)
            return self._view(row)

    def _sale_without_till_row(self, sale: SaleRecord) -> dict[str, Any]:
        # A sale from before the till table existed: show it from the journal alone.
        fake = {"till_id": str(sale.sale_id), "amount_minor": sale.amount.minor, "currency": sale.amount.currency,
                "reference": sale.reference, "order_title": sale.order_title, "created_at": sale.created_at,
                "updated_at": sale.updated_at, "state": sale.state.value, "sale_id": sale.sale_id}
        return self._view(fake)  # type: ignore[arg-type]

    def wait_sale(self, sale_id: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                view = self.get_sale(sale_id)
                if view is None or view["final"]:
                    return view
                left = deadline - time.monotonic()
                if left <= 0:
                    return view
                self._changed.wait(min(left, 1.0))

    def cancel_sale(self, sale_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._till_row(sale_id)
            if row is None:
                raise ServiceError(404, "No such sale", f"no sale with id {sale_id!r}")
            if self._row_sale_id(row) is None:
                if row["state"] == "CREATED" and self._pending == row["till_id"]:
                    self._cancel_pending()
                elif row["state"] == "CREATED":
                    self._db.execute("UPDATE till_sales SET state='CANCELLED', updated_at=? WHERE till_id=?",
                                     (self.clock(), row["till_id"]))
                return self._view(self._till_row(row["till_id"]))  # type: ignore[arg-type]
            sale = self.journal.get_sale(self._row_sale_id(row))  # type: ignore[arg-type]
            assert sale is not None
            if sale.state.value in FINAL_FOR_TILL:
                advice = {"PAID": "a paid sale is refunded (POST /v1/refunds), not cancelled",
                          "MANUAL_REVIEW": "every cancel attempt is spent: the manager settles it "
                                           "(pos journal list --open)"}.get(sale.state.value, "nothing to cancel")
                raise ServiceError(409, "Sale already finished", f"sale is {sale.state.value}: {advice}")
            self.payments.abort(sale.sale_id)
            return self._view(row)

    def refund(self, sale_id: str, amount: Money | None, reason: str,
               idempotency_key: str | None = None) -> dict[str, Any]:
        with self._lock:
            sale = self._resolve_sale(sale_id)
            refund_id = self._till_refund(idempotency_key, sale, amount) if idempotency_key else None
            if refund_id is None:
                refund_id = self._refund(sale, amount, reason or "refund by the till")
                if idempotency_key:
                    self._db.execute("UPDATE till_refunds SET refund_id = ? WHERE idem_key = ?",
                                     (refund_id, idempotency_key))
        record = self.payments.wait_refund(refund_id, timeout=self.cfg.gateway.read_timeout + 5)
        with self._lock:
            record = record or self.journal.get_refund(refund_id)
            assert record is not None
            return self._refund_view(record, sale_id)

    def _till_refund(self, key: str, sale: SaleRecord, amount: Money | None) -> int | None:
        """The refund a till already asked for under this Idempotency-Key, or None to create it.

        A till that timed out retries with the same key and must not refund twice.
        The key is recorded before the refund is created; if the terminal stopped
        in between, the journal's refund made for it (same sale and amount, not
        claimed by another key, created after the key) is found again.
        """
        row = self._db.execute("SELECT sale_id, amount_minor, created_at, refund_id FROM till_refunds "
                               "WHERE idem_key = ?", (key,)).fetchone()
        wanted = amount.minor if amount is not None else None
        if row is None:
            self._db.execute("INSERT INTO till_refunds (idem_key, sale_id, amount_minor, created_at) "
                             "VALUES (?, ?, ?, ?)", (key, sale.sale_id, wanted, self.clock()))
            return None
        if row["sale_id"] != sale.sale_id or row["amount_minor"] != wanted:
            raise ServiceError(422, "Idempotency-Key reused",
                               f"the key {key!r} was used for another refund: use a new key for a new refund")
        if row["refund_id"] is not None:
            return int(row["refund_id"])
        claimed = {r[0] for r in self._db.execute("SELECT refund_id FROM till_refunds WHERE refund_id IS NOT NULL")}
        for r in self.journal.list_refunds(sale_id=sale.sale_id):
            if (r.refund_id not in claimed and r.created_at >= row["created_at"]
                    and (wanted is None or r.amount.minor == wanted)):
                self._db.execute("UPDATE till_refunds SET refund_id = ? WHERE idem_key = ?", (r.refund_id, key))
                return r.refund_id
        return None

    # ---------------------------------------------------------------- reports

    def _business_day(self) -> tuple[int, float]:
        row = self._db.execute("SELECT day, opened_at FROM business_days WHERE closed_at IS NULL "
                               "ORDER BY day DESC LIMIT 1").fetchone()
        if row is not None:
            return int(row[0]), float(row[1])
        last = self._db.execute("SELECT MAX(day), MAX(closed_at) FROM business_days").fetchone()
        day = (last[0] or 0) + 1
        opened = float(last[1]) if last[1] is not None else 0.0
        self._db.execute("INSERT INTO business_days (day, opened_at) VALUES (?, ?)", (day, opened))
        return day, opened

    def _build_report(self, kind: str, closed_at: float | None) -> Any:
        day, opened = self._business_day()
        # Only this business day is read (SQL on created_at), not the whole history.
        sales = self.journal.list_sales(since=opened, before=closed_at)
        refunds = self.journal.list_refunds(since=opened, before=closed_at)
        # Items still open from earlier days belong on today's report too: a person must see them.
        earlier_open = self.journal.list_sales(open_only=True, before=opened)
        report = build_report(kind, day, self._iso(opened) if opened else "first sale",
                              self._iso(closed_at) if closed_at is not None else None,
                              sales + earlier_open, refunds)
        return report

    def _print_report(self, report: Any) -> None:
        if self.print_queue is None:
            return
        term = self.cfg.terminal
        data = ReceiptData(kind=ReceiptKind.REPORT, merchant_name=term.merchant_name, store_name=term.store_name,
                           terminal_id=term.terminal_id, when=self._local(self.clock()),
                           report_title_key="report_z" if report.kind == "Z" else "report_x",
                           report_lines=tuple(report_rows(report)))
        job = f"report:{report.kind}:{report.business_day}:{int(self.clock() * 1000)}"
        try:
            self.print_queue.enqueue(job, data)
        except Exception as exc:  # noqa: BLE001
            log.error("report not queued", extra={"kv": {"error": str(exc)}})

    def _report(self, kind: str, *, print_it: bool = True) -> dict[str, Any]:
        if kind == "Z":
            now = self.clock()
            report = self._build_report("Z", now)
            self._db.execute("UPDATE business_days SET closed_at = ? WHERE day = ?", (now, report.business_day))
            self._db.execute("INSERT INTO business_days (day, opened_at) VALUES (?, ?)",
                             (report.business_day + 1, now))
            log.info("business day closed", extra={"kv": {"day": report.business_day}})
        else:
            report = self._build_report("X", None)
        if print_it or kind == "Z":  # a day close always leaves paper behind
            self._print_report(report)
        if self.mode == Mode.REPORT_SELECT:
            self.mode = Mode.RESULT
            self._show("report_printed")
            # The paper has the detail; the display shows the bottom line of each currency.
            nets = [f"Net {t.net.display()}" for _, t in sorted(report.totals.items())]
            if nets:
                self._show_cashier(self.cashier_text.cashier("report_printed")[0], nets[0])
        return report.as_dict()

    def x_report(self) -> dict[str, Any]:
        with self._lock:
            return self._report("X", print_it=False)  # the till reads totals; the keypad prints them

    def z_report(self) -> dict[str, Any]:
        with self._lock:
            if self._busy():
                raise ServiceError(409, "A sale is open", "finish the open sale before closing the day")
            return self._report("Z")

    # ---------------------------------------------------------------- health

    def health(self) -> dict[str, Any]:
        with self._lock:
            open_items = self.journal.open_items()
            try:
                journal_bytes = sum(p.stat().st_size for p in Path(self.journal.path).parent.glob(
                    Path(self.journal.path).name + "*"))
            except OSError:
                journal_bytes = 0
            gateway = self._gateway_health()
            latency, gateway_error = gateway.last_latency, gateway.last_error
            degraded = (not all(d.ok for d in self.devices.values()) or gateway_error is not None
                        or any(getattr(i, "state", None) in (SaleState.MANUAL_REVIEW, RefundState.REFUND_PENDING)
                               for i in open_items))
            status = "starting" if self.payments.recovering else ("degraded" if degraded else "ok")
            return {
                "status": status,
                "version": __import__("pos").__version__,
                "uptime_s": round(self.clock() - self.started_at, 3),
                "gateway": {"latency_ms": None if latency is None else round(latency * 1000, 1),
                            "last_error": gateway_error},
                "devices": {name: {"ok": d.ok, "last_error": d.last_error} for name, d in self.devices.items()},
                "open_items": len(open_items),
                "journal_bytes": journal_bytes,
                "mode": self.mode.value,
                "last_alarm": self.last_alarm,
            }

    def close(self) -> None:
        self._unsubscribe()
        # Under the lock: a notification being handled on the runner's thread
        # must not find its SQLite connection closed under it.
        with self._lock:
            self._closed = True
            self._db.close()
