"""A tiny terminal for tests/test_crash.py: Journal + PaymentRunner + OfflineGateway over HTTP.

    python -m tests.crash_driver JOURNAL URL KEY_FOLDER [CODE ...]

Recovers the journal, waits until recovery is done, then runs one sale per
CODE (1.00 USD each) to the cashier's end; with POS_CRASH_REFUND=1, each PAID sale
is then refunded 0.40 to the manager's end. Receipts are queued as the daemon
queues them (in the transaction of the outcome they print; nothing prints them). With POS_CRASH_AT set (see
pos/journal.py) the process kills itself at that commit. Prints one line per
sale ("<sale_id> <state>"); exit 0 when everything ran.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

from devices.messages import Catalogue
from devices.print_queue import PrintQueue
from devices.printer import NullPrinter
from pos.config import Config, GatewaySection, PaymentSection
from pos.core.money import Money
from pos.gateway.factory import open_gateway
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.journal.journal import Journal
from pos.journal.print_jobs import JournalPrintJobs
from pos.payments.runner import PaymentRunner
from pos.terminal.displays import new_device_board
from pos.terminal.receipts import Receipts, outcome_receipt

# Seed 003's shape on a 100x shorter time scale, so a run takes about a second.
FAST = PaymentSection(query_first_delay=0.02, query_interval_min=0.05, query_interval_max=0.07,
                      query_deadline=0.6, cancel_interval=0.05, refund_interval=0.05,
                      background_interval=0.2, alarm_after=3600.0)


def main(argv: list[str]) -> int:
    journal_file, url, keys = argv[0], argv[1], Path(argv[2])
    gateway = open_gateway(Config(gateway=GatewaySection(url=url, private_key=str(keys / MERCHANT_PRIVATE),
                                                         merchant_public_key=str(keys / MERCHANT_PUBLIC),
                                                         alipay_public_key=str(keys / ALIPAY_PUBLIC),
                                                         connect_timeout=2.0, read_timeout=2.0, sandbox=True),
                                   payment=FAST))
    journal = Journal.open(journal_file)
    service = PaymentRunner(journal, gateway, FAST)
    cfg = Config()
    queue = PrintQueue(JournalPrintJobs(journal), NullPrinter(), printer_settings=cfg.printer,
                       catalogue=Catalogue.load("en"), receipt_of=partial(outcome_receipt, cfg, journal))
    receipts = Receipts(cfg, journal, queue, new_device_board(), service.clock.now)
    service.write_receipts(receipts.queue_with_outcome)
    try:
        service.recover()
        if not service.wait_recovered(timeout=30):
            print("recovery did not finish", file=sys.stderr)
            return 1
        for code in argv[3:]:
            sale_id = service.start_sale(Money(100, "USD"), code, service.clock.now(), "crash test")
            record = service.wait(sale_id, timeout=30)
            print(sale_id, record.state.value if record else "?", flush=True)
            if os.environ.get("POS_CRASH_REFUND") == "1" and record is not None and record.state.value == "PAID":
                refund_id = service.refund(sale_id, Money(40, "USD"), "crash test")
                refund = service.wait_refund(refund_id, timeout=30)
                print(f"R{refund_id}", refund.state.value if refund else "?", flush=True)
        return 0
    finally:
        service.stop()
        journal.close()
        gateway.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
