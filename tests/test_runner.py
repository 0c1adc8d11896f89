"""PaymentRunner over the sandbox's ledger (DirectGateway), a real journal file and threads.

The clock is scaled (1 real ms = 1 terminal second), so the 60 s schedule of
seed 003 takes a few tens of milliseconds; nothing here asserts on speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pos.config import PaymentSection
from pos.core.engine import Alarm, Finished, PrintReceipt, Show, ShowQr
from pos.core.money import Money
from pos.core.records import RefundState, SaleState
from pos.journal.journal import Journal
from pos.payments.runner import PaymentRunner, RefundRefused, ResolveRefused, SaleRefused
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger, as_datetime
from pos.sandbox.scenarios import make_code
from tests.sandbox_fixtures import short_options

START = 1_714_536_000.0   # 2024-05-01 12:00 Beijing: the cancel window is open


class ScaledClock:
    """Terminal time runs `speed` times faster than real time."""

    def __init__(self, speed: float = 1000.0, start: float = START) -> None:
        self.speed, self.start, self.m0 = speed, start, time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self.m0) * self.speed

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(None if timeout is None else max(timeout, 0.0) / self.speed)


def settings(**kw: Any) -> PaymentSection:
    values: dict[str, Any] = dict(background_interval=100.0, alarm_after=100000.0)
    values.update(kw)
    return PaymentSection(**values)


class Rig:
    def __init__(self, tmp: Path, ledger: Ledger | None = None, *, speed: float = 1000.0, **kw: Any) -> None:
        self.clock = ScaledClock(speed)
        self.ledger = ledger or Ledger(short_options(wallet_confirm_after=3.0))
        self.path = tmp / "journal.db"
        self.journal = Journal.open(self.path)
        self.service = PaymentRunner(self.journal, DirectGateway(self.ledger, self.clock.now), settings(**kw),
                                      clock=self.clock)
        self.notes: list[Any] = []
        self.service.subscribe(self.notes.append)

    def sale(self, scenario: str, amount: int = 1250) -> int:
        return self.service.start_sale(Money(amount, "USD"), make_code(scenario), self.clock.now(), "Coffee")

    def ledger_status(self, sale_id: int) -> str | None:
        rec = self.journal.get_sale(sale_id)
        p = self.ledger.payment(rec.merchant_trans_id, as_datetime(self.clock.now()))
        return None if p is None else p.status

    def close(self) -> None:
        self.service.stop()
        self.journal.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.service.recover()
    yield r
    r.close()


@pytest.mark.parametrize("scenario,state,ledger", [
    ("00", SaleState.PAID, "SUCCESS"),
    ("01", SaleState.DECLINED, "CLOSED"),
    ("10", SaleState.PAID, "SUCCESS"),      # U, then the customer confirms
    ("11", SaleState.PAID, "SUCCESS"),      # timed out, charged: found by payQuery
    ("12", SaleState.CANCELLED, None),      # timed out, never created: cancelled
    ("13", SaleState.PAID, "SUCCESS"),      # queries fail first
    ("14", SaleState.CANCELLED, "CANCELLED|CLOSED"),
    ("15", SaleState.MANUAL_REVIEW, "PROCESSING"),
    ("16", SaleState.PAID, "SUCCESS"),      # bad signature: never paid on it, but the query says so
    ("17", SaleState.CANCELLED, "CANCELLED|CLOSED"),   # CLOSED: charged, then refunded by the cancel
    ("18", SaleState.CANCELLED, "CANCELLED|CLOSED"),
])
def test_each_sandbox_scenario_ends_where_the_ledger_is(rig: Rig, scenario: str, state: SaleState,
                                                        ledger: str | None) -> None:
    sale_id = rig.sale(scenario)
    record = rig.service.wait(sale_id, timeout=20)
    assert record is not None and record.state is state
    assert str(rig.ledger_status(sale_id)) in (ledger or "None").split("|")
    rig.service.stop()   # flushes the notifier
    assert Finished("sale", sale_id, state.value) in rig.notes


def test_a_sale_keeps_what_the_customer_paid_in_their_currency(rig: Rig) -> None:
    sale_id = rig.sale("00", amount=1250)   # USD 12.50 at the sandbox's 7.11 CNY per USD
    sale = rig.service.wait(sale_id, timeout=20)
    assert sale is not None and sale.state is SaleState.PAID
    assert (sale.pay_amount_minor, sale.pay_currency, sale.conversion_rate) == (8888, "CNY", "7.1100")


def test_the_runner_keeps_only_the_last_final_sales_and_the_journal_answers_for_older_ones(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat however many sales the terminal makes: a final sale's state is dropped
    from memory after KEPT_FINAL more have become final; every question about it still has its answer."""
    import pos.payments.runner as runner_module
    monkeypatch.setattr(runner_module, "KEPT_FINAL", 2)
    sales = []
    for scenario in ("00", "05", "00", "00"):
        sales.append(rig.sale(scenario))
        rig.service.wait(sales[-1], timeout=20)
    first, second = sales[0], sales[1]
    assert [rig.service.sale_state(s) for s in sales] == [None, None, SaleState.PAID, SaleState.PAID]
    assert rig.service.wait(first, timeout=0).state is SaleState.PAID              # from the journal, at once
    assert rig.service.wait(second, timeout=0).state is SaleState.DECLINED
    assert rig.service.abort(first) is False
    assert len(rig.service._sale_states) == 2


def test_the_engine_loop_is_rung_for_a_query_a_step_brings_forward(tmp_path: Path) -> None:
    """The engine's loop sleeps on its own bell, rung only when a step brings its next schedule
    earlier. In real time, with the background corrector's round an hour away, paid sales leave it
    asleep, and an unknown answer (a query due at once) rings it: the query goes on time."""
    rig = Rig(tmp_path, speed=1.0, background_interval=3600.0, query_first_delay=0.01, query_interval_min=0.01,
              query_interval_max=0.01)
    rig.service.recover()
    try:
        for _ in range(5):
            sale = rig.service.wait(rig.sale("00"), timeout=20)
            assert sale is not None and sale.state is SaleState.PAID
        unknown = rig.service.wait(rig.sale("11"), timeout=20)   # timed out, charged: found by payQuery
        assert unknown is not None and unknown.state is SaleState.PAID
    finally:
        rig.close()


def test_second_scan_is_refused_while_a_sale_is_open(rig: Rig) -> None:
    first = rig.sale("10")
    with pytest.raises(SaleRefused) as busy:
        rig.sale("00")
    assert busy.value.key == "busy"
    assert rig.service.wait(first, timeout=20).state is SaleState.PAID
    assert len(rig.journal.list_sales()) == 1


def test_old_scan_is_refused_and_nothing_is_sent(rig: Rig) -> None:
    with pytest.raises(SaleRefused) as old:
        rig.service.start_sale(Money(100, "USD"), make_code("00"), rig.clock.now() - 31.0)
    assert old.value.key == "scan_too_old"
    assert rig.journal.list_sales() == [] and rig.ledger.payments(as_datetime(rig.clock.now())) == []


def test_abort_while_querying_cancels(rig: Rig) -> None:
    sale_id = rig.sale("18")
    deadline = time.monotonic() + 10
    while rig.service._sale_states.get(sale_id) is not SaleState.QUERYING and time.monotonic() < deadline:
        time.sleep(0.001)
    assert rig.service.abort(sale_id)
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.CANCELLED
    assert rig.ledger_status(sale_id) == "CANCELLED"


def test_refunds_partial_full_and_over(rig: Rig) -> None:
    sale_id = rig.sale("00", amount=1000)
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.PAID
    first = rig.service.refund(sale_id, Money(400, "USD"), "one cup")
    assert rig.service.wait_refund(first, timeout=20).state is RefundState.REFUNDED
    with pytest.raises(RefundRefused, match="more than is left"):
        rig.service.refund(sale_id, Money(601, "USD"), "too much")
    second = rig.service.refund(sale_id, Money(600, "USD"), "the rest")
    assert rig.service.wait_refund(second, timeout=20).state is RefundState.REFUNDED
    p = rig.ledger.payment(rig.journal.get_sale(sale_id).merchant_trans_id, as_datetime(rig.clock.now()))
    assert p.refunded == 1000
    with pytest.raises(RefundRefused, match="no sale"):
        rig.service.refund(9999, Money(1, "USD"), "")


def test_manual_review_is_alarmed_and_shown(rig: Rig) -> None:
    sale_id = rig.sale("15")
    review = rig.service.wait(sale_id, timeout=20)
    assert review.state is SaleState.MANUAL_REVIEW
    # Issue 17: the USER_PAYING answer named the payment; the manager needs that id for Alipay's support.
    payment = rig.ledger.payment(review.merchant_trans_id, as_datetime(rig.clock.now()))
    assert review.acquirement_id == payment.acquirement_id
    rig.service.stop()
    assert any(isinstance(n, Show) and n.key == "manual_review" for n in rig.notes)
    assert any(isinstance(n, Alarm) and rig.journal.get_sale(sale_id).merchant_trans_id in n.text
               for n in rig.notes)


def test_a_cancel_too_late_after_a_charge_is_reversed_and_the_ledger_nets_zero(rig: Rig) -> None:
    """Issue 17: CANCEL_EXPIRED, the customer confirmed late: the background check finds the
    charge and the terminal refunds it in full; before, the sale was quietly marked PAID."""
    sale_id = rig.sale("19")
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.MANUAL_REVIEW
    deadline = time.monotonic() + 20
    while rig.journal.get_sale(sale_id).state is not SaleState.REVERSED and time.monotonic() < deadline:
        time.sleep(0.01)
    sale = rig.journal.get_sale(sale_id)
    assert sale.state is SaleState.REVERSED
    assert sale.reversal_id == f"{sale.merchant_trans_id}-V" and sale.reversal_gateway_id
    now = as_datetime(rig.clock.now())
    assert rig.ledger.payment(sale.merchant_trans_id, now).status == "SUCCESS"
    assert rig.ledger.total_charged("USD", now) == 0
    assert [r.merchant_refund_id for r in rig.ledger.refunds()] == [sale.reversal_id]
    # The refund's id was on disk before it was sent: the REVERSING row carries it.
    events = [e for e in rig.journal.events(item_kind="sale", item_id=sale_id)]
    assert [e.dest for e in events][-2:] == ["REVERSING", "REVERSED"]
    with pytest.raises(RefundRefused, match="not PAID"):
        rig.service.refund(sale_id, Money(1, "USD"), "again")
    rig.service.stop()
    assert any(isinstance(n, Show) and n.key == "reversed" and n.sale_id == sale_id for n in rig.notes)
    assert Finished("sale", sale_id, "REVERSED") in rig.notes


def test_late_success_manager_keeps_a_late_charge_on_the_managers_list(tmp_path: Path) -> None:
    """[payment] late_success = "manager": PAID_LATE with an alarm until the manager settles it,
    with "refund it now" (fresh merchantRefundId, committed first; the ledger nets zero) or
    "goods were given" (PAID; who and when in the audit log)."""
    r = Rig(tmp_path, late_success="manager")
    r.service.recover()
    try:
        def paid_late() -> int:
            sale_id = r.sale("19")
            deadline = time.monotonic() + 20
            while r.journal.get_sale(sale_id).state is not SaleState.PAID_LATE and time.monotonic() < deadline:
                time.sleep(0.01)
            assert r.journal.get_sale(sale_id).state is SaleState.PAID_LATE
            return sale_id

        first = paid_late()
        assert r.ledger.refunds() == []
        assert [i.sale_id for i in r.journal.open_items()] == [first]   # still on the manager's list
        with pytest.raises(RefundRefused, match="not PAID"):
            r.service.refund(first, Money(1, "USD"), "")
        sale = r.service.resolve(first, "refund", "test manager")
        assert sale.state is SaleState.REVERSING and sale.reversal_id == f"{sale.merchant_trans_id}-V"
        sale = r.service.wait_reversal(first, timeout=20)
        assert sale.state is SaleState.REVERSED and sale.reversal_gateway_id
        assert [x.merchant_refund_id for x in r.ledger.refunds()] == [sale.reversal_id]
        assert r.ledger.total_charged("USD", as_datetime(r.clock.now())) == 0
        with pytest.raises(ResolveRefused, match="REVERSED"):
            r.service.resolve(first, "goods_given", "test manager")

        second = paid_late()
        sale = r.service.resolve(second, "goods_given", "test manager")
        assert sale.state is SaleState.PAID and r.journal.open_items() == []
        last = r.journal.events(item_kind="sale", item_id=second)[-1]
        assert (last.trigger, last.source, last.dest) == ("goods_given", "PAID_LATE", "PAID")
        assert "by test manager" in last.detail and last.at > 0
    finally:
        r.close()
    assert any(isinstance(n, Alarm) and "PAID_LATE" in n.text for n in r.notes)
    assert Finished("sale", first, "PAID_LATE") in r.notes


def test_no_sale_before_recover(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    try:
        with pytest.raises(SaleRefused) as refused:
            r.sale("00")
        assert refused.value.key == "recovering"
    finally:
        r.close()


def test_stop_refuses_new_sales(rig: Rig) -> None:
    rig.service.stop()
    with pytest.raises(SaleRefused):
        rig.sale("00")
    assert rig.journal.list_sales() == []


def test_restart_with_100_open_sales_resolves_all_before_any_scan(tmp_path: Path) -> None:
    """Pays were sent (the ledger applied them) but the terminal died before it learned the outcome."""
    ledger = Ledger(short_options(wallet_confirm_after=3.0))
    clock = ScaledClock()
    journal = Journal.open(tmp_path / "journal.db")
    scenarios = ["00", "10", "12", "18", "01"]
    expected: dict[int, SaleState] = {}
    gw = DirectGateway(ledger, clock.now)
    from pos.core.engine import Engine, Record, StartSale  # the engine alone: commit PAYING, send, then "crash"
    engine = Engine(settings().schedule())
    for i in range(100):
        scenario = scenarios[i % len(scenarios)]
        code = make_code(scenario)
        rec = journal.create_sale(amount=Money(100 + i, "USD"), code=code, scanned_at=clock.now(),
                                  now=clock.now())
        for cmd in engine.handle(StartSale(rec, code, clock.now())):
            if isinstance(cmd, Record):
                journal.record(cmd)
        engine = Engine(settings().schedule())   # the answer is lost with the process
        if i % 10 != 9:                       # every tenth pay never left (crash after the commit)
            gw.pay(merchant_trans_id=rec.merchant_trans_id, identity_code=code, amount=rec.amount,
                   order_title="")
        expected[rec.sale_id] = {
            "00": SaleState.PAID, "10": SaleState.PAID, "12": SaleState.CANCELLED, "18": SaleState.CANCELLED,
            "01": SaleState.DECLINED}[scenario] if i % 10 != 9 else SaleState.CANCELLED
    journal.close()

    journal = Journal.open(tmp_path / "journal.db")
    service = PaymentRunner(journal, DirectGateway(ledger, clock.now), settings(), clock=clock)
    try:
        assert service.recover() == 100
        with pytest.raises(SaleRefused) as refused:
            service.start_sale(Money(1, "USD"), make_code("00"), clock.now())
        assert refused.value.key == "recovering"
        assert service.wait_recovered(timeout=60)
        states = {s.sale_id: s.state for s in journal.list_sales()}
        assert states == expected
        for sale in journal.list_sales():
            p = ledger.payment(sale.merchant_trans_id, as_datetime(clock.now()))
            assert (sale.state is SaleState.PAID) == (p is not None and p.status == "SUCCESS")
        # 90 pays left; scenario 12's 20 were never created; none was sent again after the restart.
        assert len(ledger.payments(as_datetime(clock.now()))) == 70
        new = service.start_sale(Money(1, "USD"), make_code("00"), clock.now())
        assert service.wait(new, timeout=20).state is SaleState.PAID
    finally:
        service.stop()
        journal.close()


@pytest.mark.parametrize("amount,code,key,reason", [
    (1250, "", "scan_code", "no_code"),
    (0, make_code("00"), "ready", "not_positive"),
    (10_000_001, make_code("00"), "ready", "over_max_amount"),   # [payment] max_amount = 100000
])
def test_refused_sales_carry_the_display_key_and_the_reason(rig: Rig, amount: int, code: str, key: str,
                                                            reason: str) -> None:
    with pytest.raises(SaleRefused) as refused:
        rig.service.start_sale(Money(amount, "USD"), code, rig.clock.now())
    assert refused.value.key == key and refused.value.refusal.reason == reason
    assert rig.journal.list_sales() == []


def test_refund_above_the_limit_is_refused_with_its_reason(rig: Rig) -> None:
    sale_id = rig.sale("00", amount=1000)
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.PAID
    with pytest.raises(RefundRefused, match="refund_limit") as refused:
        rig.service.refund(sale_id, Money(600, "USD"), "", limit=Money(500, "USD"))
    assert refused.value.refusal.reason == "over_refund_limit" and rig.journal.list_refunds() == []


NOTES = (Show, ShowQr, PrintReceipt, Alarm, Finished)


def test_notes_queued_by_several_threads_at_once_reach_subscribers_in_the_engines_order(rig: Rig) -> None:
    """Sales started from one thread (their first Show goes through the notifier) while refunds run
    from two others (their answers' notes are delivered by gateway workers): every note is delivered
    once, in the order the engine produced them, whichever thread queued it."""
    paid = rig.sale("00", amount=1000)
    assert rig.service.wait(paid, timeout=20).state is SaleState.PAID
    produced: list[Any] = []
    engine = rig.service.engine
    handle = engine.handle

    def recording(event: Any) -> Any:   # called under the runner's lock: the engine's own order
        commands = handle(event)
        produced.extend(c for c in commands if isinstance(c, NOTES))
        return commands

    engine.handle = recording  # type: ignore[method-assign]
    delivered: list[Any] = []

    def failing(note: Any) -> None:
        raise RuntimeError("a broken subscriber")   # logged; the others still get every note

    def slow(note: Any) -> None:
        time.sleep(0.001)   # deliveries overlap the answers, sales and refunds that follow
        delivered.append(note)

    rig.service.subscribe(failing)
    rig.service.subscribe(slow)
    refunds: list[int] = []
    sales: list[int] = []
    start = threading.Barrier(3)

    def refund() -> None:
        start.wait()
        for _ in range(8):
            refunds.append(rig.service.refund(paid, Money(10, "USD"), "one"))

    def sell() -> None:
        start.wait()
        for _ in range(8):
            sales.append(rig.sale("00", amount=100))
            assert rig.service.wait(sales[-1], timeout=20).state is SaleState.PAID

    workers = [threading.Thread(target=refund), threading.Thread(target=refund), threading.Thread(target=sell)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    for refund_id in refunds:
        assert rig.service.wait_refund(refund_id, timeout=20).state is RefundState.REFUNDED
    rig.service.stop()   # delivers whatever is still queued
    assert len(refunds) == 16 and len(sales) == 8 and len(produced) >= 16 * 3 + 8 * 4
    assert delivered == produced


def test_a_note_queued_while_another_thread_delivers_is_delivered_by_that_thread(rig: Rig) -> None:
    gate = threading.Event()
    delivered: list[tuple[Any, str]] = []

    def held(note: Any) -> None:
        delivered.append((note, threading.current_thread().name))
        if len(delivered) == 1:
            gate.wait(20)   # the first note's delivery lasts until the sale's outcome is queued

    rig.service.subscribe(held)
    sale_id = rig.sale("00")   # its first Show is queued for the notifier; its delivery is held above
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.PAID   # its outcome's notes are queued
    deadline = time.monotonic() + 10
    while not delivered and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)
    assert len(delivered) == 1   # the outcome's notes wait for the thread delivering, held
    gate.set()
    deadline = time.monotonic() + 10
    while not any(isinstance(n, Finished) for n, _ in delivered) and time.monotonic() < deadline:
        time.sleep(0.005)
    notes = [n for n, _ in delivered]
    assert Finished("sale", sale_id, SaleState.PAID.value) in notes
    assert any(isinstance(n, Show) and n.key == "paid" for n in notes)
    assert len({name for _, name in delivered}) == 1   # all by the thread that was delivering


def test_an_answers_notes_are_delivered_by_its_gateway_worker_outside_the_runners_lock(rig: Rig) -> None:
    """No hand-off to the notifier for a gateway answer's outcome; a subscriber may call back into
    the runner (here: a refund on the sale's Finished), and the notes that call queues follow in order."""
    seen: list[tuple[Any, str, bool]] = []
    refunds: list[int] = []

    def subscriber(note: Any) -> None:
        other = threading.Thread(target=rig.service.busy)   # takes the runner's lock
        other.start()
        other.join(5)
        seen.append((note, threading.current_thread().name, not other.is_alive()))
        if isinstance(note, Finished) and note.kind == "sale" and not refunds:
            refunds.append(rig.service.refund(note.item_id, Money(100, "USD"), "from a subscriber"))

    direct = rig.service.gateway
    first_delivered = threading.Event()

    class AfterTheFirstNote:
        """The pay answers once the sale's first Show has been delivered (by the notifier)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(direct, name)

        def pay(self, **kw: Any) -> Any:
            first_delivered.wait(10)
            deadline = time.monotonic() + 10
            while rig.service._delivering and time.monotonic() < deadline:
                time.sleep(0.001)
            return direct.pay(**kw)

    rig.service.gateway = AfterTheFirstNote()  # type: ignore[assignment]
    rig.service.subscribe(subscriber)
    rig.service.subscribe(lambda note: first_delivered.set())
    sale_id = rig.sale("00")
    assert rig.service.wait(sale_id, timeout=20).state is SaleState.PAID
    deadline = time.monotonic() + 10
    while not refunds and time.monotonic() < deadline:
        time.sleep(0.005)
    assert refunds and rig.service.wait_refund(refunds[0], timeout=20).state is RefundState.REFUNDED
    rig.service.stop()
    assert all(outside for _, _, outside in seen), "a subscriber ran under the runner's lock"
    outcome = [name for note, name, _ in seen if isinstance(note, Show) and note.sale_id == sale_id
               and note.key == "paid"]
    finished = [name for note, name, _ in seen if note == Finished("sale", sale_id, SaleState.PAID.value)]
    assert outcome and finished and all(n.startswith("pos-gateway") for n in outcome + finished)
    notes = [note for note, _, _ in seen]
    at = notes.index(Finished("sale", sale_id, SaleState.PAID.value))
    assert Finished("refund", refunds[0], RefundState.REFUNDED.value) in notes[at + 1:]


class _Watched:
    """The rig's gateway, each pay first noting the thread it runs on, whether `held` is held then
    and the sale's committed state; `fail` makes the pay raise instead of reaching the ledger."""

    def __init__(self, rig: Rig, held: threading.Lock, *, fail: bool = False) -> None:
        self.direct, self.rig, self.held, self.fail = rig.service.gateway, rig, held, fail
        self.pays: list[tuple[threading.Thread, bool, SaleState | None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.direct, name)

    def pay(self, **kw: Any) -> Any:
        sale = self.rig.journal.get_sale(kw["merchant_trans_id"])
        self.pays.append((threading.current_thread(), self.held.locked(), None if sale is None else sale.state))
        if self.fail:
            raise ConnectionError("the line dropped")
        return self.direct.pay(**kw)


def test_a_pay_queued_in_pays_sent_here_leaves_from_the_calling_thread_when_the_context_exits(rig: Rig) -> None:
    """Committed PAYING first; sent by this thread once it has left what it held inside the context;
    answered, committed and delivered before the context returns."""
    held = threading.Lock()
    watched = _Watched(rig, held)
    rig.service.gateway = watched  # type: ignore[assignment]
    with rig.service.pays_sent_here():
        with held:
            sale_id = rig.sale("00")
        assert watched.pays == []   # not sent inside the context
        assert rig.journal.get_sale(sale_id).state is SaleState.PAYING
    assert watched.pays == [(threading.current_thread(), False, SaleState.PAYING)]
    assert rig.service.sale_state(sale_id) is SaleState.PAID   # the answer was committed on the way out
    assert Finished("sale", sale_id, SaleState.PAID.value) in rig.notes
    # Outside the context, a pay goes to a gateway worker as before.
    second = rig.sale("00")
    assert rig.service.wait(second, timeout=20).state is SaleState.PAID
    assert watched.pays[1][0].name.startswith("pos-gateway")


def test_a_pay_sent_here_leaves_even_if_the_context_raises_and_a_failed_send_is_unknown(rig: Rig) -> None:
    """The pay is committed, so it is sent whatever the context's body does; an exception from the
    gateway is an Unknown answer, as on a worker: the sale is queried, never paid again."""
    watched = _Watched(rig, threading.Lock(), fail=True)
    rig.service.gateway = watched  # type: ignore[assignment]
    with pytest.raises(RuntimeError), rig.service.pays_sent_here():
        sale_id = rig.sale("00")
        raise RuntimeError("the caller failed after the sale started")
    assert [(thread, state) for thread, _, state in watched.pays] == [(threading.current_thread(), SaleState.PAYING)]
    done = rig.service.wait(sale_id, timeout=20)
    assert done is not None and done.state is SaleState.CANCELLED   # never created: queried, then cancelled
    assert len(watched.pays) == 1
    assert rig.service.wait_idle(timeout=20)


def test_stop_waits_for_a_pay_being_sent_on_its_callers_thread(rig: Rig) -> None:
    release, entered = threading.Event(), threading.Event()
    direct = rig.service.gateway

    class Held:
        def __getattr__(self, name: str) -> Any:
            return getattr(direct, name)

        def pay(self, **kw: Any) -> Any:
            entered.set()
            release.wait(20)
            return direct.pay(**kw)

    rig.service.gateway = Held()  # type: ignore[assignment]
    sale_ids: list[int] = []

    def scan() -> None:
        with rig.service.pays_sent_here():
            sale_ids.append(rig.sale("00"))

    caller = threading.Thread(target=scan)
    caller.start()
    assert entered.wait(10)
    stopper = threading.Thread(target=rig.service.stop)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()   # the pay is in flight: its answer is let finish and committed
    with pytest.raises(SaleRefused):
        rig.sale("00")
    release.set()
    stopper.join(20)
    caller.join(20)
    assert not stopper.is_alive() and not caller.is_alive()
    assert rig.journal.get_sale(sale_ids[0]).state is SaleState.PAID
