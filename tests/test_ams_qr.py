"""The merchant-presented QR over the v1 API: the client's order-code pay against the v1 sandbox, and the
sandbox's wallet cashier page (real HTTP on 127.0.0.1).

The pay answers PAYMENT_IN_PROCESS with the code (orderCodeForm.codeDetails) naming the sandbox's cashier
page; a tester's Pay there settles the payment (inquiryPayment reads SUCCESS), Cancel closes it unpaid,
and a code nobody pays expires: closed unpaid (inquiryPayment FAIL, ORDER_IS_CLOSED), and the terminal's
QR sale (the payment runner over the sandbox) ends DECLINED.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests

from devices.messages import Catalogue
from pos.config import GatewaySection, PaymentSection
from pos.core.engine import PrintReceipt, Show
from pos.core.money import Money
from pos.core.outcomes import Failed, QrGateway, QueryOutcome, Succeeded, Unknown, query_outcome_of
from pos.core.records import SaleState
from pos.gateway.ams import AmsGateway
from pos.gateway.ams.client import qr_text
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.offline.client import OfflineGateway
from pos.journal.journal import Journal
from pos.payments.runner import PaymentRunner
from pos.sandbox.scenarios import SandboxOptions
from pos.sandbox.server import SandboxServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys, make_code

SGD = lambda minor: Money(minor, "SGD")  # noqa: E731
CLIENT_ID = "SANDBOX_POS0001"
_ids = iter(range(10**9))


def rid() -> str:
    return f"POS01-Q-{next(_ids):06d}"


@pytest.fixture
def gw(ams_server: SandboxServer, sandbox_keys: SandboxKeys) -> Iterator[AmsGateway]:
    settings = GatewaySection(protocol="ams", url=ams_server.url, client_id=CLIENT_ID,
                              private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                              merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                              alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)),
                              connect_timeout=2.0, read_timeout=1.0, sandbox=True)
    client = AmsGateway(settings, notify_url="http://127.0.0.1:9/notify/ams/payment")
    try:
        yield client
    finally:
        client.close()


def test_the_order_code_answer_carries_the_cashier_page_and_pay_settles_it(gw, ams_server):
    assert isinstance(gw, QrGateway)
    mtid = rid()
    answer = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(1250), order_title="Tea")
    assert isinstance(answer, Unknown) and answer.code == "PAYMENT_IN_PROCESS" and not answer.no_answer
    assert answer.qr.startswith(ams_server.url + "/sandbox/cashier/")
    assert answer.data["paymentId"] == answer.qr.rsplit("/", 1)[1]
    assert answer.data["orderCodeForm"]["codeDetails"][0] == {"codeValueType": "QRCODE", "displayType": "TEXT",
                                                              "codeValue": answer.qr}
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.PENDING

    page = requests.get(answer.qr, timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "12.50 SGD" in page.text and "Tea" in page.text and "id='pay'" in page.text
    assert "data-status='PROCESSING'" in page.text
    # The buttons are forms that POST; a GET of a button's address pays nothing.
    assert requests.get(answer.qr + "/pay", timeout=5).status_code == 405
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.PENDING

    paid = requests.post(answer.qr + "/pay", timeout=5)
    assert paid.status_code == 200 and "data-status='SUCCESS'" in paid.text and "id='pay'" not in paid.text
    result = gw.query(merchant_trans_id=mtid)
    assert isinstance(result, Succeeded) and query_outcome_of(result) is QueryOutcome.PAID
    assert result.data["paymentId"] == answer.data["paymentId"]
    # Pressing Pay again does not pay twice; the ledger holds one payment of 12.50.
    requests.post(answer.qr + "/pay", timeout=5)
    ledger = requests.get(ams_server.url + "/sandbox/ledger", timeout=5).json()
    mine = [p for p in ledger["payments"] if p["merchantTransId"] == mtid]
    assert len(mine) == 1 and mine[0]["status"] == "SUCCESS" and mine[0]["orderAmount"]["value"] == "1250"
    assert mine[0]["identityCodeTail"] == ""
    # The notification is owed to the paymentNotifyUrl (retried until acknowledged).
    owed = [n for n in ledger["notifications"] if n["paymentRequestId"] == mtid]
    assert owed and owed[0]["url"] == "http://127.0.0.1:9/notify/ams/payment" and not owed[0]["acknowledged"]


def test_cancel_on_the_cashier_page_closes_the_payment_unpaid(gw):
    mtid = rid()
    answer = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(300), order_title="")
    assert isinstance(answer, Unknown) and answer.qr
    declined = requests.post(answer.qr + "/cancel", timeout=5)
    assert declined.status_code == 200 and "data-status='CLOSED'" in declined.text
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.CLOSED
    # A closed payment cannot be paid afterwards.
    assert "data-status='CLOSED'" in requests.post(answer.qr + "/pay", timeout=5).text
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.CLOSED


def test_the_terminal_cancel_closes_an_open_order_code(gw):
    mtid = rid()
    answer = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(300), order_title="")
    assert isinstance(gw.cancel(merchant_trans_id=mtid), Succeeded)
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.CLOSED
    page = requests.post(answer.qr + "/pay", timeout=5)
    assert "data-status='CANCELLED'" in page.text and "id='pay'" not in page.text


def test_an_order_code_nobody_pays_expires_closed_and_cannot_be_paid(gw, ams_server, sandbox_clock):
    expiry = ams_server.protocol.options.order_code_expiry
    mtid = rid()
    answer = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(450), order_title="Tea")
    assert isinstance(answer, Unknown) and answer.qr
    expire_time = answer.data["orderCodeForm"]["expireTime"]
    page = requests.get(answer.qr, timeout=5).text
    assert f"Pay before {expire_time}" in page and "id='pay'" in page
    sandbox_clock.advance(expiry - 1)
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.PENDING   # not yet
    # A repeated pay names the same payment and the same expireTime (not a fresh one).
    again = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(450), order_title="Tea")
    assert isinstance(again, Unknown) and again.data["orderCodeForm"]["expireTime"] == expire_time

    sandbox_clock.advance(1)
    # inquiryPayment: the inquiry worked (S) and the payment failed: paymentStatus FAIL, ORDER_IS_CLOSED.
    result = gw.query(merchant_trans_id=mtid)
    assert isinstance(result, Succeeded) and query_outcome_of(result) is QueryOutcome.CLOSED
    assert result.data["paymentStatus"] == "FAIL" and result.data["paymentResultCode"] == "ORDER_IS_CLOSED"
    assert "expired" in result.data["paymentResultMessage"]
    # ... read into the typed fields the engine keeps (it never reads the body's field names).
    assert result.result_code == "ORDER_IS_CLOSED" and "expired" in result.result_message
    # The wallet refuses: the page says it expired, has no buttons, and Pay changes nothing.
    page = requests.get(answer.qr, timeout=5).text
    assert "data-expired='true'" in page and "Expired at" in page and "id='pay'" not in page
    refused = requests.post(answer.qr + "/pay", timeout=5)
    assert refused.status_code == 409 and "data-status='CLOSED'" in refused.text
    assert query_outcome_of(gw.query(merchant_trans_id=mtid)) is QueryOutcome.CLOSED
    ledger = requests.get(ams_server.url + "/sandbox/ledger", timeout=5).json()
    mine = [p for p in ledger["payments"] if p["merchantTransId"] == mtid]
    assert mine[0]["status"] == "CLOSED" and mine[0]["paymentTime"] is None and mine[0]["expired"] is True
    # The pay itself, repeated, reads the final F; the terminal's cancel has nothing left to undo.
    closed = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(450), order_title="Tea")
    assert isinstance(closed, Failed) and closed.code == "ORDER_IS_CLOSED"
    assert isinstance(gw.cancel(merchant_trans_id=mtid), Succeeded)


def test_the_terminal_s_qr_sale_ends_declined_when_its_code_expires(sandbox_keys, tmp_path):
    """The runner and engine over the real v1 sandbox: nobody scans, the code expires before the query
    deadline, the next inquiry reads FAIL and the sale ends DECLINED like a declined code sale: no
    receipt, no cancel needed (nothing was paid). The inquiry's paymentResultCode is the sale's
    result, and the displays say why in plain words: the QR code expired."""
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private,
                           options=SandboxOptions(order_code_expiry=1.5), protocol="ams").start()
    settings = GatewaySection(protocol="ams", url=server.url, client_id=CLIENT_ID,
                              private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                              merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                              alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)),
                              connect_timeout=2.0, read_timeout=2.0, sandbox=True)
    journal = Journal.open(tmp_path / "journal.db", terminal_id="POS01")
    runner = PaymentRunner(journal, AmsGateway(settings, notify_url=""),
                           PaymentSection(query_first_delay=0.5, query_interval_min=0.5, query_interval_max=0.6,
                                          query_deadline=30.0, background_interval=300.0))
    seen: list = []
    runner.subscribe(seen.append)
    try:
        runner.recover()
        sale_id = runner.start_sale(SGD(990), "", time.time(), "Iced tea", qr=True)
        sale = runner.wait(sale_id, timeout=20)
        assert sale is not None and sale.state is SaleState.DECLINED, sale
        assert sale.acquirement_id and sale.finished_at is not None
        assert sale.finished_at - sale.created_at < 10          # ended by the expiry, not the 30 s deadline
        assert sale.result_code == "ORDER_IS_CLOSED" and "expired" in sale.result_message
        triggers = [e.trigger for e in journal.events("sale", sale_id)]
        assert "query_closed" in triggers and not any("cancel" in t for t in triggers)
        deadline = time.monotonic() + 5                      # subscribers hear on the notifier thread
        final = "qr.code.ORDER_IS_CLOSED"
        while final not in [c.key for c in seen if isinstance(c, Show)] and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = [c.key for c in seen if isinstance(c, Show)]
        assert "scan_qr" in shown and shown[-1] == final
        en, zh = Catalogue.load("en"), Catalogue.load("zh-CN")
        assert en.cashier(final)[0] == "QR code expired" and en.customer(final)[0] == "QR code expired"
        assert zh.customer(final)[0] == "二维码已过期"
        assert not [c for c in seen if isinstance(c, PrintReceipt)]
        ledger = requests.get(server.url + "/sandbox/ledger", timeout=5).json()
        mine = [p for p in ledger["payments"] if p["merchantTransId"] == sale.merchant_trans_id]
        assert mine[0]["status"] == "CLOSED" and mine[0]["expired"] and mine[0]["cancelTime"] is None
    finally:
        runner.stop(timeout=5)
        journal.close()
        server.stop()


def test_order_code_idempotency(gw):
    mtid = rid()
    first = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(700), order_title="")
    again = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(700), order_title="")
    assert isinstance(again, Unknown) and again.qr == first.qr    # same payment, same code
    other = gw.qr_pay(merchant_trans_id=mtid, amount=SGD(701), order_title="")
    assert isinstance(other, Failed) and other.code == "REPEAT_REQ_INCONSISTENT"
    # A customer-presented pay under the same id is another request, not this one.
    code_pay = gw.pay(merchant_trans_id=mtid, identity_code=make_code("00"), amount=SGD(700), order_title="")
    assert isinstance(code_pay, Failed) and code_pay.code == "REPEAT_REQ_INCONSISTENT"


def test_cashier_page_of_no_payment_or_of_a_code_payment_is_404(gw, ams_server):
    assert requests.get(ams_server.url + "/sandbox/cashier/20240101111212800100169999", timeout=5).status_code == 404
    mtid = rid()
    paid = gw.pay(merchant_trans_id=mtid, identity_code=make_code("00"), amount=SGD(100), order_title="")
    assert isinstance(paid, Succeeded)
    page = requests.post(f"{ams_server.url}/sandbox/cashier/{paid.data['paymentId']}/pay", timeout=5)
    assert page.status_code == 404
    answer = gw.qr_pay(merchant_trans_id=rid(), amount=SGD(100), order_title="")
    assert requests.post(answer.qr + "/refund", timeout=5).status_code == 404


def test_qr_text_reads_the_documented_answer_shapes():
    form = {"orderCodeForm": {"codeDetails": [
        {"codeValueType": "QRCODE", "displayType": "BIGIMAGE", "codeValue": "https://img/qr.png"},
        {"codeValueType": "QRCODE", "displayType": "TEXT", "codeValue": "https://qr.alipay.com/abc"}]}}
    assert qr_text(form) == "https://qr.alipay.com/abc"
    # Seed 002's cashier answer: the redirect URL.
    assert qr_text({"redirectActionForm": {"method": "GET", "redirectUrl": "https://x/cashier"}}) == \
        "https://x/cashier"
    assert qr_text({"normalUrl": "https://n"}) == "https://n"
    assert qr_text({"result": {}}) == "" and qr_text({"orderCodeForm": {"codeDetails": "x"}}) == ""


def test_the_offline_protocol_offers_no_qr():
    assert not re.search("qr_pay", " ".join(dir(OfflineGateway)))
    assert not issubclass(OfflineGateway, QrGateway)
