"""The till service: what the till's HTTP interface (pos/till/api.py) calls.

Sales started by the till take the cashier's path (the customer's code is
scanned at the terminal); this module turns the journal's records into the
till's views, long-polls for a final state, keeps a retried refund from
refunding twice (Idempotency-Key), and answers refusals as `TillError`s,
which the interface sends as RFC 9457 problem details.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos import __version__
from pos.config import Config
from pos.core.goods import GoodsLine, check_goods, goods_info
from pos.core.money import CurrencyError, Money, validate_cn_currencies
from pos.core.outcomes import Cause
from pos.core.records import RefundRecord, RefundState, Resolution, SaleRecord, SaleState
from pos.core.rules import Refusal
from pos.gateway.client import GatewayClient, GatewayHealth
from pos.gateway.factory import result_codes_for
from pos.journal.db import JournalError
from pos.journal.journal import Journal
from pos.journal.till import TillLinks, TillSale
from pos.payments.runner import QR_UNAVAILABLE, PaymentRunner, ResolveRefused
from pos.terminal.business_day import BusinessDay
from pos.terminal.cashier import FINAL_FOR_TILL, CashierFlow
from pos.terminal.counter import Counter, Mode
from pos.terminal.displays import DeviceBoard, Displays
from pos.terminal.sales import SaleDesk

__all__ = ["TillError", "REFUSAL_PROBLEMS", "refusal_title", "TillService"]

log = logging.getLogger("pos.terminal.till_service")


class TillError(Exception):
    """A refusal the till can act on; the till interface sends it as a problem-details answer."""

    def __init__(self, status: int, title: str, detail: str = "", *, kind: str = "about:blank") -> None:
        super().__init__(title)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind


# Refusal.reason (pos.core.rules) -> HTTP status, problem title, and a hint added to the detail.
REFUSAL_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "not_paid": (409, "Sale is not paid", ""),
    "no_acquirement_id": (409, "Refund refused", ""),
    "wrong_currency": (422, "Wrong currency", ""),
    "nothing_left": (409, "Nothing left to refund", ""),
    "not_positive": (422, "Invalid amount", ""),
    "over_left": (409, "Refund above what is left", "at most {left} can still be refunded"),
    "over_refund_limit": (409, "Refund above the limit", ""),
    "over_max_amount": (422, "Amount too large", ""),
    "refused": (409, "Refund refused", ""),       # the payment runner said no (e.g. shutting down)
    "goods": (422, "Items not accepted", ""),     # the line items break AlipayCN's rules (pos/core/goods.py)
}


def refusal_title(refusal: Refusal) -> str:
    return REFUSAL_PROBLEMS.get(refusal.reason, (409, "Refused", ""))[1]


def _problem(refusal: Refusal, **hint: str) -> TillError:
    status, title, template = REFUSAL_PROBLEMS.get(refusal.reason, (409, "Refused", ""))
    detail = refusal.message + (f"; {template.format(**hint)}" if template and hint else "")
    return TillError(status, title, detail)


# Which catalogue entry tells the cashier about a sale or a refund in each state.
STATE_MESSAGE = {
    "CREATED": "scan_code", "PAYING": "processing", "QUERYING": "checking", "CANCELLING": "cancelling",
    "PAID": "paid", "DECLINED": "declined", "CANCELLED": "cancelled", "MANUAL_REVIEW": "manual_review",
    "REVERSING": "reversing", "REVERSED": "reversed", "PAID_LATE": "paid_late",
}
REFUND_MESSAGE = {"REFUNDED": "refund_done", "REFUND_DECLINED": "refund_declined",
                  "REFUND_PENDING": "refund_pending"}
_NOT_FINISHED_ADVICE = {"PAID": "a paid sale is refunded (POST /v1/refunds), not cancelled",
                        "MANUAL_REVIEW": "every cancel attempt is spent: the manager settles it "
                                         "(pos journal list --open)",
                        "REVERSING": "it was charged after the cashier was told 'No goods' and is being "
                                     "refunded in full",
                        "REVERSED": "it was charged too late and has been refunded in full",
                        "PAID_LATE": "it was charged after the cashier was told 'No goods': a manager "
                                     "refunds it or records that the goods were given "
                                     "(POST /v1/sales/{id}/resolve, manager token)"}


class TillService:
    """The till interface's backend (pos.till.api.TillBackend)."""

    def __init__(self, *, cfg: Config, journal: Journal, links: TillLinks, payments: PaymentRunner,
                 displays: Displays, devices: DeviceBoard, counter: Counter, cashier: CashierFlow,
                 sales: SaleDesk, day: BusinessDay, lock: threading.RLock, changed: threading.Condition,
                 clock: Callable[[], float], gateway: GatewayClient | None) -> None:
        self._cfg = cfg
        self._journal = journal
        self._links = links
        self._payments = payments
        self._displays = displays
        self._devices = devices
        self._counter = counter
        self._cashier = cashier
        self._sales = sales
        self._day = day
        self._lock = lock
        self._changed = changed
        self._clock = clock
        self._gateway = gateway
        self._tz = ZoneInfo(cfg.terminal.timezone)
        self.default_currency = cfg.terminal.currency
        self.started_at = clock()
        self.last_alarm: str | None = None

    # ------------------------------------------------------------ views

    @staticmethod
    def _amount(m: Money) -> dict[str, Any]:
        return {"value": m.minor, "currency": m.currency, "text": m.major_str()}

    def _iso(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self._tz).isoformat(timespec="seconds")

    def _refund_view(self, r: RefundRecord, till_id: str) -> dict[str, Any]:
        key = REFUND_MESSAGE.get(r.state.value, "processing")
        return {"id": str(r.refund_id), "saleId": till_id, "merchantRefundId": r.merchant_refund_id,
                "refundId": r.gateway_refund_id, "state": r.state.value, "amount": self._amount(r.amount),
                "final": r.state in (RefundState.REFUNDED, RefundState.REFUND_DECLINED),
                "message": self._displays.message(key, amount=r.amount.display())}

    def _view(self, till: TillSale) -> dict[str, Any]:
        sale = self._journal.get_sale(till.sale_id) if till.sale_id is not None else None
        state = sale.state.value if sale else till.state
        refunds = self._journal.list_refunds(sale_id=sale.sale_id) if sale else []
        refunded = sum((r.amount.minor for r in refunds if r.state == RefundState.REFUNDED), 0)
        if sale and sale.state is SaleState.REVERSED:
            refunded += sale.amount.minor   # the full refund that gave a late charge back
        key = STATE_MESSAGE[state]
        if state == "QUERYING" and sale and sale.is_qr:
            key = "scan_qr"          # the customer scans the slip's code
        elif state == "QUERYING" and sale and sale.result_cause is Cause.CUSTOMER_CONFIRMING:
            key = "confirm_in_app"   # the engine's rule: only then is the customer asked to confirm
        # Only an F code explains a decline (a payQuery CLOSED status comes with code
        # SUCCESS, whose text "Done" would be a lie): the same rule as the engine's display.
        code_row = result_codes_for(self._cfg).get(sale.result_code or "") if sale else None
        if (state == "DECLINED" and sale and code_row is not None and code_row.status == "F"
                and self._displays.has(f"code.{sale.result_code}")):
            key = f"code.{sale.result_code}"
            if sale.is_qr and self._displays.has(f"qr.code.{sale.result_code}"):
                key = f"qr.code.{sale.result_code}"   # e.g. the slip's QR code expired
        return {
            "id": till.till_id, "state": state, "final": state in FINAL_FOR_TILL,
            "merchantTransId": sale.merchant_trans_id if sale else None,
            "acquirementId": sale.acquirement_id if sale else None,
            "amount": self._amount(till.amount), "refunded": self._amount(Money(refunded, till.amount.currency)),
            "reference": till.reference, "orderTitle": till.order_title,
            "codeLast4": (sale.code_last4 or None) if sale else None,
            "method": "qr" if sale and sale.is_qr else "code",
            "message": self._displays.message(key, amount=till.amount.display()),
            "createdAt": self._iso(till.created_at),
            "updatedAt": self._iso(sale.updated_at if sale else till.updated_at),
            "refunds": [self._refund_view(r, till.till_id) for r in refunds],
            "reversal": ({"merchantRefundId": sale.reversal_id, "refundId": sale.reversal_gateway_id}
                         if sale and sale.reversal_id else None),
            # A sale a manager settles with Alipay's support: who to call (the ids are above).
            "support": (self._cfg.manager.support_contact
                        if state in ("MANUAL_REVIEW", "REVERSING", "PAID_LATE") else None),
        }

    def _till_sale(self, key: str) -> TillSale | None:
        """The till sale named by its id, or the one that started a journal sale named by number or id."""
        till = self._links.get(key)
        if till is None:
            sale = self._journal.get_sale(key)
            if sale is not None:
                till = self._links.of_sale(sale.sale_id) or _without_till_sale(sale)
        return till

    def _resolve_sale(self, key: str) -> SaleRecord:
        sale = self._sales.find(key)
        if sale is None:
            raise TillError(404, "No such sale", f"no sale with id {key!r}")
        return sale

    # ------------------------------------------------------------ sales

    def _check_currency(self, currency: str) -> None:
        """The till may only ask for currencies this terminal's contract settles (seed 002 for AlipayCN)."""
        term = self._cfg.terminal
        if currency == term.currency:
            return
        if term.wallet == "ALIPAY_CN":
            try:
                validate_cn_currencies(currency, term.settlement_currency or term.currency)
                return
            except CurrencyError as exc:
                raise TillError(422, "Currency not accepted", f"{exc}; this terminal takes {term.currency}") from None
        raise TillError(422, "Currency not accepted", f"this terminal takes {term.currency}, not {currency}")

    def _journal_unavailable(self, why: str) -> TillError:
        return TillError(503, "Journal unavailable",
                         f"the terminal cannot write its journal{why}: no sale can start; run 'pos doctor'")

    def create_sale(self, amount: Money, reference: str, order_title: str, method: str = "code",
                    goods: Sequence[GoodsLine] = ()) -> dict[str, Any]:
        """A sale waiting for the customer's code; with method "qr", a merchant-presented QR sale started
        at once (its "scan to pay" slip prints when the gateway gives the code). `goods`: the till's
        line items (checked here; an AlipayCN terminal on the v1 API sends them)."""
        with self._lock:
            if self._payments.recovering:
                raise TillError(503, "Terminal not ready",
                                "the terminal is settling sales from before a restart; try again in a moment")
            why = self._cashier.sales_refusal()
            if why is not None:
                raise TillError(503, "Sales closed", why)
            if self._cashier.busy():
                raise TillError(409, "A sale is already open",
                                "finish or cancel the open sale first (one sale at a time)")
            if self._counter.mode not in (Mode.IDLE, Mode.RESULT, Mode.AMOUNT, Mode.SALE):
                raise TillError(409, "Terminal in use", "the manager menu is open on the terminal")
            self._check_currency(amount.currency)
            refusal = self._cashier.check_amount(amount) or check_goods(goods)
            if refusal is not None:
                raise _problem(refusal)
            journal = self._devices["journal"]
            if not journal.ok:
                raise self._journal_unavailable(f" ({journal.last_error})")
            if method == "qr" and not self._payments.offers_qr:
                raise TillError(422, "QR sale not available", QR_UNAVAILABLE)
            try:
                till = self._cashier.await_scan(amount, reference, order_title, goods_info(goods))
            except JournalError as exc:
                self._cashier.journal_failed(exc)
                raise self._journal_unavailable("") from None
            if method == "qr" and self._cashier.start_qr_sale() is None:
                self._cashier.cancel_pending()
                raise TillError(409, "QR sale not started", "the terminal could not start the QR sale (see its "
                                                            "display); nothing was charged: try again")
            return self._view(self._links.get(till.till_id) or till)

    def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        with self._lock:
            till = self._till_sale(sale_id)
            return None if till is None else self._view(till)

    def wait_sale(self, sale_id: str, timeout: float) -> dict[str, Any] | None:
        """The till's long poll: the sale's view once it is final for the till, or when the time is up.

        The journal is read when the wait starts, once when the sale leaves the wait for its scan
        (to learn its journal sale) and for the answer: each wake-up in between (the terminal's
        changes: a scan taken, a sale finished, a cancel) is checked against what the counter
        and the payment runner hold in memory."""
        deadline = time.monotonic() + timeout
        with self._changed:
            till = self._till_sale(sale_id)
            while till is not None and not self._over(till):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 1.0))
                if till.sale_id is None and not self._awaits_scan(till):
                    c = self._counter
                    if c.current_till == till.till_id and c.current_sale is not None:
                        till = replace(till, sale_id=c.current_sale)   # scanned: its sale started
                    else:
                        till = self._links.get(till.till_id) or till   # cancelled, or moved on
            return None if till is None else self._view(till)

    def _awaits_scan(self, till: TillSale) -> bool:
        pending = self._counter.pending
        return pending is not None and pending.till_id == till.till_id

    def _over(self, till: TillSale) -> bool:
        """Whether the till sale is final for the till, from memory when the runner knows its sale."""
        if till.sale_id is None:
            return till.state in FINAL_FOR_TILL
        state = self._payments.sale_state(till.sale_id)
        if state is None:   # not one the runner has seen: the journal says
            sale = self._journal.get_sale(till.sale_id)
            return sale is None or sale.state.value in FINAL_FOR_TILL
        return state.value in FINAL_FOR_TILL

    def cancel_sale(self, sale_id: str) -> dict[str, Any]:
        with self._lock:
            till = self._till_sale(sale_id)
            if till is None:
                raise TillError(404, "No such sale", f"no sale with id {sale_id!r}")
            if till.sale_id is None:
                pending = self._counter.pending
                if till.state == "CREATED" and pending is not None and pending.till_id == till.till_id:
                    self._cashier.cancel_pending()
                elif till.state == "CREATED":
                    self._links.cancel(till.till_id, self._clock())
                return self._view(self._links.get(till.till_id) or till)
            sale = self._journal.get_sale(till.sale_id)
            assert sale is not None
            if sale.state.value in FINAL_FOR_TILL:
                advice = _NOT_FINISHED_ADVICE.get(sale.state.value, "nothing to cancel")
                raise TillError(409, "Sale already finished", f"sale is {sale.state.value}: {advice}")
            self._payments.abort(sale.sale_id)
            return self._view(till)

    # ------------------------------------------------------------ refunds

    def refund(self, sale_id: str, amount: Money | None, reason: str,
               idempotency_key: str | None = None) -> dict[str, Any]:
        with self._lock:
            sale = self._resolve_sale(sale_id)
            refund_id = self._keyed_refund(idempotency_key, sale, amount) if idempotency_key else None
            if refund_id is None:
                outcome = self._sales.refund(sale, amount, reason or "refund by the till")
                if isinstance(outcome, Refusal):
                    raise _problem(outcome, left=self._sales.left(sale).receipt())
                refund_id = outcome
                if idempotency_key:
                    self._links.bind_refund_key(idempotency_key, refund_id)
        record = self._payments.wait_refund(refund_id, timeout=self._cfg.gateway.read_timeout + 5)
        with self._lock:
            record = record or self._journal.get_refund(refund_id)
            assert record is not None
            return self._refund_view(record, sale_id)

    def _keyed_refund(self, key: str, sale: SaleRecord, amount: Money | None) -> int | None:
        """The refund a till already asked for under this Idempotency-Key, or None to create it.

        A till that timed out retries with the same key and must not refund twice.
        The key is recorded before the refund is created; if the terminal stopped
        in between, the journal's refund made for it (same sale and amount, not
        claimed by another key, created after the key) is found again.
        """
        known = self._links.refund_key(key)
        wanted = amount.minor if amount is not None else None
        if known is None:
            self._links.add_refund_key(key, sale.sale_id, wanted, self._clock())
            return None
        if known.sale_id != sale.sale_id or known.amount_minor != wanted:
            raise TillError(422, "Idempotency-Key reused",
                            f"the key {key!r} was used for another refund: use a new key for a new refund")
        if known.refund_id is not None:
            return known.refund_id
        claimed = self._links.claimed_refunds()
        for r in self._journal.list_refunds(sale_id=sale.sale_id):
            if (r.refund_id not in claimed and r.created_at >= known.created_at
                    and (wanted is None or r.amount.minor == wanted)):
                self._links.bind_refund_key(key, r.refund_id)
                return r.refund_id
        return None

    # ------------------------------------------------------------ the manager's list

    def resolve(self, sale_id: str, action: Resolution, by: str = "") -> dict[str, Any]:
        """A manager settles a PAID_LATE sale from the till: "refund" (waits for the refund's answer,
        at most the gateway's read timeout) or "goods_given". The audit log says it was the till."""
        with self._lock:
            sale = self._resolve_sale(sale_id)
            try:
                who = f"{by} (the till interface, manager token)" if by else "the till interface (manager token)"
                self._payments.resolve(sale.sale_id, action, who)
            except ResolveRefused as exc:
                status, title = _RESOLVE_PROBLEMS.get(exc.refusal.reason, (409, "Cannot settle the sale"))
                raise TillError(status, title, str(exc)) from None
        if action == "refund":
            self._payments.wait_reversal(sale.sale_id, timeout=self._cfg.gateway.read_timeout + 5)
        with self._lock:
            till = self._till_sale(sale_id) or _without_till_sale(self._resolve_sale(sale_id))
            return self._view(till)

    # ------------------------------------------------------------ reports and health

    def x_report(self) -> dict[str, Any]:
        with self._lock:
            return self._day.x_report(print_it=False).as_dict()  # the till reads totals; the keypad prints them

    def z_report(self) -> dict[str, Any]:
        with self._lock:
            if self._cashier.busy():
                raise TillError(409, "A sale is open", "finish the open sale before closing the day")
            return self._day.close().as_dict()

    def reconciliation(self, day: str) -> dict[str, Any]:
        """The day's imported Alipay files matched against the journal (see `pos reconcile`)."""
        # Imported here, at the first reconciliation asked for: a sale never needs the files' parser
        # and matcher (0.25 MB, 17 ms at start).
        from pos.reconcile.store import check_day, day_report

        try:
            check_day(day)
        except ValueError as exc:
            raise TillError(422, "Invalid date", str(exc)) from None
        try:
            rec = day_report(self._journal, day, store_id=self._cfg.reconcile.store_id)
        except JournalError as exc:
            raise self._journal_unavailable(str(exc)) from None
        if not rec.files:
            raise TillError(404, "No reconciliation files",
                            f"no Alipay files for {day} are imported: run 'pos reconcile fetch --date {day}' "
                            f"and 'pos reconcile report --date {day}' (or set [reconcile] fetch_at)")
        return rec.as_json()

    def health(self) -> dict[str, Any]:
        """Answered without the terminal's lock and without the runner's or the journal's (a sale
        holds them while it commits): the runner's open-item counts kept by every step, the
        devices' and the gateway's last known health (each an immutable value), a stat of the
        journal's three files."""
        counts = self._payments.open_counts()
        path = Path(self._journal.path)
        journal_bytes = 0
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(OSError):   # no -wal/-shm once the journal is closed
                journal_bytes += part.stat().st_size
        link = self._gateway.health() if self._gateway is not None else GatewayHealth()
        latency, gateway_error = link.last_latency, link.last_error
        devices = dict(self._devices)
        degraded = (not all(d.ok for d in devices.values()) or gateway_error is not None
                    or counts.needing_manager > 0)
        sales_refused = self._cashier.sales_refusal()
        degraded = degraded or sales_refused is not None
        status = "starting" if self._payments.recovering else ("degraded" if degraded else "ok")
        return {
            "status": status,
            "version": __version__,
            "uptime_s": round(self._clock() - self.started_at, 3),
            "gateway": {"latency_ms": None if latency is None else round(latency * 1000, 1),
                        "last_error": gateway_error},
            "devices": {name: {"ok": d.ok, "last_error": d.last_error} for name, d in devices.items()},
            "open_items": counts.open_items,
            "journal_bytes": journal_bytes,
            "mode": self._counter.mode.value,
            "last_alarm": self.last_alarm,
            "sales_refused": sales_refused,
        }


_RESOLVE_PROBLEMS: dict[str, tuple[int, str]] = {
    "not_paid_late": (409, "Sale is not waiting for a manager"),
    "no_acquirement_id": (409, "Cannot refund the sale"),
    "no_sale": (404, "No such sale"),
    "stopping": (503, "Terminal not ready"),
}


def _without_till_sale(sale: SaleRecord) -> TillSale:
    """A sale no till sale started (one from before the till table existed): shown from the journal alone."""
    return TillSale(str(sale.sale_id), sale.amount, sale.reference, sale.order_title, sale.created_at,
                    sale.updated_at, sale.state.value, sale.sale_id)
