"""Runs the payment engine: real gateway, real clock, the journal, threads.

`PaymentService` is what the terminal flows and the till interface (issue 7)
call. It owns the only `Engine`, feeds it events and carries out its
commands in order: a `Record` is committed to the journal before anything
after it runs (so every request leaves after the state that leads to it is
on disk), requests go to a small thread pool (one in flight per sale or
refund, the engine sees to that), and Show / PrintReceipt / Alarm / Finished
are handed to subscribers on a notifier thread, outside every lock.

Time comes only from the injected clock (`Clock.now()`, epoch seconds) and
every wait goes through `Clock.wait`, so tests may run a scaled clock.

Recovery (design rule 3): `recover()` must be called once on start. It hands
every open sale and refund from the journal to the engine. A sale whose pay
may have left (PAYING, QUERYING) is queried, never paid again; CANCELLING
keeps cancelling; a CREATED sale's pay never left (PAYING is committed
before a pay is sent) and it is not sent now - the scan is stale and the
customer may be gone - so it is closed as CANCELLED without a request.
New scans are refused until no recovered sale is still in progress.

Stop (SIGTERM): `stop()` refuses new sales and sends no new request; calls in
flight are let finish and their answers committed. Whatever was scheduled
is on disk and is resumed by the next `recover()`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pos.config import PaymentSection
from pos.core.engine import (
    Abort, Command, Engine, Event, GatewayAnswer, Record, Recover, RefundRefused, SaleRefused, SendCancel,
    SendPay, SendQuery, SendRefund, StartRefund, StartSale, Tick,
)
from pos.core.outcomes import Gateway, GatewayResult, Unknown
from pos.journal.journal import Journal
from pos.core.money import AmountError, Money, parse_amount
from pos.core.records import (
    REFUND_FINAL, SALE_ACTIVE, SALE_SETTLED_FOR_CASHIER, RefundRecord, RefundState, SaleRecord, SaleState,
)

__all__ = ["Clock", "SystemClock", "PaymentService", "Subscriber", "SaleRefused", "RefundRefused"]

log = logging.getLogger("pos.payments.runner")

Subscriber = Callable[[Command], None]


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (held by the caller) for at most `timeout` seconds of this clock."""


class SystemClock:
    """The wall clock (epoch seconds: the journal's times must survive a restart)."""

    def now(self) -> float:
        return time.time()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


_STOP = object()


class PaymentService:
    """One sale at a time, refunds, recovery and the background corrector, over one journal."""

    def __init__(self, journal: Journal, gateway: Gateway, settings: PaymentSection, *,
                 clock: Clock | None = None, rng: random.Random | None = None, io_workers: int = 4) -> None:
        self.journal = journal
        self.gateway = gateway
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = Engine(settings, rng=rng)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._subscribers: list[Subscriber] = []
        self._notes: queue.Queue[object] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="pos-gateway")
        self._sale_states: dict[int, SaleState] = {}
        self._refund_states: dict[int, RefundState] = {}
        self._recovered = False
        self._recovering: set[int] = set()
        self._stopping = False
        self._inflight = 0
        self._loop = threading.Thread(target=self._run_loop, name="pos-engine", daemon=True)
        self._notifier = threading.Thread(target=self._run_notifier, name="pos-notify", daemon=True)
        self._loop.start()
        self._notifier.start()

    # ------------------------------------------------------------- public API

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(command)` for every Show, PrintReceipt, Alarm and Finished. Returns an unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def recover(self) -> int:
        """Resume every open sale and refund in the journal; returns how many. Call once, before any sale."""
        with self._lock:
            items = self.journal.open_items()
            sales = tuple(i for i in items if isinstance(i, SaleRecord))
            refunds = tuple(i for i in items if isinstance(i, RefundRecord))
            self._recovering = {s.sale_id for s in sales if s.state in SALE_ACTIVE}
            self._handle(Recover(sales, refunds, self.clock.now()))
            self._recovered = True
            self._cond.notify_all()
            return len(items)

    @property
    def recovering(self) -> bool:
        """True until recover() ran and every sale it resumed has left CREATED..CANCELLING."""
        with self._lock:
            return not self._recovered or bool(self._recovering)

    def busy(self) -> bool:
        """True while a sale is in progress (CREATED..CANCELLING): a new one must wait (design rule 4)."""
        with self._lock:
            return self.engine.active_sale() is not None

    def wait_recovered(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self.recovering, timeout)

    def start_sale(self, amount: Money, code: str, scanned_at: float, order_title: str = "",
                   reference: str = "") -> int:
        """Start a sale and send its pay; returns the sale id. Raises SaleRefused (with .key) if not now."""
        with self._lock:
            if self._stopping:
                raise SaleRefused("busy", "the terminal is shutting down: no new sale is accepted")
            if self.recovering:
                raise SaleRefused("recovering", "the terminal is still settling sales from before the "
                                  "restart: wait a moment and scan again")
            if not isinstance(code, str) or not code.strip():
                raise SaleRefused("scan_code", "no payment code: scan the customer's code")
            if not isinstance(amount, Money) or amount.minor <= 0:
                raise SaleRefused("ready", f"the amount must be above zero, got {amount!r}")
            try:
                limit = parse_amount(self.settings.max_amount, amount.currency)
            except AmountError:
                limit = None
            if limit is not None and amount > limit:
                raise SaleRefused("ready", f"{amount.receipt()} is more than [payment] max_amount "
                                  f"({limit.receipt()}): check the amount")
            now = self.clock.now()
            self.engine.admit_sale(scanned_at=scanned_at, now=now)
            record = self.journal.create_sale(amount=amount, code=code.strip(), scanned_at=scanned_at, now=now,
                                              order_title=order_title, reference=reference)
            self._sale_states[record.sale_id] = record.state
            self._handle(StartSale(record, code.strip(), now))
            return record.sale_id

    def abort(self, sale_id: int) -> bool:
        """The cashier gives up on the sale: cancel it (a pay in flight is cancelled after it answers)."""
        with self._lock:
            if self._sale_states.get(sale_id) not in (SaleState.PAYING, SaleState.QUERYING, SaleState.CREATED):
                return False
            self._handle(Abort(sale_id, self.clock.now()))
            return True

    def refund(self, sale_id: int, amount: Money, reason: str = "") -> int:
        """Refund (part of) a PAID sale; returns the refund id. Raises RefundRefused with the reason."""
        with self._lock:
            if self._stopping:
                raise RefundRefused("the terminal is shutting down: try again after the restart")
            sale = self.journal.get_sale(sale_id)
            if sale is None:
                raise RefundRefused(f"there is no sale {sale_id}: check the number on the receipt")
            self.engine.check_refund(sale, self.journal.list_refunds(sale_id=sale.sale_id), amount)
            now = self.clock.now()
            record = self.journal.create_refund(sale=sale, amount=amount, reason=reason, now=now)
            self._refund_states[record.refund_id] = record.state
            self._handle(StartRefund(record, now))
            return record.refund_id

    def wait(self, sale_id: int, timeout: float | None = None) -> SaleRecord | None:
        """Wait until the cashier's part of the sale is over (PAID, DECLINED, CANCELLED, MANUAL_REVIEW)."""
        with self._cond:
            self._cond.wait_for(lambda: self._sale_states.get(sale_id, SaleState.PAID) in SALE_SETTLED_FOR_CASHIER,
                                timeout)
        return self.journal.get_sale(sale_id)

    def wait_refund(self, refund_id: int, timeout: float | None = None) -> RefundRecord | None:
        """Wait until the refund is REFUNDED, REFUND_DECLINED or REFUND_PENDING."""
        done = REFUND_FINAL | {RefundState.REFUND_PENDING}
        with self._cond:
            self._cond.wait_for(lambda: self._refund_states.get(refund_id, RefundState.REFUNDED) in done, timeout)
        return self.journal.get_refund(refund_id)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no sale is in progress and no request is in flight (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._inflight == 0 and self.engine.active_sale() is None, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """No new sale or request; let calls in flight finish and commit their answers."""
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
        self._pool.shutdown(wait=True)
        self._loop.join(timeout)
        self._notes.put(_STOP)
        self._notifier.join(timeout)

    # -------------------------------------------------------------- internals

    def _handle(self, event: Event) -> None:
        """Feed the engine (lock held) and carry out its commands in order."""
        for command in self.engine.handle(event):
            if isinstance(command, Record):
                # Write before you send: committed before any later command runs.
                self.journal.record(command)
                for sale in command.sales:
                    self._sale_states[sale.sale_id] = sale.state
                    if sale.state not in SALE_ACTIVE:
                        self._recovering.discard(sale.sale_id)
                for refund in command.refunds:
                    self._refund_states[refund.refund_id] = refund.state
            elif isinstance(command, (SendPay, SendQuery, SendCancel, SendRefund)):
                if self._stopping:
                    # Left scheduled on disk; the next start's recover() picks it up.
                    log.info("shutting down: not sending %s", type(command).__name__)
                    continue
                self._inflight += 1
                self._pool.submit(self._call, command)
            else:
                self._notes.put(command)
        self._cond.notify_all()

    def _call(self, command: SendPay | SendQuery | SendCancel | SendRefund) -> None:
        result: GatewayResult
        try:
            if isinstance(command, SendPay):
                request, kind, item = "pay", "sale", command.sale_id
                result = self.gateway.pay(merchant_trans_id=command.merchant_trans_id,
                                          identity_code=command.identity_code, amount=command.amount,
                                          order_title=command.order_title)
            elif isinstance(command, SendQuery):
                request, kind, item = "query", "sale", command.sale_id
                result = self.gateway.query(merchant_trans_id=command.merchant_trans_id)
            elif isinstance(command, SendCancel):
                request, kind, item = "cancel", "sale", command.sale_id
                result = self.gateway.cancel(merchant_trans_id=command.merchant_trans_id)
            else:
                request, kind, item = "refund", "refund", command.refund_id
                result = self.gateway.refund(acquirement_id=command.acquirement_id,
                                             merchant_refund_id=command.merchant_refund_id,
                                             amount=command.amount, reason=command.reason)
        except Exception as exc:  # noqa: BLE001 - a gateway bug must not lose the sale: it is Unknown
            log.exception("gateway call failed")
            request = {SendPay: "pay", SendQuery: "query", SendCancel: "cancel"}.get(type(command), "refund")  # type: ignore[arg-type]
            kind = "refund" if isinstance(command, SendRefund) else "sale"
            item = command.refund_id if isinstance(command, SendRefund) else command.sale_id
            result = Unknown(f"gateway error: {type(exc).__name__}")
        with self._lock:
            self._inflight -= 1
            try:
                self._handle(GatewayAnswer(kind, item, request, command.seq, result, self.clock.now()))  # type: ignore[arg-type]
            except Exception:  # pragma: no cover - a journal failure: nothing more may be sent
                log.exception("could not record a gateway answer")
                self._stopping = True
                self._cond.notify_all()

    def _run_loop(self) -> None:
        """Ticks the engine when its next schedule or alarm is due (the background corrector)."""
        with self._lock:
            while not self._stopping:
                now = self.clock.now()
                wake = self.engine.next_wakeup()
                if wake is not None and wake <= now:
                    try:
                        self._handle(Tick(now))
                    except Exception:  # pragma: no cover - a journal failure
                        log.exception("engine tick failed")
                        self._stopping = True
                    continue
                self.clock.wait(self._cond, None if wake is None else wake - now)

    def _run_notifier(self) -> None:
        while True:
            note = self._notes.get()
            if note is _STOP:
                return
            with self._lock:
                subscribers = list(self._subscribers)
            for callback in subscribers:
                try:
                    callback(note)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a display fault never changes a payment
                    log.exception("subscriber failed on %s", type(note).__name__)
