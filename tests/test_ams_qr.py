"""The merchant-presented QR over the v1 API: the client's order-code pay against the v1 sandbox, and the
sandbox's wallet cashier page (real HTTP on 127.0.0.1).

The pay answers PAYMENT_IN_PROCESS with the code (orderCodeForm.codeDetails) naming the sandbox's cashier
page; a tester's Pay there settles the payment (inquiryPayment reads SUCCESS), Cancel closes it unpaid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from pos.config import GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Failed, QrGateway, QueryOutcome, Succeeded, Unknown, query_outcome_of
from pos.gateway.ams import AmsGateway
from pos.gateway.ams.client import qr_text
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.offline.client import OfflineGateway
from pos.sandbox.scenarios import SandboxOptions
from pos.sandbox.server import SandboxServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import FakeClock, SandboxKeys, make_code

SGD = lambda minor: Money(minor, "SGD")  # noqa: E731
CLIENT_ID = "SANDBOX_POS0001"
_ids = iter(range(10**9))


def rid() -> str:
    return f"POS01-Q-{next(_ids):06d}"


@pytest.fixture
def ams_server(sandbox_keys: SandboxKeys, sandbox_clock: FakeClock,
               sandbox_options: SandboxOptions) -> Iterator[SandboxServer]:
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private,
                           options=sandbox_options, clock=sandbox_clock, protocol="ams")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
