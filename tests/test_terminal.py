"""The terminal's cashier and manager flows, in one process.

Real parts: the SQLite journal, the payment runner, pty displays driven
through pyserial, the message catalogues. The gateway is the sandbox's
ledger, called in-process (DirectGateway). tests/test_e2e.py runs the same
flows through `pos run` as a separate process.
"""

import threading
import time
from functools import partial
from pathlib import Path

import pytest

from devices.display import SerialDisplay
from devices.emulated import EmulatedDisplay, EmulatedScanner
from devices.keypad import Key
from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.printer import DummyPrinter
from devices.scanner import ReceiptScan, Rejected, Scan, Scanner, ScannerBack, ScannerLost
from pos.config import Config, ScannerSection
from pos.core.money import Money
from pos.core.records import SaleState
from pos.journal.journal import Journal, journal_path
from pos.journal.print_jobs import JournalPrintJobs
from pos.ops.daemon import scanner_handler
from pos.payments.runner import PaymentRunner
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from pos.sandbox.scenarios import SandboxOptions, make_code
from pos.terminal.pin import hash_pin
from pos.terminal.receipts import outcome_receipt
from pos.terminal.terminal import Mode, Terminal
from pos.terminal.till_service import TillError

PIN = "1357"


class Rig:
    def __init__(self, tmp: Path, *, pin: str = PIN, max_amount: str = "100000", refund_limit: str = "500",
                 wrap_gateway=None, ledger=None, sections=None, payment=None, display_write_timeout=0.5):
        self.cfg = Config.model_validate({
            **(sections or {}),
            "terminal": {"terminal_id": "T1", "currency": "SGD", "state_dir": str(tmp), "timezone": "Asia/Singapore"},
            "payment": {"query_first_delay": 0.05, "query_interval_min": 0.05, "query_interval_max": 0.08,
                        "query_deadline": 0.6, "cancel_interval": 0.05, "max_amount": max_amount,
                        **(payment or {})},
            "manager": {"pin_hash": hash_pin(pin) if pin else "", "max_attempts": 3, "lockout": 60.0,
                        "refund_limit": refund_limit},
        })
        self.journal = Journal.open(journal_path(tmp), terminal_id="T1", timezone="Asia/Singapore")
        self.ledger = ledger or Ledger(SandboxOptions(wallet_confirm_after=0.2))
        self.gateway = DirectGateway(self.ledger, time.time)
        if wrap_gateway is not None:
            self.gateway = wrap_gateway(self.gateway)
        self.payments = PaymentRunner(self.journal, self.gateway, self.cfg.payment)
        self.cashier_pty = EmulatedDisplay("cashier", tmp)
        self.customer_pty = EmulatedDisplay("customer", tmp)
        self.printer = DummyPrinter()
        text = Catalogue.load("en")
        self.queue = PrintQueue(JournalPrintJobs(self.journal), self.printer, printer_settings=self.cfg.printer,
                                catalogue=text, retry_interval=0.05,
                                receipt_of=partial(outcome_receipt, self.cfg, self.journal)).start()
        self.terminal = Terminal(
            config=self.cfg, journal=self.journal, payments=self.payments,
            cashier_display=SerialDisplay(str(self.cashier_pty.path), write_timeout=display_write_timeout),
            customer_display=SerialDisplay(str(self.customer_pty.path), write_timeout=display_write_timeout),
            cashier_catalogue=text, customer_catalogue=Catalogue.load("zh-CN"),
            print_queue=self.queue, pin_state_file=tmp / "pin.json", gateway=self.gateway)
        self.payments.recover()   # after the terminal subscribes, as in the daemon: it sees recovered outcomes

    def keys(self, text: str) -> None:
        names = {".": Key.DOT, "E": Key.ENTER, "C": Key.CANCEL, "X": Key.CLEAR, "R": Key.REFUND,
                 "P": Key.REPRINT, "T": Key.REPORT}
        for ch in text:
            self.terminal.on_key(names[ch] if ch in names else Key.from_name(ch))

    def cashier(self, predicate=lambda lines: True, timeout: float = 5.0):
        lines = self.cashier_pty.wait_for(predicate, timeout=timeout)
        assert predicate(lines), f"the cashier display shows {lines}"
        return lines

    def settle(self, sale_id: str, timeout: float = 10.0) -> dict:
        return self.terminal.wait_sale(sale_id, timeout)

    def close(self) -> None:
        self.payments.stop()
        self.terminal.close()
        self.queue.stop()
        self.journal.close()
        self.cashier_pty.close()
        self.customer_pty.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def test_keypad_sale_from_amount_to_paid_receipt(rig):
    rig.keys("12.5X7.25")  # CLEAR wipes the typo
    assert rig.cashier(lambda lines: "7.25" in lines[0])
    rig.keys("E")
    assert rig.cashier(lambda lines: "Scan" in lines[0]) == ("Scan customer code", "SGD 7.25")
    assert rig.customer_pty.wait_for(lambda lines: "SGD 7.25" in lines[1])[0] == "请付款"
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    assert rig.cashier(lambda lines: lines[0].startswith("PAID"))[1] == "Hand over goods"
    sale = rig.journal.list_sales()[0]
    assert sale.state.value == "PAID" and sale.amount == Money(725, "SGD")
    deadline = time.monotonic() + 5
    while not rig.printer.jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.printer.jobs and sale.merchant_trans_id.encode() in rig.printer.jobs[0]
    assert rig.terminal.mode == Mode.RESULT
    rig.keys("E")
    assert rig.cashier(lambda lines: lines[0] == "Ready")


@pytest.mark.parametrize("typed,key", [("12.505", "amount_invalid"), ("0", "amount_invalid"),
                                       ("200000", "amount_too_large")])
def test_bad_amounts_on_the_keypad(rig, typed, key):
    rig.keys(typed + "E")
    # a refusal says the amount that matters: the most a sale may be ([payment] max_amount)
    want = rig.terminal.cashier_text.cashier(key, amount=Money(10000000, "SGD").display())
    assert rig.cashier(lambda lines: lines == want) == want
    assert rig.terminal.mode == Mode.AMOUNT and rig.journal.list_sales() == []


def test_scan_without_amount_and_junk_scans_start_nothing(rig):
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("enter_amount"))
    rig.terminal.on_scanner_event(Rejected("not digits"))
    assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("scan_invalid"))
    rig.terminal.on_scanner_event(ReceiptScan("T1-20261122-AAAA-000001"))
    assert rig.journal.list_sales() == []
    assert rig.ledger.to_json(__import__("datetime").datetime.now())["payments"] == []


def test_cancel_before_the_scan_moves_no_money(rig):
    view = rig.terminal.create_sale(Money(500, "SGD"), "till-9", "Tea")
    rig.keys("C")
    assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("cancelled"))
    assert rig.terminal.get_sale(view["id"])["state"] == "CANCELLED"
    rig.terminal.on_scanner_event(Scan(make_code("00")))  # too late: no sale is waiting
    assert rig.journal.list_sales() == []


def test_scanner_lost_and_back_are_told_and_reported(rig):
    rig.terminal.on_scanner_event(ScannerLost("read error"))
    assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("scanner_lost"))
    health = rig.terminal.health()
    assert health["status"] == "degraded" and health["devices"]["scanner"] == {"ok": False, "last_error": "read error"}
    rig.terminal.on_scanner_event(ScannerBack())
    assert rig.terminal.health()["devices"]["scanner"]["ok"]


def test_health_answers_while_a_sale_holds_the_locks(rig):
    """/v1/health never waits for a sale: it takes neither the terminal's lock, nor the runner's,
    nor the journal's, and its open-item count is the journal's."""
    import threading

    sale = rig.terminal.create_sale(Money(700, "SGD"), "r1", "")
    rig.terminal.on_scanner_event(Scan(make_code("15")))     # manual review: open, needs a manager
    assert rig.settle(sale["id"])["state"] == "MANUAL_REVIEW"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rig.terminal._lock, rig.payments._lock, rig.journal.db.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    answers: list[dict] = []
    try:
        assert held.wait(5)
        asker = threading.Thread(target=lambda: answers.append(rig.terminal.health()), daemon=True)
        asker.start()
        asker.join(5)
        assert answers, "health waited for the locks a sale holds"
    finally:
        release.set()
        holder.join(5)
    health = answers[0]
    assert health["open_items"] == rig.journal.open_counts().open_items == 1
    assert health["status"] == "degraded"      # a sale waits for the manager
    path = rig.journal.path   # the file and its -wal and -shm (a step may have grown the -wal since)
    assert path.stat().st_size < health["journal_bytes"] <= sum(p.stat().st_size
                                                                 for p in path.parent.glob(path.name + "*"))


def _wait_printed(rig, count: int) -> list[bytes]:
    deadline = time.monotonic() + 10
    while len(rig.printer.jobs) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rig.printer.jobs) == count
    return rig.printer.jobs


def _paid_sale(rig, minor: int, reference: str):
    sale = rig.terminal.create_sale(Money(minor, "SGD"), reference, "")
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    paid = rig.settle(sale["id"])
    assert paid["state"] == "PAID"
    return rig.journal.get_sale(paid["merchantTransId"])


def test_an_outcomes_receipt_is_built_by_the_print_queue_as_it_read_when_the_outcome_committed(rig, caplog):
    """The outcome's transaction writes its print job's key alone; the print queue's worker builds the
    receipt (and logs it as queued) when it takes the job. With the printer away and an older receipt
    ahead of it, a sale's job waits unbuilt: a refund made meanwhile is on the refund's receipt, not on
    the sale's, which prints byte for byte as one built at PAID; a reprint queued meanwhile is that
    same receipt marked REPRINT."""
    import json
    import logging

    from devices.print_jobs import StoredReceipt
    from devices.receipt import ReceiptData, render_receipt
    from pos.core.records import RefundState
    from pos.terminal.receipts import receipt_for

    caplog.set_level(logging.INFO, logger="devices.print_queue")
    rig.printer.online = False
    _paid_sale(rig, 300, "r1")                               # its receipt waits for the printer
    sale = _paid_sale(rig, 900, "r2")
    at_paid = render_receipt(receipt_for(rig.cfg, rig.journal, sale), rig.cfg.printer, rig.terminal.cashier_text)
    job = f"sale:{sale.sale_id}"
    refund_id = rig.payments.refund(sale.sale_id, Money(400, "SGD"), "part")
    assert rig.payments.wait_refund(refund_id, timeout=10).state is RefundState.REFUNDED
    refund = rig.journal.get_refund(refund_id)
    assert rig.queue.store.receipt_of(job) == StoredReceipt(b"", None)      # not taken by the worker yet
    copy = rig.terminal.receipts.reprint(sale)
    rig.printer.online = True
    _, printed, refunded, reprinted = _wait_printed(rig, 4)
    assert printed == at_paid
    assert refund.merchant_refund_id.encode() not in printed and refund.merchant_refund_id.encode() in refunded
    kept = [ReceiptData.from_dict(json.loads(rig.queue.store.receipt_of(key).record)) for key in (job, copy)]
    assert kept[1] == kept[0].as_reprint() and b"REPRINT" in reprinted.upper()
    queued = {r.getMessage().split()[2]: r.threadName for r in caplog.records
              if r.getMessage().startswith("receipt queued job=")}
    # The outcomes' lines come from the worker, none from the outcome's transaction; the copy's from reprint().
    assert queued == {"job=sale:1": "print-queue", f"job={job}": "print-queue",
                      f"job=refund:{refund_id}": "print-queue", f"job={copy}": "MainThread"}


def test_pos_reprint_and_receipt_show_read_a_receipt_the_print_queue_has_not_built_yet(tmp_path, capsys):
    """`pos reprint` (another process) and `pos receipt show` on a sale whose job holds its key alone:
    the receipt is built as the print queue builds it."""
    import json
    from functools import partial

    from devices.receipt import ReceiptData
    from pos.cli.main import main

    rig = Rig(tmp_path)
    try:
        rig.queue.stop()                   # the worker takes no job: the sale's keeps its key alone
        sale = _paid_sale(rig, 900, "r1")
    finally:
        rig.close()
    config = tmp_path / "terminal.toml"
    config.write_text(f'[terminal]\nterminal_id = "T1"\ncurrency = "SGD"\nstate_dir = "{tmp_path}"\n'
                      'timezone = "Asia/Singapore"\n[ecr]\nenabled = false\n')
    assert main(["receipt", "show", sale.merchant_trans_id, "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert sale.merchant_trans_id in shown and "9.00" in shown
    assert main(["reprint", sale.merchant_trans_id, "--config", str(config)]) == 0
    journal = Journal.open(journal_path(tmp_path))
    try:
        printer = DummyPrinter()
        queue = PrintQueue(JournalPrintJobs(journal), printer, printer_settings=rig.cfg.printer,
                           catalogue=Catalogue.load("en"), receipt_of=partial(outcome_receipt, rig.cfg, journal))
        assert queue.print_pending() == 2
        kept = [ReceiptData.from_dict(json.loads(queue.store.receipt_of(key).record))
                for key in (f"sale:{sale.sale_id}", f"sale:{sale.sale_id}:reprint:1")]
    finally:
        journal.close()
    assert kept[1] == kept[0].as_reprint()


def test_a_receipt_a_dead_daemon_owed_is_queued_after_recovery(tmp_path):
    """A PAID sale without its print job (a version that queued receipts after the outcome, killed
    in between) gets its receipt once the terminal has recovered, off the start path."""
    import sqlite3

    first = Rig(tmp_path)
    try:
        sale = first.terminal.create_sale(Money(700, "SGD"), "r1", "")
        first.terminal.on_scanner_event(Scan(make_code("00")))
        paid = first.settle(sale["id"])
        assert paid["state"] == "PAID"
    finally:
        first.close()
    with sqlite3.connect(journal_path(tmp_path)) as db:
        assert db.execute("DELETE FROM print_jobs").rowcount == 1
    again = Rig(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not again.printer.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert again.printer.jobs and paid["merchantTransId"].encode() in again.printer.jobs[0]
    finally:
        again.close()


def test_a_till_wait_reads_the_sale_once_however_often_the_terminal_changes(rig, monkeypatch):
    """The long poll wakes on the terminal's changes and checks the runner's state in memory:
    the journal's sale and refunds are read for the answer, not each time round."""
    import threading

    sale = rig.terminal.create_sale(Money(780, "SGD"), "r1", "")
    reads: list[str] = []
    real = rig.journal.list_refunds

    def list_refunds(*args, **kwargs):
        reads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(rig.journal, "list_refunds", list_refunds)
    answer: list[dict] = []
    waiter = threading.Thread(target=lambda: answer.append(rig.settle(sale["id"])), name="till-wait")
    waiter.start()
    rig.terminal.on_scanner_event(Scan(make_code("10")))     # the customer confirms in the wallet
    for _ in range(30):                                      # the terminal changes, again and again
        with rig.terminal._changed:
            rig.terminal._changed.notify_all()
        time.sleep(0.01)
    waiter.join(15)
    assert answer and answer[0]["state"] == "PAID"
    assert reads.count("till-wait") == 1


def test_the_till_view_asks_the_customer_to_confirm_as_the_display_does(tmp_path):
    """The till's message for a sale being queried follows the answer's cause, as the displays do:
    the customer confirming in the wallet (the client's Cause, kept in the journal) is asked to look at
    the app; a system error gets the neutral "checking"."""
    rig = Rig(tmp_path, ledger=Ledger(SandboxOptions(wallet_confirm_after=60.0, query_errors=10_000)))
    try:
        confirming = rig.terminal.create_sale(Money(510, "SGD"), "till-c", "Tea")
        rig.terminal.on_scanner_event(Scan(make_code("10")))   # the customer confirms in the wallet
        assert rig.customer_pty.wait_for(lambda lines: lines == ("请在支付宝中", "确认付款"))
        view = rig.terminal.get_sale(confirming["id"])
        assert view["state"] == "QUERYING" and view["message"]["customer"] == ["请在支付宝中", "确认付款"]
        rig.keys("C")
        assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("cancelled"))
        busy = rig.terminal.create_sale(Money(520, "SGD"), "till-s", "Tea")
        rig.terminal.on_scanner_event(Scan(make_code("13")))   # SYSTEM_ERROR (and every query too)
        checking = rig.terminal.customer_text.customer("checking", amount="SGD 5.20")
        assert rig.customer_pty.wait_for(lambda lines: lines == checking)
        view = rig.terminal.get_sale(busy["id"])
        assert view["state"] == "QUERYING" and view["message"]["customer"] == list(checking)
        rig.keys("C")
    finally:
        rig.close()


def test_till_sale_and_a_second_one_is_refused(rig):
    view = rig.terminal.create_sale(Money(1000, "SGD"), "r1", "Lunch")
    assert view["state"] == "CREATED" and view["final"] is False
    with pytest.raises(TillError) as refused:
        rig.terminal.create_sale(Money(100, "SGD"), "r2", "")
    assert refused.value.status == 409
    rig.terminal.on_scanner_event(Scan(make_code("10")))
    done = rig.settle(view["id"])
    assert done["state"] == "PAID" and done["merchantTransId"] and done["acquirementId"]


def test_a_journal_that_cannot_write_starts_no_sale(rig):
    rig.terminal.create_sale(Money(1000, "SGD"), "", "")
    rig.journal._conn.close()  # the disk is gone
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("journal_error"))
    assert rig.ledger.to_json(__import__("datetime").datetime.now())["payments"] == []
    assert rig.terminal.devices["journal"].ok is False


def test_pending_till_sales_are_closed_after_a_restart(tmp_path):
    first = Rig(tmp_path)
    view = first.terminal.create_sale(Money(1000, "SGD"), "r1", "")
    first.close()
    second = Rig(tmp_path)
    try:
        assert second.terminal.get_sale(view["id"])["state"] == "CANCELLED"
        assert second.terminal.mode == Mode.IDLE
    finally:
        second.close()


def test_manager_menu_needs_a_pin_and_locks(tmp_path):
    off = Rig(tmp_path / "a", pin="")
    try:
        off.keys("R")
        assert off.cashier(lambda lines: "PIN" in lines[1] or "off" in lines[0].lower())
        assert off.terminal.mode == Mode.RESULT
    finally:
        off.close()
    rig = Rig(tmp_path / "b")
    try:
        for _ in range(3):
            rig.keys("R0000E")
            if rig.terminal.mode == Mode.PIN:
                rig.keys("C")
        assert rig.terminal.pin.locked_for() > 0
        rig.keys("R")
        assert rig.cashier(lambda lines: lines == rig.terminal.cashier_text.cashier("pin_locked"))
        assert rig.terminal.mode != Mode.PIN
    finally:
        rig.close()


def test_refund_rules_at_the_terminal(tmp_path):
    rig = Rig(tmp_path, refund_limit="10")
    try:
        view = rig.terminal.create_sale(Money(3000, "SGD"), "", "")
        rig.terminal.on_scanner_event(Scan(make_code("00")))
        sale = rig.settle(view["id"])
        with pytest.raises(TillError, match="Refund above the limit"):
            rig.terminal.refund(view["id"], Money(1500, "SGD"), "")
        with pytest.raises(TillError) as err:
            rig.terminal.refund(view["id"], Money(100, "USD"), "")
        assert err.value.status == 422
        done = rig.terminal.refund(sale["merchantTransId"], Money(1000, "SGD"), "damaged")
        assert done["state"] == "REFUNDED"
        # on the keypad: REFUND, PIN, the receipt's code, an amount above what is left
        rig.keys(f"R{PIN}E")
        rig.terminal.on_scanner_event(ReceiptScan(sale["merchantTransId"]))
        assert rig.cashier(lambda lines: "SGD 20.00" in lines[1])
        rig.keys("25E")
        # issue 17: it showed "Refund above what is" with the amount cut off
        assert rig.cashier(lambda lines: lines == ("Refund too large", "Max SGD 20.00"))
        rig.keys("C")
        rig.keys(f"R{PIN}E")
        rig.terminal.on_scanner_event(ReceiptScan(sale["merchantTransId"]))
        rig.keys("15E")
        assert rig.cashier(lambda lines: lines == ("Over refund limit", "Max SGD 10.00"))
        rig.keys("C")
        assert len(rig.journal.list_refunds()) == 1
    finally:
        rig.close()


def test_reports_count_what_happened(rig):
    for scenario in ("00", "01", "00"):
        view = rig.terminal.create_sale(Money(1000, "SGD"), "", "")
        rig.terminal.on_scanner_event(Scan(make_code(scenario)))
        rig.settle(view["id"])
    x = rig.terminal.x_report()
    sgd = x["currencies"][0]
    assert (sgd["sales"]["count"], sgd["sales"]["amount"]["value"]) == (2, 2000)
    assert sgd["declines"]["count"] == 1 and sgd["net"]["value"] == 2000
    z = rig.terminal.z_report()
    assert z["businessDay"] == 1 and z["closedAt"]
    assert rig.terminal.x_report()["currencies"] == []
    view = rig.terminal.create_sale(Money(550, "SGD"), "", "")
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    rig.settle(view["id"])
    rig.keys(f"T{PIN}E1")  # REPORT on the keypad, PIN, 1 = X report: printed, the net shown
    assert rig.cashier(lambda lines: lines[0] == "Report printed") == ("Report printed", "Net SGD 5.50")
    assert rig.terminal.mode == Mode.RESULT


def test_keying_the_number_at_the_end_of_the_sale_id_finds_the_sale(rig):
    for scenario in ("00", "00"):
        view = rig.terminal.create_sale(Money(1200, "SGD"), "", "")
        rig.terminal.on_scanner_event(Scan(make_code(scenario)))
        sale = rig.settle(view["id"])
    assert sale["merchantTransId"].endswith("-000002")
    rig.keys(f"R{PIN}E")
    rig.keys("2E")  # the cashier reads "...-000002" on the receipt and types 2
    assert rig.cashier(lambda lines: lines[1] == "max SGD 12.00")
    rig.keys("3E")
    deadline = time.monotonic() + 5
    while not rig.journal.list_refunds() and time.monotonic() < deadline:
        time.sleep(0.02)
    refund = rig.journal.list_refunds()[0]
    assert refund.amount == Money(300, "SGD")
    assert refund.sale_id == rig.journal.get_sale(sale["merchantTransId"]).sale_id


class CableUnplugged:
    """The gateway as the terminal sees it when the cable is out for the pay: the
    request never arrives (nothing charged) and the client reports a connection error."""

    def __init__(self, inner):
        self.inner, self.last_error, self.pays = inner, None, 0

    def health(self):
        from pos.gateway.client import GatewayHealth
        return GatewayHealth(last_error=self.last_error, link_down=self.last_error is not None)

    def pay(self, **kw):
        from pos.core.outcomes import Unknown
        self.pays += 1
        self.last_error = "connection error: ConnectionError"
        return Unknown(self.last_error, no_answer=True)

    def __getattr__(self, name):
        call = getattr(self.inner, name)

        def passthrough(**kw):
            self.last_error = None
            return call(**kw)
        return passthrough


def test_a_network_fault_is_named_while_the_outcome_is_unknown(tmp_path):
    rig = Rig(tmp_path, wrap_gateway=CableUnplugged)
    try:
        view = rig.terminal.create_sale(Money(1000, "SGD"), "", "")
        rig.terminal.on_scanner_event(Scan(make_code("00")))
        assert rig.cashier(lambda lines: lines[0] == "No network: checking") == ("No network: checking",
                                                                         "Do not hand goods")
        done = rig.settle(view["id"])
        assert done["state"] == "CANCELLED" and rig.gateway.pays == 1  # queried, cancelled, never re-paid
    finally:
        rig.close()


def test_the_till_may_only_ask_for_currencies_the_contract_settles(rig):
    with pytest.raises(TillError) as err:
        rig.terminal.create_sale(Money(1000, "USD"), "", "")  # an SGD terminal: USD would settle in SGD
    assert err.value.status == 422 and "must settle in USD" in err.value.detail
    assert rig.terminal.mode == Mode.IDLE
    view = rig.terminal.create_sale(Money(1000, "CNY"), "", "")  # AlipayCN: CNY settles in SGD
    assert view["amount"]["currency"] == "CNY"
    rig.keys("C")


def test_a_keypad_refund_of_an_older_sale_shows_its_outcome(rig):
    first = rig.terminal.create_sale(Money(1200, "SGD"), "", "")
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    first = rig.settle(first["id"])
    second = rig.terminal.create_sale(Money(800, "SGD"), "", "")
    rig.terminal.on_scanner_event(Scan(make_code("00")))
    assert rig.settle(second["id"])["state"] == "PAID"   # the last sale served is the second one
    rig.keys(f"R{PIN}E")
    rig.terminal.on_scanner_event(ReceiptScan(first["merchantTransId"]))
    assert rig.cashier(lambda lines: lines[1] == "max SGD 12.00")
    rig.keys("3E")
    done = rig.terminal.cashier_text.cashier("refund_done", amount="SGD 3.00")
    assert rig.cashier(lambda lines: lines == done) == done     # not "Processing" left on the screen
    customer = Catalogue.load("zh-CN").customer("refund_done", amount="SGD 3.00")
    assert rig.customer_pty.wait_for(lambda lines: lines == customer) == customer
    assert rig.terminal.mode == Mode.RESULT


def test_a_sale_recovered_after_a_restart_shows_its_outcome(tmp_path):
    from dataclasses import replace

    from pos.core.engine import Record
    from pos.core.records import SaleState

    first = Rig(tmp_path)
    view = first.terminal.create_sale(Money(1000, "SGD"), "r1", "")
    # The terminal stopped with the pay in flight: the sale is PAYING in the journal and the wallet paid.
    code, now = make_code("00"), time.time()
    sale = first.journal.create_sale(amount=Money(1000, "SGD"), code=code, scanned_at=now, now=now,
                                     reference="r1", till_id=view["id"])
    first.journal.record(Record(sales=(replace(sale, state=SaleState.PAYING, pay_sent_at=now),)))
    first.gateway.pay(merchant_trans_id=sale.merchant_trans_id, identity_code=code, amount=sale.amount,
                      order_title="")
    ledger = first.ledger
    first.close()
    second = Rig(tmp_path, ledger=ledger)
    try:
        paid = second.terminal.cashier_text.cashier("paid", amount="SGD 10.00")
        assert second.cashier(lambda lines: lines == paid) == paid
        customer = Catalogue.load("zh-CN").customer("paid", amount="SGD 10.00")
        assert second.customer_pty.wait_for(lambda lines: lines == customer) == customer
        assert second.settle(view["id"])["state"] == "PAID"
        assert second.terminal.mode == Mode.RESULT
        assert len(ledger.to_json(__import__("datetime").datetime.now())["payments"]) == 1   # queried, not re-paid
    finally:
        second.close()


class QrDirect:
    """The in-process gateway with the v1 API's order code: the pay answers "in process" with a code."""

    def __init__(self, inner: DirectGateway) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def qr_pay(self, *, merchant_trans_id, amount, order_title):
        from datetime import UTC, datetime

        from pos.core.outcomes import Cause, Unknown
        reply = self.inner.ledger.order_code(self.inner.merchant_id, merchant_trans_id, amount, order_title,
                                             datetime.now(UTC))
        return Unknown("gateway answered U", "PAYMENT_IN_PROCESS", cause=Cause.CUSTOMER_CONFIRMING,
                       gateway_id=reply.body["acquirementId"], qr=f"https://wallet.example/{reply.body['acquirementId']}")


def test_a_qr_sale_prints_the_slip_and_ends_paid_when_the_wallet_pays(tmp_path):
    from datetime import UTC, datetime
    rig = Rig(tmp_path, wrap_gateway=QrDirect)
    try:
        rig.keys("6E")
        rig.cashier(lambda lines: "Scan" in lines[0])
        rig.terminal.on_key(Key.QR)
        assert rig.cashier(lambda lines: lines[0] == "Customer scans slip") == ("Customer scans slip", "SGD 6.00")
        assert rig.customer_pty.wait_for(lambda lines: "二维码" in lines[1]) == ("请扫描小票上的", "二维码付款")
        deadline = time.monotonic() + 5
        while not rig.printer.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        sale = rig.journal.list_sales()[0]
        assert sale.is_qr and sale.state.value == "QUERYING" and sale.acquirement_id
        slip = rig.printer.jobs[0]
        assert f"https://wallet.example/{sale.acquirement_id}".encode() in slip and b"SCAN TO PAY" in slip
        assert rig.terminal.get_sale(str(sale.sale_id))["message"]["customer"] == ["请扫描小票上的", "二维码付款"]
        rig.ledger.wallet_pay(sale.acquirement_id, datetime.now(UTC))
        assert rig.cashier(lambda lines: lines[0].startswith("PAID"))
        view = rig.terminal.get_sale(str(sale.sale_id))
        assert view["state"] == "PAID" and view["method"] == "qr" and view["codeLast4"] is None
    finally:
        rig.close()


def test_without_the_v1_protocol_a_qr_sale_is_refused_clearly_and_changes_nothing(rig):
    rig.keys("4.2E")
    rig.cashier(lambda lines: "Scan" in lines[0])
    rig.terminal.on_key(Key.QR)      # the in-process gateway speaks the offline protocol: no order code
    assert rig.cashier(lambda lines: lines[0] == "No QR sale here") == ("No QR sale here", "Scan customer code")
    assert rig.terminal.mode == Mode.AWAIT_SCAN and rig.journal.list_sales() == []
    rig.terminal.on_scanner_event(Scan(make_code("00")))      # the customer's code still pays it
    assert rig.cashier(lambda lines: lines[0].startswith("PAID"))
    rig.keys("E")
    with pytest.raises(TillError) as refused:
        rig.terminal.create_sale(Money(500, "SGD"), "", "", "qr")
    assert refused.value.status == 422 and 'protocol = "ams"' in refused.value.detail
    assert rig.terminal.mode != Mode.AWAIT_SCAN and len(rig.journal.list_sales()) == 1


def test_a_late_charge_waits_on_the_managers_list_until_settled(tmp_path):
    """[payment] late_success = "manager": a sale whose cancel came too late (CANCEL_EXPIRED) and that
    is then found paid stays PAID_LATE (till view, X report, alarm) until the manager settles it: on
    the keypad "1 refund it now" (both displays follow it), or over the till "goods were given"."""
    from pos.core.records import SaleState

    ledger = Ledger(SandboxOptions(wallet_confirm_after=0.2, late_success_after=1.5))
    rig = Rig(tmp_path, ledger=ledger, payment={"late_success": "manager"})
    try:
        def paid_late(amount):
            view = rig.terminal.create_sale(Money(amount, "SGD"), "", "")
            rig.terminal.on_scanner_event(Scan(make_code("19")))
            assert rig.settle(view["id"])["state"] == "MANUAL_REVIEW"
            deadline = time.monotonic() + 15   # found on the query schedule, not background_interval (300 s)
            while rig.terminal.get_sale(view["id"])["state"] != "PAID_LATE" and time.monotonic() < deadline:
                time.sleep(0.05)
            return rig.terminal.get_sale(view["id"])

        first = paid_late(640)
        assert first["state"] == "PAID_LATE" and first["final"] and first["acquirementId"]
        assert first["support"] == rig.cfg.manager.support_contact
        assert first["message"]["cashier"] == list(rig.terminal.cashier_text.cashier("paid_late", amount="SGD 6.40"))
        shown = rig.terminal.cashier_text.cashier("paid_late", amount="SGD 6.40")
        assert rig.cashier(lambda lines: lines == shown) == shown
        report = rig.terminal.x_report()
        sgd = report["currencies"][0]
        assert sgd["paidLate"]["count"] == 1 and sgd["net"]["value"] == 640
        assert first["merchantTransId"] in report["manualReview"]
        assert report["manualReviewAcquirementIds"][first["merchantTransId"]] == first["acquirementId"]
        assert rig.terminal.health()["status"] == "degraded"
        assert "PAID_LATE" in (rig.terminal.last_alarm or "")
        with pytest.raises(TillError, match="Sale is not paid"):
            rig.terminal.refund(first["id"], None, "")

        # The keypad: REFUND, PIN, the receipt's code: 1 = refund it now.
        rig.keys(f"R{PIN}E")
        rig.terminal.on_scanner_event(ReceiptScan(first["merchantTransId"]))
        menu = rig.terminal.cashier_text.cashier("resolve_menu")
        assert rig.cashier(lambda lines: lines == menu) == menu
        rig.keys("1")
        done = rig.terminal.cashier_text.cashier("reversed", amount="SGD 6.40")
        assert rig.cashier(lambda lines: lines == done) == done
        customer = Catalogue.load("zh-CN").customer("reversed", amount="SGD 6.40")
        assert rig.customer_pty.wait_for(lambda lines: lines == customer) == customer
        view = rig.terminal.get_sale(first["id"])
        assert view["state"] == "REVERSED" and view["refunded"]["value"] == 640
        assert view["reversal"]["merchantRefundId"] == first["merchantTransId"] + "-V"
        assert [r.merchant_refund_id for r in ledger.refunds()] == [view["reversal"]["merchantRefundId"]]
        sale = rig.journal.get_sale(first["merchantTransId"])
        event = [e for e in rig.journal.events(item_kind="sale", item_id=sale.sale_id) if e.source == "PAID_LATE"]
        assert event[0].dest == "REVERSING" and "by the keypad (manager PIN)" in event[0].detail
        rig.keys("C")

        # The till: goods were given.
        second = paid_late(300)
        settled = rig.terminal.resolve(second["id"], "goods_given", "Ann")
        assert settled["state"] == "PAID" and settled["final"]
        sale = rig.journal.get_sale(second["merchantTransId"])
        assert sale.state is SaleState.PAID and rig.journal.open_items() == []
        last = rig.journal.events(item_kind="sale", item_id=sale.sale_id)[-1]
        assert (last.source, last.dest) == ("PAID_LATE", "PAID")
        assert "by Ann (the till interface, manager token)" in last.detail
        with pytest.raises(TillError, match="not waiting for a manager") as err:
            rig.terminal.resolve(second["id"], "refund")
        assert err.value.status == 409 and "PAID" in err.value.detail
        with pytest.raises(TillError) as err:
            rig.terminal.resolve("999999", "refund")
        assert err.value.status == 404
        assert rig.terminal.x_report()["currencies"][0]["paidLate"]["count"] == 0
    finally:
        rig.close()


class ScannerPays:
    """The gateway as the sandbox's, each pay noting the thread it runs on, whether the terminal's
    and the runner's locks are free then (another thread takes each) and the sale's committed
    state; while `hold` is clear a pay waits for it (a slow gateway)."""

    def __init__(self) -> None:
        self.rig: Rig | None = None
        self.direct = None
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.pays: list[tuple[str, bool, bool, SaleState]] = []

    def wrap(self, gateway):
        self.direct = gateway
        return self

    def __getattr__(self, name):
        return getattr(self.direct, name)

    def pay(self, **kw):
        rig = self.rig
        sale = rig.journal.get_sale(kw["merchant_trans_id"])
        self.pays.append((threading.current_thread().name, _free(rig.terminal._lock), _free(rig.payments._lock),
                          sale.state))
        self.entered.set()
        self.hold.wait(20)
        return self.direct.pay(**kw)


def _free(lock) -> bool:
    """Whether another thread can take `lock` (within 5 s: the notifier may hold it for a moment)."""
    got = []

    def take():
        if lock.acquire(timeout=5):
            got.append(True)
            lock.release()

    other = threading.Thread(target=take)
    other.start()
    other.join(10)
    return bool(got)


@pytest.fixture
def scanner_rig(tmp_path):
    """A rig whose scans come through a real Scanner on a pty, wired as the daemon wires it."""
    pays = ScannerPays()
    r = Rig(tmp_path, wrap_gateway=pays.wrap)
    pays.rig = r
    r.pays = pays
    r.scanner_pty = EmulatedScanner("scanner", tmp_path)
    r.scanner = Scanner(ScannerSection(url=r.scanner_pty.path), scanner_handler(r.payments, r.terminal)).start()
    assert r.scanner.connected.wait(5)
    yield r
    pays.hold.set()
    r.scanner.stop()
    r.close()
    r.scanner_pty.close()


def test_a_scans_pay_is_sent_by_the_scanners_thread_once_the_terminals_lock_is_released(scanner_rig):
    rig = scanner_rig
    view = rig.terminal.create_sale(Money(725, "SGD"), "till-1", "Tea")
    assert rig.cashier(lambda lines: "Scan" in lines[0])
    rig.scanner_pty.scan(make_code("00"))
    assert rig.settle(view["id"])["state"] == "PAID"
    assert rig.pays.pays == [("scanner", True, True, SaleState.PAYING)]   # written before it was sent
    assert rig.cashier(lambda lines: lines[0].startswith("PAID"))


def test_a_scan_during_a_pay_waits_for_its_answer_then_is_handled_as_one_with_no_sale_waiting(scanner_rig):
    rig = scanner_rig
    text = rig.terminal.cashier_text
    rig.pays.hold.clear()   # the gateway is slow to answer
    view = rig.terminal.create_sale(Money(725, "SGD"), "till-1", "Tea")
    assert rig.cashier(lambda lines: "Scan" in lines[0])
    rig.scanner_pty.scan(make_code("00"))
    assert rig.pays.entered.wait(10)
    rig.scanner_pty.scan(make_code("00"))   # another code, while the pay is out
    shown = rig.cashier_pty.wait_for(lambda lines: lines == text.cashier("busy"), timeout=0.5)
    assert shown != text.cashier("busy")   # not read yet: it waits in the serial buffer
    rig.pays.hold.set()
    assert rig.settle(view["id"])["state"] == "PAID"
    # Then read: no sale waits for a scan, so it asks for an amount and starts nothing.
    assert rig.cashier(lambda lines: lines == text.cashier("enter_amount"))
    assert len(rig.journal.list_sales()) == 1 and len(rig.pays.pays) == 1


def test_the_same_code_read_again_during_a_slow_pay_counts_once_and_paid_stays_on_the_display(scanner_rig):
    """A scanner reading the phone again while the pay is out (longer than the 2 s dedupe window): the
    repeat waits in the serial buffer, is framed after the answer, and is still the same scan, so the
    cashier keeps reading PAID, not "Enter amount"."""
    rig = scanner_rig
    text = rig.terminal.cashier_text
    rig.pays.hold.clear()
    view = rig.terminal.create_sale(Money(725, "SGD"), "till-1", "Tea")
    assert rig.cashier(lambda lines: "Scan" in lines[0])
    code = make_code("00")
    rig.scanner_pty.scan(code)
    assert rig.pays.entered.wait(10)
    time.sleep(2.5)                       # past the dedupe window, counted from the first read
    rig.scanner_pty.scan(code)
    rig.pays.hold.set()
    assert rig.settle(view["id"])["state"] == "PAID"
    assert rig.cashier(lambda lines: lines[0].startswith("PAID"))
    shown = rig.cashier_pty.wait_for(lambda lines: lines == text.cashier("enter_amount"), timeout=1.0)
    assert shown != text.cashier("enter_amount") and shown[0].startswith("PAID")
    assert len(rig.pays.pays) == 1


def test_stop_lets_a_pay_on_the_scanners_thread_finish_and_the_scanner_stops_after(scanner_rig):
    rig = scanner_rig
    rig.pays.hold.clear()
    view = rig.terminal.create_sale(Money(725, "SGD"), "till-1", "Tea")
    assert rig.cashier(lambda lines: "Scan" in lines[0])
    rig.scanner_pty.scan(make_code("00"))
    assert rig.pays.entered.wait(10)
    stopper = threading.Thread(target=rig.payments.stop)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()   # as for a pay on a gateway worker: its answer is let finish
    rig.pays.hold.set()
    stopper.join(20)
    assert not stopper.is_alive()
    assert rig.terminal.get_sale(view["id"])["state"] == "PAID"
    assert [sale.state for sale in rig.journal.list_sales()] == [SaleState.PAID]
    rig.scanner.stop()
    assert not any(t.name == "scanner" and t.is_alive() for t in threading.enumerate())
