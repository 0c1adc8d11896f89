"""The payment engine: sale and refund state machines with no I/O (sans-IO, like h11).

The engine is fed events (a sale to start, a gateway answer, a clock tick, a
cashier abort, recovery after a restart) and answers with commands (record
this, send that request, show this message, print, alarm). It never sleeps,
never reads the wall clock (every event carries `now` from the caller's
clock) and never touches the network or the disk, so a test runs the
60-second query schedule of seed 003 in milliseconds.

Ordering contract: the first command of every answer is a `Record` holding
the new state of every item that changed; the caller commits it to the
journal before it runs any command after it (design rule 1, write before you
send). The engine keeps the schedule itself: a request is emitted only when
it is due and only when no other request of the same item is in flight, so
the caller sends each Send* command at once.

The whole state machine is data: the transition tables and the tables of
which gateway answer fires which trigger (pos/core/sale.py,
pos/core/refund.py; run by `transitions`, pos/core/machine.py: callables only),
and the retry table (pos/core/schedule.py). Seed 003 and reference §12 are
behind every number; the numbers come in a `Schedule` (built from [payment]
by the configuration; the engine never reads the configuration model).

This module is the facade: `Engine`, plus the names callers use re-exported
from the modules it is made of.
"""

from __future__ import annotations

import random

from pos.core.events import (
    Abort,
    Alarm,
    Command,
    Event,
    Finished,
    GatewayAnswer,
    LogEntry,
    Notified,
    PrintReceipt,
    Record,
    Recover,
    RefundNotified,
    Resolve,
    SendCancel,
    SendPay,
    SendQuery,
    SendRefund,
    SendReverse,
    Show,
    ShowQr,
    StartRefund,
    StartSale,
    Tick,
)
from pos.core.items import Context, RefundItem, SaleItem, Verdict, describe, reading_of
from pos.core.machine import TableMachine
from pos.core.outcomes import GatewayResult, QueryOutcome
from pos.core.records import (
    REFUND_FINAL,
    SALE_ABORTABLE,
    SALE_ACTIVE,
    SALE_FINAL,
    RefundRecord,
    RefundState,
    Resolution,
    SaleRecord,
    SaleState,
)
from pos.core.refund import REFUND_ANSWERS, REFUND_STATES, REFUND_TRANSITIONS
from pos.core.rules import Refusal
from pos.core.sale import SALE_ANSWERS, SALE_STATES, SALE_TRANSITIONS
from pos.core.schedule import Schedule

__all__ = [
    # events
    "StartSale", "StartRefund", "GatewayAnswer", "Notified", "RefundNotified", "Tick", "Abort", "Resolve",
    "Recover", "Event",
    # commands
    "Record", "LogEntry", "SendPay", "SendQuery", "SendCancel", "SendRefund", "SendReverse", "Show",
    "ShowQr", "PrintReceipt", "Alarm", "Finished", "Command",
    # the machine
    "Engine", "Schedule", "Refusal", "SALE_STATES", "SALE_TRANSITIONS", "SALE_ANSWERS",
    "REFUND_STATES", "REFUND_TRANSITIONS", "REFUND_ANSWERS",
]


class Engine:
    """Holds the open sales and refunds and decides what happens next.

    One engine per terminal. Every public method is pure: it reads `now` from
    the event, the jitter from the injected `rng`, and returns commands.

    The MANUAL_REVIEW rule. A sale lands in MANUAL_REVIEW when payCancel answered
    F or stayed unknown. Every cancel we sent has answered by then (one request
    per sale at a time), and a cancel the gateway applied turns a paid payment
    into a closed one (reference §8 (c)). So the corrector's payQuery is the
    truth: a verified PAID status means no cancel took effect and the customer
    was charged, so the sale becomes PAID (flagged resolved_by_corrector, so the
    manager can hand over the goods or refund); a CLOSED status means no money
    stayed with us and the sale becomes CANCELLED; anything else stays in review.

    The cashier was told "No goods" for every MANUAL_REVIEW sale, so a charge
    found there is given back by default ([payment] late_success = "refund"):
    REVERSING sends a full refund under a merchantRefundId of its own (committed
    first, the same on every retry) and ends REVERSED, net zero. With
    late_success = "manager" (or no acquirementId to refund, or when that refund
    is declined) it becomes PAID_LATE with an alarm: on the manager's list, nothing
    sent, until a manager settles it (`Resolve`): "refund" sends a full refund under
    a fresh merchantRefundId (REVERSING, as above), "goods_given" makes it PAID.
    Who settled it is in the audit log.
    """

    def __init__(self, schedule: Schedule, *, rng: random.Random | None = None) -> None:
        self._ctx = Context(schedule, rng if rng is not None else random.Random())
        self._sales: dict[int, SaleItem] = {}
        self._refunds: dict[int, RefundItem] = {}
        self._sale_machine = TableMachine(SALE_STATES, SALE_TRANSITIONS)
        self._refund_machine = TableMachine(REFUND_STATES, REFUND_TRANSITIONS)
        self._log: list[LogEntry] = []
        self._seq = 0

    @property
    def schedule(self) -> Schedule:
        return self._ctx.schedule

    # ---- queries

    def active_sale(self) -> SaleRecord | None:
        """The sale that keeps the terminal busy, if any (CREATED..CANCELLING)."""
        for sale in self._sales.values():
            if SaleState(sale.state) in SALE_ACTIVE:
                return sale.snapshot()
        return None

    def sale(self, sale_id: int) -> SaleRecord | None:
        item = self._sales.get(sale_id)
        return item.snapshot() if item else None

    def open_sales(self) -> list[SaleRecord]:
        return [s.snapshot() for s in self._sales.values()]

    def open_refunds(self) -> list[RefundRecord]:
        return [r.snapshot() for r in self._refunds.values()]

    def next_wakeup(self) -> float | None:
        """The earliest time a Tick could do something (a send or an alarm)."""
        times: list[float] = []
        for item in self._items():
            if item.awaiting is None and item.next_at is not None:
                times.append(item.next_at)
            if item.alarm_at is not None:
                times.append(item.alarm_at)
        return min(times) if times else None

    def admit_sale(self, *, scanned_at: float, now: float) -> Refusal | None:
        """Why a new sale may not start now, or None if it may (nothing is created)."""
        active = self.active_sale()
        if active is not None:
            return Refusal("busy", f"sale {active.merchant_trans_id} is still open ({active.state.value}): "
                                   "wait for its result or abort it first")
        age = now - scanned_at
        max_age = self._ctx.schedule.scan_max_age
        if age > max_age:
            return Refusal("scan_too_old", f"the code was scanned {age:.0f} s ago (more than "
                                           f"[payment] scan_max_age = {max_age:g} s): scan it again")
        return None

    def admit_resolve(self, sale_id: int, action: Resolution) -> Refusal | None:
        """Why a manager may not settle this sale so now, or None if they may (nothing changes)."""
        item = self._sales.get(sale_id)
        if item is None or SaleState(item.state) is not SaleState.PAID_LATE:
            state = item.state if item is not None else "not open"
            return Refusal("not_paid_late", f"sale {sale_id} is {state}: only a sale charged after the cashier "
                                            "said 'No goods' (PAID_LATE) is settled this way")
        if action == "refund" and not item.record.acquirement_id:
            return Refusal("no_acquirement_id", f"{item.name} has no acquirementId, so the terminal cannot "
                                                "refund it: ask Alipay's support (give them the merchantTransId) "
                                                "or refund it in the merchant portal")
        return None

    # ---- the one entry point

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; return the commands, a Record first when anything changed."""
        self._ctx.out = []
        self._log = []
        if isinstance(event, StartSale):
            self._start_sale(event)
        elif isinstance(event, StartRefund):
            self._start_refund(event)
        elif isinstance(event, GatewayAnswer):
            self._answer(event)
        elif isinstance(event, Notified):
            self._notified(event)
        elif isinstance(event, RefundNotified):
            self._refund_notified(event)
        elif isinstance(event, Abort):
            self._abort(event)
        elif isinstance(event, Resolve):
            self._resolve(event)
        elif isinstance(event, Recover):
            self._recover(event)
        self._alarms(event.now)
        self._pump(event.now)
        return self._collect()

    # ---- internals

    def _items(self) -> list[SaleItem | RefundItem]:
        return [*self._sales.values(), *self._refunds.values()]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _fire(self, item: SaleItem | RefundItem, trigger: str, now: float, detail: str = "",
              result: GatewayResult | None = None, by: str | None = None) -> bool:
        before = item.state
        machine = self._sale_machine if isinstance(item, SaleItem) else self._refund_machine
        ok = machine.fire(item, trigger, now=now, result=result, by=by)
        if ok:
            item.touch(now)
            self._log.append(LogEntry(now, item.kind, item.item_id, trigger, before, item.state, detail))
        return ok

    def _start_sale(self, ev: StartSale) -> None:
        if ev.sale.state is not SaleState.CREATED:
            raise ValueError(f"a new sale must be CREATED, got {ev.sale.state.value}")
        if self.active_sale() is not None:
            raise ValueError("another sale is still open: ask admit_sale() before creating a sale")
        sale = SaleItem(self._ctx, ev.sale, new=True, identity_code=ev.identity_code)
        self._sales[sale.item_id] = sale
        self._sale_machine.set_state(SaleState.CREATED.value, model=sale)
        self._fire(sale, "send_pay", ev.now, "pay queued")

    def _start_refund(self, ev: StartRefund) -> None:
        refund = RefundItem(self._ctx, ev.refund, new=True)
        self._refunds[refund.item_id] = refund
        self._refund_machine.set_state(RefundState.REFUND_CREATED.value, model=refund)
        self._fire(refund, "send_refund", ev.now, "refund queued")

    def _abort(self, ev: Abort) -> None:
        sale = self._sales.get(ev.sale_id)
        if sale is None or SaleState(sale.state) not in SALE_ABORTABLE:
            return
        sale.change(abort_requested=True)
        # A query waiting for its time is dropped; a request in flight is let finish.
        sale.unplan()
        self._fire(sale, "abort", ev.now, "cashier abort")

    def _resolve(self, ev: Resolve) -> None:
        """A manager settles a PAID_LATE sale; refused ones (admit_resolve) change nothing."""
        sale = self._sales.get(ev.sale_id)
        if sale is None or self.admit_resolve(ev.sale_id, ev.action) is not None:
            return
        trigger = "manager_refund" if ev.action == "refund" else "goods_given"
        what = "refund it now" if ev.action == "refund" else "the goods were given"
        self._fire(sale, trigger, ev.now, f"manager: {what}; by {ev.by}", by=ev.by)

    def _recover(self, ev: Recover) -> None:
        for rec in ev.sales:
            if rec.is_final or rec.sale_id in self._sales:
                continue
            sale = SaleItem(self._ctx, rec, new=False)
            self._sales[rec.sale_id] = sale
            self._sale_machine.set_state(rec.state.value, model=sale)
            if rec.state is SaleState.CREATED:
                # PAYING is committed before a pay is sent, so a CREATED sale's pay never
                # left. It is not sent after a restart: the scan is stale, the customer may
                # have gone. Nothing moved, so it is closed locally.
                self._fire(sale, "void", ev.now, "restart: pay never sent")
            else:
                self._fire(sale, "resume", ev.now, "restart")
        for rrec in ev.refunds:
            if rrec.is_final or rrec.refund_id in self._refunds:
                continue
            refund = RefundItem(self._ctx, rrec, new=False)
            self._refunds[rrec.refund_id] = refund
            self._refund_machine.set_state(rrec.state.value, model=refund)
            self._fire(refund, "resume", ev.now, "restart")

    def _answer(self, ev: GatewayAnswer) -> None:
        item: SaleItem | RefundItem | None
        item = self._sales.get(ev.item_id) if ev.kind == "sale" else self._refunds.get(ev.item_id)
        if item is None or item.awaiting != (ev.request, ev.seq):
            return  # an answer to a request we no longer wait for (not possible in one process)
        item.awaiting = None
        reading = reading_of(ev.request, ev.result)
        if isinstance(item, SaleItem):
            trigger = SALE_ANSWERS.get((ev.request, SaleState(item.state), reading))
        else:
            trigger = REFUND_ANSWERS.get((ev.request, RefundState(item.state), reading))
        if trigger is None:
            return   # e.g. a query answered after the cashier aborted: the cancel decides
        detail = describe(ev.result)
        if ev.request == "query":
            detail = f"{reading.value}: {detail}"
        self._fire(item, trigger, ev.now, detail, result=ev.result)

    def _notified(self, ev: Notified) -> None:
        """A verified notification: a PAID reading settles a sale that is being queried, now.

        A CLOSED reading (a notification that says the payment failed) is a hint, not a verdict:
        in-store notifyPayment is documented for the final success only, so the sale is not
        declined on it (money may have moved); its next query is sent now instead, and that
        query's answer decides (README "Payment notifications")."""
        sale = self._sales.get(ev.sale_id)
        if sale is None:
            return
        reading = reading_of("query", ev.result)
        if reading is QueryOutcome.CLOSED:
            self._query_now(sale, ev)
            return
        if reading is not QueryOutcome.PAID:
            return
        trigger = SALE_ANSWERS.get(("query", SaleState(sale.state), QueryOutcome.PAID))
        if trigger is None:
            return   # paying (its answer decides), cancelling (the cancel decides) or final
        # A query in flight or waiting for its time is superseded: its answer is dropped.
        sale.awaiting = None
        sale.unplan()
        self._fire(sale, trigger, ev.now, f"notification: {describe(ev.result)}", result=ev.result)

    def _query_now(self, sale: SaleItem, ev: Notified) -> None:
        """A failure notification's hint: a sale whose queries are running is queried at once
        (unless a query is in flight already: its answer is on the way). Nothing else changes."""
        state = SaleState(sale.state)
        if state not in (SaleState.QUERYING, SaleState.MANUAL_REVIEW) or sale.awaiting is not None \
                or sale.next_request != "query":
            return
        sale.plan("query", ev.now)
        self._log.append(LogEntry(ev.now, "sale", sale.item_id, "notified", state.value, state.value,
                                  f"failure notification, a hint: query now; {describe(ev.result)}"))

    def _refund_notified(self, ev: RefundNotified) -> None:
        """A verified refund notification: S or F settles a refund that is being sent or pending, now."""
        refund = self._refunds.get(ev.refund_id)
        if refund is None:
            return   # final already (or never ours): a repeat changes nothing
        reading = reading_of("refund", ev.result)
        if reading is Verdict.UNKNOWN:
            return   # "still processing" settles nothing: the schedule's refunds decide
        trigger = REFUND_ANSWERS.get(("refund", RefundState(refund.state), reading))
        if trigger is None:
            return   # not sent yet (REFUND_CREATED): its own answer decides
        # A refund in flight or waiting for its time is superseded: its answer is dropped.
        refund.awaiting = None
        refund.unplan()
        self._fire(refund, trigger, ev.now, f"notification: {describe(ev.result)}", result=ev.result)

    def _alarms(self, now: float) -> None:
        after = self._ctx.schedule.alarm_after
        for item in self._items():
            alarm_at = item.alarm_at
            if alarm_at is None or now < alarm_at:
                continue
            item.mark_alarmed()
            text = (f"{item.name} has been open for more than {after:g} s in {item.state}: check it "
                    "('pos journal show')")
            if isinstance(item, SaleItem):
                self._ctx.emit(Alarm(text, sale_id=item.item_id))
            else:
                self._ctx.emit(Alarm(text, refund_id=item.item_id))

    def _pump(self, now: float) -> None:
        """Emit every request that is due, one in flight per item."""
        for sale in self._sales.values():
            request, due = sale.next_request, sale.next_at
            if sale.awaiting is not None or request is None or due is None or now < due:
                continue
            sale.unplan()
            seq = self._next_seq()
            sale.awaiting = (request, seq)
            rec = sale.record
            if request == "pay":
                code = sale.identity_code or ""
                sale.identity_code = None   # held in memory only until the pay is out
                sale.change(pay_sent_at=now)
                self._ctx.emit(SendPay(rec.sale_id, seq, due, rec.merchant_trans_id, rec.amount, rec.order_title,
                                       code, rec.goods, qr=rec.is_qr))
            elif request == "query":
                sale.change(query_count=rec.query_count + 1)
                self._ctx.emit(SendQuery(rec.sale_id, seq, due, rec.merchant_trans_id))
            elif request == "cancel":
                sale.change(cancel_attempts=rec.cancel_attempts + 1)
                self._ctx.emit(SendCancel(rec.sale_id, seq, due, rec.merchant_trans_id))
            elif request == "reverse":
                sale.change(reversal_attempts=rec.reversal_attempts + 1)
                self._ctx.emit(SendReverse(rec.sale_id, seq, due, rec.acquirement_id or "", rec.reversal_id or "",
                                           rec.amount))
        for refund in self._refunds.values():
            due = refund.next_at
            if refund.awaiting is not None or refund.next_request is None or due is None or now < due:
                continue
            refund.unplan()
            seq = self._next_seq()
            refund.awaiting = ("refund", seq)
            rrec = refund.record
            refund.change(attempts=rrec.attempts + 1)
            self._ctx.emit(SendRefund(rrec.refund_id, seq, due, rrec.acquirement_id, rrec.merchant_refund_id,
                                      rrec.amount, rrec.reason))

    def _collect(self) -> list[Command]:
        sales: list[SaleRecord] = []
        refunds: list[RefundRecord] = []
        for sid, sale in list(self._sales.items()):
            snap = sale.snapshot()
            if snap != sale.last:
                sales.append(snap)
                sale.last = snap
            if snap.state in SALE_FINAL:
                del self._sales[sid]
        for rid, refund in list(self._refunds.items()):
            rsnap = refund.snapshot()
            if rsnap != refund.last:
                refunds.append(rsnap)
                refund.last = rsnap
            if rsnap.state in REFUND_FINAL:
                del self._refunds[rid]
        commands: list[Command] = []
        if sales or refunds or self._log:
            commands.append(Record(tuple(sales), tuple(refunds), tuple(self._log)))
        commands.extend(self._ctx.out)
        self._ctx.out = []
        self._log = []
        return commands
