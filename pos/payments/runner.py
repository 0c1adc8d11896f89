"""Runs the payment engine: real gateway, real clock, the journal, threads.

`PaymentRunner` is what the terminal flows and the till interface (issue 7)
call. It owns the only `Engine`, feeds it events and carries out its
commands in order: a `Record` is committed to the journal before anything
after it runs (so every request leaves after the state that leads to it is
on disk; a new sale's or refund's first Record is committed in the very
transaction that creates it: one durable commit before its request
leaves), requests go to a small thread pool (one in flight per sale or
refund, the engine sees to that) but a scan's pay, which the scanner's own
thread sends once it has left every lock (`pays_sent_here`: no hand-off on
the sale's path), and Show / PrintReceipt / Alarm / Finished are handed to
subscribers outside every lock of the runner, in the order the engine
produced them: those of a gateway answer by the thread that sent the request
and fed the answer, once it has left the runner's lock (the outcome reaches
the displays without a hand-off to another thread), all others by a
notifier thread.

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
flight (a gateway worker's or a caller's own, `pays_sent_here`) are let finish
and their answers committed. Whatever was scheduled
is on disk and is resumed by the next `recover()`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from pos.config import PaymentSection
from pos.core.engine import (
    Abort,
    Command,
    Engine,
    Event,
    GatewayAnswer,
    PrintReceipt,
    Record,
    Recover,
    Resolve,
    SendCancel,
    SendPay,
    SendQuery,
    SendRefund,
    SendReverse,
    StartRefund,
    StartSale,
    Tick,
)
from pos.core.errors import UserError
from pos.core.events import ItemKind, Notified, RefundNotified, Send
from pos.core.money import AmountError, Money, parse_amount
from pos.core.outcomes import Gateway, GatewayResult, QrGateway, Unknown
from pos.core.records import (
    REFUND_FINAL,
    REFUND_SETTLED_FOR_MANAGER,
    SALE_ABORTABLE,
    SALE_ACTIVE,
    SALE_FINAL,
    SALE_NEEDS_MANAGER,
    SALE_SETTLED_FOR_CASHIER,
    RefundRecord,
    RefundState,
    Request,
    Resolution,
    SaleRecord,
    SaleState,
)
from pos.core.rules import Refusal, check_refund, check_sale_amount
from pos.journal.journal import Journal
from pos.journal.reads import OpenCounts

__all__ = ["Clock", "SystemClock", "PaymentRunner", "Subscriber", "SaleRefused", "RefundRefused", "ResolveRefused",
           "QR_UNAVAILABLE"]

log = logging.getLogger("pos.payments.runner")

Subscriber = Callable[[Command], None]
# Queues the receipt a PrintReceipt asks for, inside the journal transaction of the step
# that asked (see PaymentRunner.write_receipts).
ReceiptWriter = Callable[[PrintReceipt], None]

# The display message each reason for refusing a sale is shown with (the
# terminal's catalogue keys; "ready" sends the cashier back to the amount).
SALE_REFUSAL_KEYS: dict[str, str] = {
    "busy": "busy",
    "stopping": "busy",
    "journal": "busy",
    "recovering": "recovering",
    "scan_too_old": "scan_too_old",
    "no_code": "scan_code",
    "not_positive": "ready",
    "over_max_amount": "ready",
    "qr_unavailable": "qr_unavailable",
}


# Final sales (and refunds) whose last state the runner keeps in memory after they settle; older
# ones are read from the journal (a till asking about a sale long finished), so the runner's memory
# does not grow with every sale the terminal has made since it started.
KEPT_FINAL = 1000


def _keep(states: dict[int, Any], final: dict[int, None], key: int, state: Any, is_final: bool) -> None:
    """states[key] = state; `final` lists the final keys, oldest first, at most KEPT_FINAL of them."""
    states[key] = state
    final.pop(key, None)
    if is_final:
        final[key] = None
        if len(final) > KEPT_FINAL:
            oldest = next(iter(final))
            del final[oldest]
            states.pop(oldest, None)


QR_UNAVAILABLE = ("the configured gateway protocol offers no merchant-presented QR: only [gateway] "
                  "protocol = \"ams\" (Alipay's v1 API, its order code) does; scan the customer's code instead")


class SaleRefused(UserError):
    """A new sale cannot start; `key` is the display message key (busy, scan_too_old, ...)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.key = SALE_REFUSAL_KEYS.get(refusal.reason, "ready")


class RefundRefused(UserError):
    """A refund is not allowed; the message says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class ResolveRefused(UserError):
    """A manager's settlement of a PAID_LATE sale is not possible; the message says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (held by the caller) for at most `timeout` seconds of this clock."""


class SystemClock:
    """Epoch seconds (the journal's times must survive a restart) that advance with the
    monotonic clock, so a schedule ("query again in 5 s") neither stalls nor fires early when
    the wall clock is stepped (NTP, a technician). `resync()` catches up with the wall clock;
    the runner calls it whenever no sale or refund is in progress, so records are dated right.
    """

    def __init__(self, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall, self._mono = wall, monotonic
        self._offset = wall() - monotonic()

    def now(self) -> float:
        return self._mono() + self._offset

    def resync(self) -> None:
        self._offset = self._wall() - self._mono()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class PaymentRunner:
    """One sale at a time, refunds, recovery and the background corrector, over one journal."""

    def __init__(self, journal: Journal, gateway: Gateway, settings: PaymentSection, *,
                 clock: Clock | None = None, rng: random.Random | None = None, io_workers: int = 4) -> None:
        self.journal = journal
        self.gateway = gateway
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = Engine(settings.schedule(), rng=rng)
        self._rng = rng
        # A commit failed (disk full, read-only): the engine may be a step ahead of the journal.
        # Nothing is sent and no sale starts until the engine is rebuilt from the journal.
        self._broken = False
        self._lock = threading.RLock()
        # Waiters for a state (a sale settled, the runner idle...) wait on _cond, notified after every
        # step. The engine's loop sleeps on a bell of its own until its next schedule, rung only when a
        # step brings that schedule earlier, or to stop or rebuild: a step that leaves it as it was (most
        # of a sale's) wakes no thread that would only go back to sleep.
        self._cond = threading.Condition(self._lock)
        self._tick_bell = threading.Condition(self._lock)
        self._loop_until: float | None = None   # (lock held) what the loop sleeps until; None: it runs
        # Replaced, never changed in place (under the lock): delivery reads it without the lock.
        self._subscribers: tuple[Subscriber, ...] = ()
        self._receipt_writer: ReceiptWriter | None = None
        # Notes for subscribers, in the engine's order: appended under the runner's lock, delivered
        # by one thread at a time (_deliver). _notes_lock guards _notes and _delivering only, held for
        # a few lines, never while a subscriber runs.
        self._notes: collections.deque[Command] = collections.deque()
        self._notes_lock = threading.Lock()
        self._delivering = False
        self._deliver_here = False   # (lock held) the thread feeding the engine delivers its notes itself
        self._notifier_bell: queue.SimpleQueue[bool] = queue.SimpleQueue()   # True: stop
        self._pool = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="pos-gateway")
        # pays_sent_here(): the pays a thread's steps queued for it to send once it has left every
        # lock (its `pays`, None outside the context), and how many such pays are queued or in
        # flight on their callers' threads (lock held; stop() waits for them as for the pool's).
        self._here = threading.local()
        self._pays_here = 0
        # The last committed state of each sale and refund not final, and of the last KEPT_FINAL
        # final ones of each (oldest dropped first: the journal keeps every one, memory stays flat).
        self._sale_states: dict[int, SaleState] = {}
        self._refund_states: dict[int, RefundState] = {}
        self._final_sales: dict[int, None] = {}     # final, in the order they became final
        self._final_refunds: dict[int, None] = {}
        # Items not final -> whether only a manager can settle them; `_counts` is its summary,
        # replaced (never changed) after every committed step, read without the lock (health).
        self._open: dict[tuple[str, int], bool] = {}
        self._counts = OpenCounts(0, 0)
        self._recovered = False
        self._recovering: set[int] = set()
        # Set when the engine was rebuilt after a failed commit, until its open sales settle:
        # a refused scan then names the journal, not a restart.
        self._resumed_after_fault = False
        self._stopping = False
        self._inflight = 0
        self._loop = threading.Thread(target=self._run_loop, name="pos-engine", daemon=True)
        self._notifier = threading.Thread(target=self._run_notifier, name="pos-notify", daemon=True)
        self._loop.start()
        self._notifier.start()

    # ------------------------------------------------------------- public API

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(command)` for every Show, PrintReceipt (but those a receipt writer queued:
        write_receipts), Alarm and Finished. Returns an unsubscribe. Callbacks run outside the
        runner's lock, one note at a time, in the engine's order: a gateway answer's on the thread that
        sent the request and fed the answer (a gateway worker, or the caller of pays_sent_here), the
        others on the notifier thread. A callback may call the runner; it
        must not wait long (it holds up that worker), and an exception it raises is only logged."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    left = list(self._subscribers)
                    left.remove(callback)
                    self._subscribers = tuple(left)
        return unsubscribe

    def write_receipts(self, writer: ReceiptWriter | None) -> None:
        """Queue receipts in the outcome's own transaction: `writer(PrintReceipt)` is called inside
        the journal transaction that commits the step asking for the receipt (PAID, REFUNDED...), on the
        runner's thread, after the step's records are written. What it writes through the runner's
        journal commits with the outcome, so no crash leaves a PAID sale or REFUNDED refund without
        its print job, and no extra durable commit is made for it. The writer must be quick (no
        rendering, no device) and must not raise for a printer problem: an exception rolls the step
        back, as a failed commit does. A PrintReceipt handed to the writer is not handed to
        subscribers. None: back to subscribers only."""
        with self._lock:
            self._receipt_writer = writer

    @contextlib.contextmanager
    def pays_sent_here(self) -> Iterator[None]:
        """Within this context a sale's pay, queued by a step this thread feeds the engine
        (start_sale), is not handed to a gateway worker: this thread sends it when the context
        exits, after everything inside has returned (so after every lock taken inside is
        released), reads the answer, commits the outcome and delivers its notes, as a worker
        would. The pay is committed (PAYING) before the context exits, as always before it is
        sent. Meanwhile this thread does nothing else: what it would read next waits (the
        scanner's next line waits in its serial buffer). Must not be entered with the runner's
        lock or any lock a subscriber takes held. Queries, cancels, refunds and every other
        thread's pays keep the worker pool. Nested: the outermost context sends."""
        if getattr(self._here, "pays", None) is not None:
            yield
            return
        pays: list[SendPay] = []
        self._here.pays = pays
        try:
            yield
        finally:
            self._here.pays = None
            self._send_here(pays)

    def _send_here(self, pays: list[SendPay]) -> None:
        """Send the pays queued by pays_sent_here(), each answered and delivered like a worker's."""
        for pay in pays:
            try:
                self._call(pay)
            except Exception:   # _call logs and settles its own failures: this is a bug, not an answer
                log.exception("sending a pay failed")
            finally:
                with self._lock:
                    self._pays_here -= 1
                    self._cond.notify_all()

    def recover(self) -> int:
        """Resume every open sale and refund in the journal; returns how many. Call once, before any sale."""
        with self._lock:
            items = self.journal.open_items()
            sales = tuple(i for i in items if isinstance(i, SaleRecord))
            refunds = tuple(i for i in items if isinstance(i, RefundRecord))
            self._recovering = {s.sale_id for s in sales if s.state in SALE_ACTIVE}
            self._count_open(sales, refunds, reset=True)
            self._handle(Recover(sales, refunds, self.clock.now()))
            self._recovered = True
            self._cond.notify_all()
            self._wake_loop()
            return len(items)

    @property
    def recovering(self) -> bool:
        """True until recover() ran and every sale it resumed has left CREATED..CANCELLING.
        Read without the lock (a sale holds it while it commits): two plain reads."""
        return not self._recovered or bool(self._recovering)

    def sale_state(self, sale_id: int) -> SaleState | None:
        """The sale's state as last committed by this runner (None: not one it has seen since
        start, or one of more than KEPT_FINAL sales final since: the journal has it). Read without
        the lock."""
        return self._sale_states.get(sale_id)

    def open_counts(self) -> OpenCounts:
        """Open sales and refunds (not final) and those needing a manager, as the journal's
        `open_counts()` would count them, kept up to date by every committed step: read
        without the runner's lock and without the journal (`/v1/health`); before recover()
        ran, the journal's count."""
        return self._counts if self._recovered else self.journal.open_counts()

    @property
    def journal_ok(self) -> bool:
        """False after a commit failed, until the engine is rebuilt from the journal (no sale starts meanwhile)."""
        with self._lock:
            return not self._broken

    @property
    def stopping(self) -> bool:
        """True once stop() was called or a commit failed (nothing more is sent until a restart)."""
        with self._lock:
            return self._stopping

    def busy(self) -> bool:
        """True while a sale is in progress (CREATED..CANCELLING): a new one must wait (design rule 4)."""
        with self._lock:
            return self.engine.active_sale() is not None

    def wait_recovered(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self.recovering, timeout)

    def start_sale(self, amount: Money, code: str, scanned_at: float, order_title: str = "",
                   reference: str = "", till_id: str | None = None, goods: str = "", *, qr: bool = False) -> int:
        """Start a sale and send its pay; returns the sale id. Raises SaleRefused (with .key) if not now.
        `till_id`: the till sale it serves, linked in the sale's own journal transaction; `goods`:
        its line items (AlipayCN goodsInfo text, checked by the caller: pos/core/goods.py).
        `qr`: a merchant-presented QR sale (no customer code; `code` is ignored): the pay asks the
        gateway for a code the customer scans, and the sale waits on queries and the notification."""
        with self._lock:
            if isinstance(self.clock, SystemClock) and self._idle_for_resync():
                self.clock.resync()   # the wall clock may have been stepped while idle
            now = self.clock.now()
            if qr:
                code, scanned_at = "", now
            refusal = self._sale_refusal(amount, code, scanned_at, now, qr=qr)
            if refusal is not None:
                raise SaleRefused(refusal)
            step = _FirstStep(self.engine, lambda created: StartSale(created, code.strip(), now))
            try:
                # The sale and the engine's first step (PAYING) in one transaction: one durable commit.
                record = self.journal.create_sale(amount=amount, code=code.strip(), scanned_at=scanned_at, now=now,
                                                  order_title=order_title, reference=reference, till_id=till_id,
                                                  goods=goods, qr=qr, first_step=step)
            except Exception:
                self._step_failed(step)
                raise
            self._keep_sale_state(record.sale_id, record.state)
            self._count_open((record,), ())
            self._carry_out(step.commands, step.committed)
            return record.sale_id

    def notified(self, merchant_trans_id: str, result: GatewayResult) -> str:
        """Alipay's verified notification about a payment, fed to the engine as one more answer.

        Returns "applied" (the sale changed state, committed to the journal before
        anything else ran), "queried" (a failure notification, a hint: the sale's next
        query was sent at once, its answer decides), "unchanged" (final already, a repeat,
        or a reading that settles nothing) or "unknown" (no sale has this merchantTransId).
        """
        with self._lock:
            sale = self.journal.get_sale(merchant_trans_id)
            if sale is None or sale.merchant_trans_id != merchant_trans_id:
                return "unknown"
            before = self._sale_states.get(sale.sale_id, sale.state)
            commands = self._handle(Notified(sale.sale_id, result, self.clock.now()))
            if self._sale_states.get(sale.sale_id, before) != before:
                return "applied"
            queried = any(isinstance(c, SendQuery) and c.sale_id == sale.sale_id for c in commands)
            return "queried" if queried else "unchanged"

    def refund_notified(self, merchant_refund_id: str, result: GatewayResult) -> str:
        """Alipay's verified notification about a refund (v1 notifyRefund), fed to the engine as one more answer.

        Returns "applied" (the refund changed state, committed to the journal before
        anything else ran), "unchanged" (final already, a repeat, or a reading that
        settles nothing), "unknown" (no refund has this merchantRefundId) or "mismatch"
        (it names another refundAmount than the one journaled: nothing changes).
        """
        with self._lock:
            refund = self.journal.get_refund(merchant_refund_id)
            if refund is None or refund.merchant_refund_id != merchant_refund_id:
                return "unknown"
            named = result.refund_amount if not isinstance(result, Unknown) else None
            if named is not None and named != refund.amount:
                return "mismatch"
            before = self._refund_states.get(refund.refund_id, refund.state)
            self._handle(RefundNotified(refund.refund_id, result, self.clock.now()))
            return "applied" if self._refund_states.get(refund.refund_id, before) != before else "unchanged"

    def abort(self, sale_id: int) -> bool:
        """The cashier gives up on the sale: cancel it (a pay in flight is cancelled after it answers)."""
        with self._lock:
            state = self._sale_states.get(sale_id)
            if state is None or state not in SALE_ABORTABLE:
                return False
            self._handle(Abort(sale_id, self.clock.now()))
            return True

    def refund(self, sale_id: int, amount: Money, reason: str = "", *, limit: Money | None = None) -> int:
        """Refund (part of) a PAID sale; returns the refund id. Raises RefundRefused with the reason.

        `limit` is [manager] refund_limit, when the caller enforces one (pos.core.rules.check_refund).
        """
        with self._lock:
            if self._stopping:
                raise RefundRefused(Refusal("stopping", "the terminal is shutting down: try again after the restart"))
            sale = self.journal.get_sale(sale_id)
            if sale is None:
                raise RefundRefused(Refusal("no_sale", f"there is no sale {sale_id}: check the number on the receipt"))
            refusal = check_refund(sale, self.journal.list_refunds(sale_id=sale.sale_id), amount, limit)
            if refusal is not None:
                raise RefundRefused(refusal)
            now = self.clock.now()
            step = _FirstStep(self.engine, lambda created: StartRefund(created, now))
            try:
                # While the engine waits to be rebuilt, the refund is only created: the rebuild resumes it.
                record = self.journal.create_refund(sale=sale, amount=amount, reason=reason, now=now,
                                                    first_step=None if self._broken else step)
            except Exception:
                self._step_failed(step)
                raise
            self._keep_refund_state(record.refund_id, record.state)
            self._count_open((), (record,))
            self._carry_out(step.commands, step.committed)
            return record.refund_id

    def resolve(self, sale_id: int, action: Resolution, by: str) -> SaleRecord:
        """A manager settles a PAID_LATE sale (charged after "No goods"): "refund" sends a full refund
        under a fresh merchantRefundId (REVERSING, committed first), "goods_given" makes it PAID.
        `by` (who, where) goes into the audit log. Raises ResolveRefused with the reason."""
        with self._lock:
            if self._stopping or self._broken:
                raise ResolveRefused(Refusal("stopping", "the terminal is shutting down or cannot write its "
                                                         "journal: try again after the restart"))
            sale = self.journal.get_sale(sale_id)
            if sale is None:
                raise ResolveRefused(Refusal("no_sale", f"there is no sale {sale_id}: check the number on the "
                                                        "receipt ('pos journal list --open')"))
            refusal = self.engine.admit_resolve(sale_id, action)
            if refusal is not None:
                if sale.state is not SaleState.PAID_LATE:
                    refusal = Refusal("not_paid_late", f"sale {sale.merchant_trans_id} is {sale.state.value}: only "
                                                       "a sale charged after the cashier said 'No goods' "
                                                       "(PAID_LATE) is settled this way")
                raise ResolveRefused(refusal)
            self._handle(Resolve(sale_id, action, by, self.clock.now()))
        record = self.journal.get_sale(sale_id)
        assert record is not None
        return record

    def wait_reversal(self, sale_id: int, timeout: float | None = None) -> SaleRecord | None:
        """Wait until the sale is no longer REVERSING (REVERSED, or PAID_LATE when the refund was declined)."""
        with self._cond:
            self._cond.wait_for(lambda: self._sale_states.get(sale_id) is not SaleState.REVERSING, timeout)
        return self.journal.get_sale(sale_id)

    def wait(self, sale_id: int, timeout: float | None = None) -> SaleRecord | None:
        """Wait until the cashier's part of the sale is over (PAID, DECLINED, CANCELLED, MANUAL_REVIEW)."""
        with self._cond:
            self._cond.wait_for(lambda: self._sale_states.get(sale_id, SaleState.PAID) in SALE_SETTLED_FOR_CASHIER,
                                timeout)
        return self.journal.get_sale(sale_id)

    def wait_refund(self, refund_id: int, timeout: float | None = None) -> RefundRecord | None:
        """Wait until the refund is REFUNDED, REFUND_DECLINED or REFUND_PENDING."""
        with self._cond:
            self._cond.wait_for(lambda: self._refund_states.get(refund_id, RefundState.REFUNDED)
                                in REFUND_SETTLED_FOR_MANAGER, timeout)
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
            self._wake_loop(now=True)
        self._pool.shutdown(wait=True)
        with self._cond:   # pays sent by their callers' threads (pays_sent_here) are let finish too
            self._cond.wait_for(lambda: self._pays_here == 0, timeout)
        self._loop.join(timeout)
        self._notifier_bell.put(True)   # it delivers what is still queued, then ends
        self._notifier.join(timeout)

    # -------------------------------------------------------------- internals

    @property
    def offers_qr(self) -> bool:
        """Whether the configured protocol offers a merchant-presented QR sale."""
        return isinstance(self.gateway, QrGateway)

    def _sale_refusal(self, amount: Money, code: str, scanned_at: float, now: float, *,
                      qr: bool = False) -> Refusal | None:
        """Why a sale may not start now (lock held), or None."""
        if self._stopping:
            return Refusal("stopping", "the terminal is shutting down: no new sale is accepted")
        if self._broken:
            return Refusal("journal", "the journal cannot record (disk full or read-only): nothing was charged; "
                                      "free space on the terminal or call service")
        if self.recovering:
            if self._resumed_after_fault:
                return Refusal("journal", "the journal could not record a moment ago (disk full or read-only?): "
                                          "the open sale is being settled from it; wait a moment and scan again")
            return Refusal("recovering", "the terminal is still settling sales from before the restart: "
                                         "wait a moment and scan again")
        self._resumed_after_fault = False
        if qr and not self.offers_qr:
            return Refusal("qr_unavailable", QR_UNAVAILABLE)
        if not qr and not code.strip():
            return Refusal("no_code", "no payment code: scan the customer's code")
        try:   # [payment] max_amount is written without a currency: read it in the sale's
            max_amount: Money | None = parse_amount(self.settings.max_amount, amount.currency)
        except AmountError:
            max_amount = None
        return check_sale_amount(amount, max_amount) or self.engine.admit_sale(scanned_at=scanned_at, now=now)

    def _handle(self, event: Event) -> list[Command]:
        """Feed the engine (lock held) and carry out its commands in order; returns them."""
        if self._broken and not isinstance(event, Recover):
            return []   # an answer for the engine that is being rebuilt: recovery asks again
        commands = self.engine.handle(event)
        self._carry_out(commands)
        return commands

    def _step_failed(self, step: _FirstStep) -> None:
        """An item's creation did not commit (lock held): an engine that took its first step is
        ahead of the journal and is rebuilt from it, as after any failed commit; one that did not
        is untouched."""
        if step.ran:
            self._journal_failed()

    def _journal_failed(self) -> None:
        """A commit failed (lock held): the engine may be a step ahead of the journal. Nothing is
        sent and no sale starts until the loop has rebuilt it from the journal; woken for that now."""
        self._broken = True
        self._cond.notify_all()
        self._wake_loop(now=True)

    def _recorded(self, command: Record) -> None:
        """What the runner keeps of a committed Record (lock held)."""
        for sale in command.sales:
            self._keep_sale_state(sale.sale_id, sale.state)
            if sale.state not in SALE_ACTIVE:
                self._recovering.discard(sale.sale_id)
        for refund in command.refunds:
            self._keep_refund_state(refund.refund_id, refund.state)
        self._count_open(command.sales, command.refunds)

    def _keep_sale_state(self, sale_id: int, state: SaleState) -> None:
        """Note a sale's committed state (lock held); of final sales only the last KEPT_FINAL stay."""
        _keep(self._sale_states, self._final_sales, sale_id, state, state in SALE_FINAL)

    def _keep_refund_state(self, refund_id: int, state: RefundState) -> None:
        """Note a refund's committed state (lock held); of final refunds only the last KEPT_FINAL stay."""
        _keep(self._refund_states, self._final_refunds, refund_id, state, state in REFUND_FINAL)

    def _count_open(self, sales: tuple[SaleRecord, ...], refunds: tuple[RefundRecord, ...], *,
                    reset: bool = False) -> None:
        """Keep the open-item counts (lock held) after records were committed or read back."""
        if reset:
            self._open = {}
        for sale in sales:
            if sale.state in SALE_FINAL:
                self._open.pop(("sale", sale.sale_id), None)
            else:
                self._open[("sale", sale.sale_id)] = sale.state in SALE_NEEDS_MANAGER
        for refund in refunds:
            if refund.state in REFUND_FINAL:
                self._open.pop(("refund", refund.refund_id), None)
            else:
                self._open[("refund", refund.refund_id)] = refund.state is RefundState.REFUND_PENDING
        self._counts = OpenCounts(len(self._open), sum(self._open.values()))

    def _carry_out(self, commands: list[Command], committed: Record | None = None) -> None:
        """Carry out the engine's commands in order (lock held); `committed`: their Record,
        already committed with the item it is the first step of."""
        if committed is not None:
            self._recorded(committed)
        writer = self._receipt_writer
        receipts = [c for c in commands if isinstance(c, PrintReceipt)] if writer is not None else []
        written: list[PrintReceipt] = []
        noted = False
        for command in commands:
            if isinstance(command, Record):
                # Write before you send: committed before any later command runs. The receipts
                # this step asks for are queued in its transaction (write_receipts).
                then: Callable[[], None] | None = None
                if receipts and writer is not None:
                    then = partial(_write_each, writer, receipts)
                    written, receipts = receipts, []
                try:
                    self.journal.record(command, then=then)
                except Exception:
                    self._journal_failed()
                    raise
                self._recorded(command)
            elif isinstance(command, PrintReceipt) and command in written:
                continue   # queued with its outcome
            elif isinstance(command, (SendPay, SendQuery, SendCancel, SendRefund, SendReverse)):
                if self._stopping:
                    # Left scheduled on disk; the next start's recover() picks it up.
                    log.info("shutting down: not sending %s", type(command).__name__)
                    continue
                self._inflight += 1
                pays: list[SendPay] | None = getattr(self._here, "pays", None)
                if pays is not None and isinstance(command, SendPay):
                    self._pays_here += 1   # sent by this thread once it has left the locks (pays_sent_here)
                    pays.append(command)
                else:
                    self._pool.submit(self._call, command)
            else:
                with self._notes_lock:
                    self._notes.append(command)
                noted = True
        if noted and not self._deliver_here:
            self._notifier_bell.put(False)
        self._cond.notify_all()
        self._wake_loop()

    def _wake_loop(self, *, now: bool = False) -> None:
        """Ring the engine loop's bell (lock held) if it sleeps and must not sleep on: `now` (stop, a
        failed commit), or the engine's next schedule comes before the moment it sleeps until."""
        until = self._loop_until
        if until is None:
            return   # it runs, and reads the schedule before it sleeps again
        wake = self.engine.next_wakeup()
        if now or (wake is not None and wake < until):
            self._tick_bell.notify()

    def _send(self, command: Send) -> GatewayResult:
        extra = {"goods": command.goods} if isinstance(command, SendPay) and command.goods else {}
        if isinstance(command, SendPay) and command.qr:
            if not isinstance(self.gateway, QrGateway):   # refused before the sale was created
                return Unknown("this gateway protocol offers no merchant-presented QR")
            return self.gateway.qr_pay(merchant_trans_id=command.merchant_trans_id, amount=command.amount,
                                       order_title=command.order_title, **extra)
        if isinstance(command, SendPay):
            return self.gateway.pay(merchant_trans_id=command.merchant_trans_id, identity_code=command.identity_code,
                                    amount=command.amount, order_title=command.order_title, **extra)
        if isinstance(command, SendQuery):
            return self.gateway.query(merchant_trans_id=command.merchant_trans_id)
        if isinstance(command, SendCancel):
            return self.gateway.cancel(merchant_trans_id=command.merchant_trans_id)
        if isinstance(command, SendReverse):
            return self.gateway.refund(acquirement_id=command.acquirement_id,
                                       merchant_refund_id=command.merchant_refund_id, amount=command.amount,
                                       reason="charged after the sale was called off")
        return self.gateway.refund(acquirement_id=command.acquirement_id,
                                   merchant_refund_id=command.merchant_refund_id, amount=command.amount,
                                   reason=command.reason)

    def _call(self, command: Send) -> None:
        result: GatewayResult
        try:
            result = self._send(command)
        except Exception as exc:
            log.exception("gateway call failed")
            result = Unknown(f"gateway error: {type(exc).__name__}")
        kind, item, request = _answers(command)
        with self._lock:
            self._inflight -= 1
            if self._broken and not self._inflight:
                self._wake_loop(now=True)   # the rebuild waited for the calls in flight: the last is back
            # The answer's notes (its outcome's Show, Finished...) are delivered by this thread, below.
            self._deliver_here = True
            try:
                self._handle(GatewayAnswer(kind, item, request, command.seq, result, self.clock.now()))
            except Exception:  # a journal failure: nothing more is sent until the engine is rebuilt
                log.exception("could not record a gateway answer")
                self._journal_failed()
            finally:
                self._deliver_here = False
        self._deliver()

    def _run_loop(self) -> None:
        """Ticks the engine when its next schedule or alarm is due (the background corrector)."""
        with self._lock:
            while not self._stopping:
                if isinstance(self.clock, SystemClock) and self._idle_for_resync():
                    self.clock.resync()
                if self._broken:
                    self._rebuild()
                    if self._broken:
                        self._sleep_until(math.inf, 1.0)
                    continue
                now = self.clock.now()
                wake = self.engine.next_wakeup()
                if wake is not None and wake <= now:
                    try:
                        self._handle(Tick(now))
                    except Exception:  # a journal failure: rebuilt from the journal
                        log.exception("engine tick failed")
                        self._broken = True
                    continue
                self._sleep_until(math.inf if wake is None else wake, None if wake is None else wake - now)

    def _sleep_until(self, until: float, timeout: float | None) -> None:
        """The loop sleeps on its bell (lock held) for `timeout` seconds of the clock at most."""
        self._loop_until = until
        try:
            self.clock.wait(self._tick_bell, timeout)
        finally:
            self._loop_until = None

    def _idle_for_resync(self) -> bool:
        """No call in flight, no sale in progress, no refund being made (lock held): a wall clock step
        may be taken now without moving a schedule that is running."""
        return (self._inflight == 0 and self.engine.active_sale() is None
                and all(r.state is RefundState.REFUND_PENDING for r in self.engine.open_refunds()))

    def _rebuild(self) -> None:
        """After a failed commit: a new engine from the journal, as a restart would (lock held).
        Only when no call is in flight; if the journal still cannot record, try again later."""
        if self._inflight:
            return
        try:
            items = self.journal.open_items()
            self.engine = Engine(self.settings.schedule(), rng=self._rng)
            sales = tuple(i for i in items if isinstance(i, SaleRecord))
            refunds = tuple(i for i in items if isinstance(i, RefundRecord))
            self._recovering = {s.sale_id for s in sales if s.state in SALE_ACTIVE}
            self._count_open(sales, refunds, reset=True)
            self._handle(Recover(sales, refunds, self.clock.now()))
            self._broken = False
            self._resumed_after_fault = True
            log.warning("journal records again: open work resumed from it", extra={"kv": {"open_items": len(items)}})
        except Exception as exc:
            self._broken = True
            log.error("journal still cannot record", extra={"kv": {"error": str(exc)}})
        self._cond.notify_all()

    def _run_notifier(self) -> None:
        """Delivers the notes of every thread but the gateway workers (which deliver their own)."""
        while True:
            stop = self._notifier_bell.get()
            self._deliver()
            if stop:
                return

    def _deliver(self) -> None:
        """Hand the queued notes to the subscribers, in order; called outside the runner's lock by a
        thread that queued notes. One thread delivers at a time: a thread that finds another
        delivering leaves its notes to it (the deliverer looks at the queue again before it stops,
        under the same lock the notes are queued under, so none is left behind), and so does a
        subscriber calling back into the runner from a delivery (its notes follow, in order)."""
        with self._notes_lock:
            if self._delivering or not self._notes:
                return
            self._delivering = True
        try:
            while True:
                with self._notes_lock:
                    if not self._notes:
                        self._delivering = False
                        return
                    note = self._notes.popleft()
                for callback in self._subscribers:
                    try:
                        callback(note)
                    except Exception:
                        log.exception("subscriber failed on %s", type(note).__name__)
        except BaseException:   # not a subscriber's error (those are logged): the notifier takes over
            with self._notes_lock:
                self._delivering = False
            self._notifier_bell.put(False)
            raise


class _FirstStep:
    """The engine's first step for an item being created, run inside the journal's transaction
    that creates it: its Record is committed with the item; the commands after it wait in
    `commands` until that commit is done."""

    def __init__(self, engine: Engine, event: Callable[[Any], Event]) -> None:
        self._engine = engine
        self._event = event
        self.ran = False
        self.committed: Record | None = None
        self.commands: list[Command] = []

    def __call__(self, created: Any) -> Record | None:
        self.ran = True
        commands = self._engine.handle(self._event(created))
        first = commands[0] if commands else None
        if isinstance(first, Record):
            self.committed, commands = first, commands[1:]
        self.commands = commands
        return self.committed


def _write_each(writer: ReceiptWriter, receipts: list[PrintReceipt]) -> None:
    for receipt in receipts:
        writer(receipt)


def _answers(command: Send) -> tuple[ItemKind, int, Request]:
    """The item a request is for and which request it is: what its answer names."""
    if isinstance(command, SendPay):
        return "sale", command.sale_id, "pay"
    if isinstance(command, SendQuery):
        return "sale", command.sale_id, "query"
    if isinstance(command, SendCancel):
        return "sale", command.sale_id, "cancel"
    if isinstance(command, SendReverse):
        return "sale", command.sale_id, "reverse"
    return "refund", command.refund_id, "refund"
