"""End to end: the merchant-presented QR sale (the daemon as a process, the v1 protocol, a real browser).

The till asks for a QR sale; the terminal's pay gets the wallet's code from the sandbox, prints a "scan
to pay" slip carrying it (the printer twin decodes the native QR) and tells the customer to scan it.
Headless Chromium plays the customer: it opens the slip's code (the sandbox's wallet cashier page) and
presses Pay. The sandbox's signed notification settles the sale (its queries are scheduled far later)
and is acknowledged once; the receipt prints. The keypad's QR key starts one too, and CANCEL ends it.
"""

import re
import time

import pytest
import requests

from devices.keypad import Key
from pos.demo.stage import Stage
from pos.sandbox.scenarios import SandboxOptions
from tests.cdp import Browser, chromium_path

pytestmark = pytest.mark.slow
QR = re.compile(r"\[QR: (http://127\.0\.0\.1:\d+/sandbox/cashier/\d+)\]")


@pytest.fixture(scope="module")
def stage():
    with Stage(protocol="ams", notify=True,
               payment={"query_first_delay": 40.0, "query_interval_min": 40.0, "query_interval_max": 40.0,
                        "query_deadline": 55.0},
               sandbox_options=SandboxOptions(slow_response=5.0)) as st:
        yield st


def slip_code(stage: Stage) -> tuple[str, str]:
    """The next printed slip and the code its QR carries."""
    slip = stage.new_receipts(1)[0]
    found = QR.search(slip)
    assert found, f"no wallet code on the slip:\n{slip}"
    return slip, found.group(1)


def test_the_customer_pays_the_slip_in_the_wallet_and_the_sale_ends_paid(stage):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian's 'chromium'; tests/system-deps.sh installs it as root)")
    sale = stage.start_sale("8.80", method="qr", orderTitle="Green tea")
    assert sale["method"] == "qr" and sale["codeLast4"] is None and not sale["final"]
    stage.wait_display(lambda lines: lines == ("请扫描小票上的", "二维码付款"), who="customer")
    stage.wait_display(lambda lines: lines[0] == "Customer scans slip" and "8.80" in lines[1])
    slip, url = slip_code(stage)
    assert "SCAN TO PAY" in slip and "8.80" in slip and "Green tea" in slip and "Not a receipt" in slip
    assert stage.sale(sale["id"])["message"]["customer"] == ["请扫描小票上的", "二维码付款"]

    with Browser() as page:
        page.goto(url)
        assert page.js("document.getElementById('amount').textContent") == "8.80 SGD"
        assert page.js("document.getElementById('status').dataset.status") == "PROCESSING"
        assert stage.sale(sale["id"])["state"] == "QUERYING"       # nothing settles before the customer pays
        started = time.monotonic()
        page.submit("document.getElementById('pay').click()")
        assert page.js("document.getElementById('status').dataset.status") == "SUCCESS"

    done = stage.wait_sale(sale["id"], 20)
    assert done["state"] == "PAID" and time.monotonic() - started < 20   # the first query is 40 s away
    mtid = done["merchantTransId"]
    assert done["acquirementId"] and url.endswith("/" + done["acquirementId"])
    receipt = stage.new_receipts(1)[0]
    assert "PAID" in receipt and mtid in receipt and "****" not in receipt   # no customer code to mask
    notices = stage.notifications("paymentRequestId", mtid)
    assert len(notices) == 1 and notices[0]["acknowledged"] and notices[0]["attempts"] == 1
    log = stage.daemon_log()
    assert f"notification protocol=ams merchantTransId={mtid} outcome=applied" in log
    assert f"api=inquiryPayment paymentRequestId={mtid}" not in log
    payment = [p for p in stage.ledger()["payments"] if p["merchantTransId"] == mtid]
    assert payment[0]["status"] == "SUCCESS" and payment[0]["orderAmount"] == {"currency": "SGD", "value": "880"}


def test_the_cashier_takes_a_qr_sale_on_the_keypad_and_cancels_it(stage):
    stage.type("3.10")
    stage.press(Key.QR)                        # the amount entered and the QR sale started in one key
    stage.wait_display(lambda lines: lines[0] == "Customer scans slip" and "3.10" in lines[1])
    _, url = slip_code(stage)
    stage.press(Key.CANCEL)                    # the customer walks away: the open code is cancelled
    stage.wait_display(lambda lines: "ancel" in lines[0])
    payment_id = url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mine = [p for p in stage.ledger()["payments"] if p["acquirementId"] == payment_id]
        if mine and mine[0]["status"] == "CANCELLED":
            break
        time.sleep(0.2)
    assert mine and mine[0]["status"] == "CANCELLED" and mine[0]["paymentTime"] is None
    # The wallet can no longer pay it.
    assert "data-status='CANCELLED'" in requests.post(url + "/pay", timeout=5).text


def test_a_qr_code_nobody_pays_expires_and_the_displays_say_so():
    """Nobody scans: the sandbox's order code expires (3 s) long before the terminal's first query (40 s).
    The sandbox's signed F notification (ORDER_IS_CLOSED) is acknowledged once and is only a hint: the
    terminal queries at once, the inquiry's FAIL ends the sale DECLINED, and both displays and the till
    say in plain words that the QR code expired; nothing is printed but the slip."""
    with Stage(protocol="ams", notify=True,
               payment={"query_first_delay": 40.0, "first_query_after": 40.0, "query_interval_min": 40.0,
                        "query_interval_max": 40.0, "query_deadline": 55.0},
               sandbox_options=SandboxOptions(order_code_expiry=3.0)) as stage:
        sale = stage.start_sale("4.20", method="qr", orderTitle="Lemon tea")
        slip_code(stage)
        started = time.monotonic()
        done = stage.wait_sale(sale["id"], 30)
        assert done["state"] == "DECLINED" and time.monotonic() - started < 25   # not the 40 s schedule
        assert done["message"]["cashier"] == ["QR code expired", "or cancelled: unpaid"]
        stage.wait_display(lambda lines: lines == ("QR code expired", "or cancelled: unpaid"))
        stage.wait_display(lambda lines: lines[0] == "二维码已过期", who="customer")
        mtid = done["merchantTransId"]
        notices = [n for n in stage.ledger()["notifications"] if n["paymentRequestId"] == mtid]
        assert len(notices) == 1 and notices[0]["acknowledged"] and notices[0]["attempts"] == 1
        log = stage.daemon_log()
        assert f"notification protocol=ams merchantTransId={mtid} outcome=queried" in log
        assert len(stage.printer.texts()) == stage.receipts_seen   # the slip only: no receipt
