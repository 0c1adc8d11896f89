"""Receipts built from the journal's records, never from free text, and handed to the print queue.

This is where money is written for paper: the devices receive plain data
(`devices.receipt.ReceiptData` with `ReceiptAmount` texts made here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.print_queue import PrintQueue
from devices.receipt import Paper, ReceiptAmount, ReceiptData, ReceiptKind, RefundLine
from pos.config import Config, store_identity
from pos.core.engine import PrintReceipt
from pos.core.errors import UserError
from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.core.reports import Report, report_rows
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs, missing_receipts
from pos.terminal.displays import DeviceBoard, DeviceHealth

__all__ = ["RECEIPT_STATUS", "RECEIPT_CATCH_UP", "receipt_amount", "receipt_for", "outcome_job", "outcome_receipt",
           "Receipts"]

# On start, receipts owed from this far back and never queued are queued (a daemon
# killed between a PAID/REFUNDED commit and its print job); older ones are history.
RECEIPT_CATCH_UP = 24 * 3600.0

log = logging.getLogger("pos.terminal.receipts")

# Which [receipt] label names each sale and refund state.
RECEIPT_STATUS = {
    "PAID": "status_paid", "DECLINED": "status_declined", "CANCELLED": "status_cancelled",
    "MANUAL_REVIEW": "status_manual_review", "REFUNDED": "status_refunded",
    "REFUND_PENDING": "status_refund_pending", "REFUND_DECLINED": "status_refund_declined",
    "REVERSING": "status_reversing", "REVERSED": "status_reversed", "PAID_LATE": "status_paid_late",
}


def receipt_amount(m: Money) -> ReceiptAmount:
    return ReceiptAmount(m.minor, m.currency, m.receipt())


def receipt_for(cfg: Config, journal: Journal, sale: SaleRecord, refund: RefundRecord | None = None, *,
                reprint: bool = False, as_of: float | None = None) -> ReceiptData:
    """A receipt built from the journal's record of a sale (and one of its refunds), never from free text.

    `as_of`: the refunds made after this time are left off (an outcome's receipt built after the
    outcome lists the refunds it would have listed then)."""
    tz = ZoneInfo(cfg.terminal.timezone)

    def local(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, tz)

    # A declined refund is left off, unless it is the one this receipt is for.
    refunds = tuple(
        RefundLine(r.merchant_refund_id, receipt_amount(r.amount),
                   RECEIPT_STATUS.get(r.state.value, "status_refund_pending"), local(r.updated_at),
                   r.gateway_refund_id or "")
        for r in journal.list_refunds(sale_id=sale.sale_id)
        if (as_of is None or r.created_at <= as_of)
        and (r.state != RefundState.REFUND_DECLINED or (refund and r.refund_id == refund.refund_id)))
    if sale.reversal_id and sale.state in (SaleState.REVERSING, SaleState.REVERSED, SaleState.PAID_LATE):
        # The full refund that gave back a charge made after "No goods" (PAID_LATE: it was declined).
        status = "status_refund_declined" if sale.state is SaleState.PAID_LATE else RECEIPT_STATUS[sale.state.value]
        refunds += (RefundLine(sale.reversal_id, receipt_amount(sale.amount), status,
                               local(sale.updated_at), sale.reversal_gateway_id or ""),)
    term = cfg.terminal
    store = store_identity(cfg)
    paid = (receipt_amount(Money(sale.pay_amount_minor, sale.pay_currency))
            if sale.pay_amount_minor is not None and sale.pay_currency and not refund else None)
    return ReceiptData(
        kind=ReceiptKind.REFUND if refund else ReceiptKind.SALE,
        merchant_name=term.merchant_name, terminal_id=store["terminal_id"],
        store_name=store["name"] if store["name"] != term.merchant_name else "",
        store_id=store["id"], store_address=store["address"], pay_amount=paid,
        conversion_rate=(sale.conversion_rate or "") if paid else "",
        when=local(refund.updated_at if refund else sale.updated_at),
        amount=receipt_amount(refund.amount if refund else sale.amount),
        status_key=RECEIPT_STATUS.get((refund.state if refund else sale.state).value, "status_declined"),
        merchant_trans_id=sale.merchant_trans_id, acquirement_id=sale.acquirement_id or "",
        code_last4=sale.code_last4, order_title=sale.order_title,
        refunds=refunds, reprint=reprint, paper=Paper.of(cfg.printer))


def outcome_job(sale_id: int, refund_id: int | None) -> str:
    """The print job of the receipt a PrintReceipt asks for: a sale's, or one of its refunds'."""
    return f"refund:{refund_id}" if refund_id is not None else f"sale:{sale_id}"


def outcome_receipt(cfg: Config, journal: Journal, job_key: str) -> ReceiptData:
    """The receipt of an outcome's print job (outcome_job), built from the journal when the print
    queue takes the job (its `receipt_of`). The sale or refund is final (PAID, REVERSED, REFUNDED)
    and the refunds made since are left off, so it reads as it did when its outcome committed."""
    kind, _, number = job_key.partition(":")
    refund = journal.get_refund(int(number)) if kind == "refund" else None
    sale = None
    if refund is not None:
        sale = journal.get_sale(refund.sale_id)
    elif kind == "sale":
        sale = journal.get_sale(int(number))
    if sale is None:
        raise ValueError(f"print job {job_key!r} names no sale or refund in the journal")
    return receipt_for(cfg, journal, sale, refund, as_of=refund.updated_at if refund else sale.updated_at)


class Receipts:
    """Sale, refund and report receipts into the print queue. A printer fault never changes a payment.

    A sale's or refund's receipt is queued by its job's key alone, and built from the journal and
    rendered by the print queue's worker when it takes the job (outcome_receipt); other receipts
    are queued as records and rendered by the worker. The caller (a sale's transaction, a Z report
    over the till API) never waits for the receipt's building or for python-escpos."""

    def __init__(self, cfg: Config, journal: Journal, print_queue: PrintQueue | None, devices: DeviceBoard,
                 clock: Callable[[], float]) -> None:
        self._cfg = cfg
        self._journal = journal
        self.queue = print_queue
        self._devices = devices
        self._clock = clock
        self._tz = ZoneInfo(cfg.terminal.timezone)
        self._owed = False

    @property
    def in_outcome_transaction(self) -> bool:
        """Whether receipts can be queued inside the journal's transactions (queue_with_outcome):
        the queue stores its jobs through this very journal connection."""
        store = self.queue.store if self.queue is not None else None
        return isinstance(store, JournalPrintJobs) and store.writes_through(self._journal)

    def queue_with_outcome(self, command: PrintReceipt) -> None:
        """The receipt of a PrintReceipt, queued inside the journal transaction that records the
        outcome it prints (PaymentRunner.write_receipts; on the runner's thread): the outcome and
        its print job are committed together. Only the job's key is written; the print queue's
        worker builds the receipt from the committed outcome when it takes the job, once the
        outcome is on the displays (wake_printer), so nothing but one INSERT runs while the
        transaction is open."""
        self.print_outcome(command.sale_id, command.refund_id, wake=False)

    def wake_printer(self) -> None:
        """Print what queue_with_outcome queued (called once the outcome is on the displays: the
        customer sees PAID before the printer's work competes with the display's)."""
        if self.queue is not None:
            self.queue.wake()

    def print_outcome(self, sale_id: int, refund_id: int | None, *, wake: bool = True) -> None:
        """The receipt the engine asked for (PrintReceipt): a sale's, or one of its refunds'.

        A receipt that could not be queued (the journal full, say) is owed: it is queued with
        the next receipt, and at the next start (queue_missing)."""
        if self._owed:
            self.queue_missing()
        if not self._queue_job(sale_id, refund_id, wake=wake):
            self._owed = True

    def _queue_job(self, sale_id: int, refund_id: int | None, *, wake: bool = True) -> bool:
        if self.queue is None:
            return True
        job = outcome_job(sale_id, refund_id)
        try:
            self.queue.enqueue_key(job, wake=wake)
            return True
        except Exception as exc:  # a printer fault never changes a payment
            self._devices["printer"] = DeviceHealth(False, str(exc))
            log.error("receipt not queued", extra={"kv": {"job": job, "error": str(exc)}})
            return False

    def queue_missing(self) -> int:
        """Queue the receipts owed (committed, never queued: a dead daemon, a full journal). Returns how many."""
        if self.queue is None:
            return 0
        self._owed = False
        try:
            owed = missing_receipts(self._journal, self._clock() - RECEIPT_CATCH_UP)
        except Exception as exc:  # the journal unreadable now: try again with the next receipt
            log.error("owed receipts not read", extra={"kv": {"error": str(exc)}})
            self._owed = True
            return 0
        for sale_id, refund_id in owed:
            log.warning("owed receipt queued", extra={"kv": {"sale_id": sale_id, "refund_id": refund_id}})
            if not self._queue_job(sale_id, refund_id):
                self._owed = True
                break
        return len(owed)

    def reprint(self, sale: SaleRecord) -> str:
        """Print a sale's receipt again, marked REPRINT. Returns the print job key. Needs a print queue."""
        if self.queue is None:
            raise UserError("[printer] kind is none: nothing can be printed")
        job = outcome_job(sale.sale_id, None)
        if self.queue.job(job) is not None:
            return str(self.queue.reprint(job))
        new = f"sale:{sale.sale_id}:reprint:{int(self._clock() * 1000)}"
        self.queue.enqueue(new, receipt_for(self._cfg, self._journal, sale, reprint=True), render_later=True)
        return new

    def print_qr_slip(self, sale: SaleRecord, qr_text: str) -> None:
        """The "scan to pay" slip of a QR sale: the amount and the wallet's code (a printer fault
        is recorded in the device health; the sale goes on, and the cashier can cancel it)."""
        if self.queue is None:
            return
        term = self._cfg.terminal
        store = store_identity(self._cfg)
        data = ReceiptData(kind=ReceiptKind.QR_SLIP, merchant_name=term.merchant_name,
                           terminal_id=store["terminal_id"], when=datetime.fromtimestamp(self._clock(), self._tz),
                           amount=receipt_amount(sale.amount), merchant_trans_id=sale.merchant_trans_id,
                           order_title=sale.order_title, pay_qr=qr_text)
        job = f"qr:{sale.sale_id}"
        try:
            self.queue.enqueue(job, data, render_later=True)
        except Exception as exc:  # a printer fault never changes a payment
            self._devices["printer"] = DeviceHealth(False, str(exc))
            log.error("QR slip not queued", extra={"kv": {"job": job, "error": str(exc)}})

    def print_report(self, report: Report) -> None:
        if self.queue is None:
            return
        term = self._cfg.terminal
        data = ReceiptData(kind=ReceiptKind.REPORT, merchant_name=term.merchant_name, store_name=term.store_name,
                           terminal_id=term.terminal_id, when=datetime.fromtimestamp(self._clock(), self._tz),
                           report_title_key="report_z" if report.kind == "Z" else "report_x",
                           report_lines=tuple(report_rows(report)))
        job = f"report:{report.kind}:{report.business_day}:{int(self._clock() * 1000)}"
        try:
            self.queue.enqueue(job, data, render_later=True)
        except Exception as exc:  # a printer fault never changes a payment
            log.error("report not queued", extra={"kv": {"error": str(exc)}})
