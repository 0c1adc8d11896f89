"""The v1 client (`AmsGateway`) against the v1 sandbox over real HTTP on 127.0.0.1.

The same scripted outcomes as the offline client's tests (README's test-code
table), played through the v1 wire: header signatures both ways, the sandbox
path prefix, paymentRequestId / refundRequestId idempotency, the v1 codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from pos.config import GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Cause, Failed, QueryOutcome, Succeeded, Unknown, query_outcome_of
from pos.gateway.ams import AmsGateway
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.transport import Reply, Transport
from pos.sandbox.server import SandboxServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import FakeClock, SandboxKeys, make_code

SGD = lambda minor: Money(minor, "SGD")  # noqa: E731
CLIENT_ID = "SANDBOX_POS0001"
_ids = iter(range(10**9))


def rid() -> str:
    return f"POS01-A-{next(_ids):06d}"


@pytest.fixture
def ams_settings(ams_server: SandboxServer, sandbox_keys: SandboxKeys) -> GatewaySection:
    return GatewaySection(protocol="ams", url=ams_server.url, client_id=CLIENT_ID,
                          private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                          merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                          alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)),
                          connect_timeout=2.0, read_timeout=1.0, sandbox=True)


class RecordingTransport(Transport):
    """The real transport, recording what it sends."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, data: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> Reply | Unknown:
        self.sent.append((url, data, dict(headers)))
        return super().post(url, data, headers, timeout)


@pytest.fixture
def session(ams_settings: GatewaySection) -> RecordingTransport:
    return RecordingTransport(ams_settings.url)


@pytest.fixture
def gw(ams_settings: GatewaySection, session: RecordingTransport) -> Iterator[AmsGateway]:
    client = AmsGateway(ams_settings, transport=session)
    try:
        yield client
    finally:
        client.close()


def pay(gw: AmsGateway, scenario: str, amount: int = 1250, request_id: str | None = None) -> tuple[str, Any]:
    t = request_id or rid()
    return t, gw.pay(merchant_trans_id=t, identity_code=make_code(scenario), amount=SGD(amount),
                     order_title="Coffee x2")


def status(gw: AmsGateway, t: str) -> QueryOutcome:
    return query_outcome_of(gw.query(merchant_trans_id=t))


def charged(server: SandboxServer, clock: FakeClock) -> int:
    return server.ledger.total_charged("SGD", clock())


def test_pay_inquiry_refund_cancel_over_the_v1_wire(gw: AmsGateway, ams_server: SandboxServer,
                                                      sandbox_clock: FakeClock, session: RecordingTransport) -> None:
    t, res = pay(gw, "00")
    assert isinstance(res, Succeeded) and res.code == "SUCCESS" and res.request_id == t
    assert res.data["paymentRequestId"] == t and res.data["paymentAmount"] == {"currency": "SGD", "value": "1250"}
    assert res.gateway_id == res.data["paymentId"]                      # what the engine keeps and refunds by
    q = gw.query(merchant_trans_id=t)
    assert isinstance(q, Succeeded) and q.data["paymentStatus"] == "SUCCESS" and q.query is QueryOutcome.PAID
    r = gw.refund(acquirement_id=res.data["paymentId"], merchant_refund_id=t + "-R1", amount=SGD(500),
                  reason="one cup")
    assert isinstance(r, Succeeded) and r.request_id == t + "-R1" and r.data["refundAmount"]["value"] == "500"
    ir = gw.inquiry_refund(merchant_refund_id=t + "-R1")
    assert isinstance(ir, Succeeded) and ir.data["refundStatus"] == "SUCCESS"
    missing = gw.inquiry_refund(merchant_refund_id="no-such-refund")
    assert isinstance(missing, Failed)
    t2, _ = pay(gw, "00")
    assert isinstance(gw.cancel(merchant_trans_id=t2), Succeeded)
    cancelled = gw.query(merchant_trans_id=t2)
    assert isinstance(cancelled, Succeeded) and cancelled.data["paymentStatus"] == "CANCELLED"
    assert cancelled.query is QueryOutcome.CLOSED
    assert charged(ams_server, sandbox_clock) == 750
    consult = gw.consult(amount=SGD(100))
    assert isinstance(consult, Succeeded) and consult.data["paymentOptions"]
    # The wire: sandbox prefix for a SANDBOX_ client id, the header scheme, the product fields.
    url, body, headers = session.sent[0]
    assert url == ams_server.url + "/ams/sandbox/api/v1/payments/pay"
    assert headers["client-id"] == CLIENT_ID and headers["request-time"]
    assert headers["Signature"].startswith("algorithm=RSA256,keyVersion=1,signature=")
    assert b'"productCode":"IN_STORE_PAYMENT"' in body
    assert b'"paymentFactor":{"inStorePaymentScenario":"PaymentCode"}' in body
    assert b'"paymentMethodType":"CONNECT_WALLET"' in body
    assert [u.rsplit("/", 1)[1] for u, _, _ in session.sent] == [
        "pay", "inquiryPayment", "refund", "inquiryRefund", "inquiryRefund", "pay", "cancel", "inquiryPayment",
        "consult"]


def test_the_ids_and_amounts_of_an_answer_land_in_the_typed_fields(gw: AmsGateway) -> None:
    """What the engine keeps is read from the v1 field names by the client: paymentId, refundId,
    actualPaymentAmount and paymentQuote; the body stays as it came (no offline names added)."""
    t, res = pay(gw, "00")                   # SGD 12.50, paid in CNY at the sandbox's 5.3696
    assert isinstance(res, Succeeded) and res.gateway_id and res.gateway_id == res.data["paymentId"]
    assert "acquirementId" not in res.data
    assert res.customer_amount == Money(6712, "CNY") and res.conversion_rate == "5.3696"
    q = gw.query(merchant_trans_id=t)
    assert isinstance(q, Succeeded) and q.gateway_id == res.gateway_id and q.customer_amount == Money(6712, "CNY")
    assert q.conversion_rate == "5.3696"
    r = gw.refund(acquirement_id=res.gateway_id, merchant_refund_id=t + "-R1", amount=SGD(500), reason="")
    assert isinstance(r, Succeeded) and r.refund_gateway_id and r.refund_gateway_id == r.data["refundId"]
    waiting_id, waiting = pay(gw, "10")      # the customer confirming: a U answer that names the payment
    assert isinstance(waiting, Unknown) and waiting.code == "PAYMENT_IN_PROCESS"
    assert waiting.gateway_id and waiting.qr == ""
    assert gw.query(merchant_trans_id=waiting_id).gateway_id == waiting.gateway_id
    shown = gw.qr_pay(merchant_trans_id=rid(), amount=SGD(300), order_title="Tea")
    assert isinstance(shown, Unknown) and shown.gateway_id and shown.qr
    _, declined = pay(gw, "01")
    assert isinstance(declined, Failed) and declined.gateway_id == ""


def test_sandbox_stats_count_v1_calls(gw: AmsGateway, ams_server: SandboxServer) -> None:
    # The sandbox's host counts gateway calls whatever the protocol: one pay, one call, a positive time.
    assert ams_server.stats.as_json() == {"gateway_calls": 0, "gateway_seconds": 0.0}
    _, res = pay(gw, "00")
    assert isinstance(res, Succeeded)
    stats = requests.get(ams_server.url + "/sandbox/stats", timeout=5).json()
    assert stats["gateway_calls"] == 1 and stats["gateway_seconds"] > 0


def test_production_client_ids_use_the_production_path(ams_settings: GatewaySection, ams_server: SandboxServer,
                                                       sandbox_keys: SandboxKeys) -> None:
    session = RecordingTransport(ams_settings.url)
    gw = AmsGateway(ams_settings.model_copy(update={"client_id": "2188120000000001"}), transport=session)
    t, res = pay(gw, "00")
    assert isinstance(res, Succeeded)
    assert session.sent[0][0] == ams_server.url + "/ams/api/v1/payments/pay"


@pytest.mark.parametrize("scenario, code", [("01", "USER_BALANCE_NOT_ENOUGH"), ("02", "RISK_REJECT"),
                                            ("03", "EXPIRED_CODE"), ("04", "INVALID_CODE"),
                                            ("05", "AUTH_CODE_ALREADY_USED")])
def test_declines_are_failed_and_charge_nothing(gw: AmsGateway, ams_server: SandboxServer, sandbox_clock: FakeClock,
                                                scenario: str, code: str) -> None:
    t, res = pay(gw, scenario)
    assert isinstance(res, Failed) and res.code == code
    q = gw.query(merchant_trans_id=t)
    assert isinstance(q, Succeeded) and q.data["paymentStatus"] == "FAIL" and q.query is QueryOutcome.CLOSED
    assert charged(ams_server, sandbox_clock) == 0


def test_idempotency_and_single_use_codes(gw: AmsGateway, ams_server: SandboxServer,
                                          sandbox_clock: FakeClock) -> None:
    code = make_code("00")
    t = rid()
    first = gw.pay(merchant_trans_id=t, identity_code=code, amount=SGD(1000), order_title="x")
    again = gw.pay(merchant_trans_id=t, identity_code=code, amount=SGD(1000), order_title="x")
    assert isinstance(first, Succeeded) and isinstance(again, Succeeded)
    assert first.data["paymentId"] == again.data["paymentId"]
    other = gw.pay(merchant_trans_id=t, identity_code=code, amount=SGD(999), order_title="x")
    assert isinstance(other, Failed) and other.code == "REPEAT_REQ_INCONSISTENT"
    reused = gw.pay(merchant_trans_id=rid(), identity_code=code, amount=SGD(1000), order_title="x")
    assert isinstance(reused, Failed) and reused.code == "AUTH_CODE_ALREADY_USED"
    bad = gw.pay(merchant_trans_id=rid(), identity_code="1234", amount=SGD(1000), order_title="x")
    assert isinstance(bad, Failed) and bad.code == "INVALID_CODE"
    acq = first.data["paymentId"]
    ok = gw.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(600), reason="")
    same = gw.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(600), reason="")
    assert isinstance(ok, Succeeded) and isinstance(same, Succeeded) and ok.data["refundId"] == same.data["refundId"]
    changed = gw.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(700), reason="")
    assert isinstance(changed, Failed) and changed.code == "REPEAT_REQ_INCONSISTENT"
    over = gw.refund(acquirement_id=acq, merchant_refund_id="R2", amount=SGD(401), reason="")
    assert isinstance(over, Failed) and over.code == "REFUND_AMOUNT_EXCEED"
    assert charged(ams_server, sandbox_clock) == 400


def test_10_customer_confirms_in_the_wallet(gw: AmsGateway, sandbox_clock: FakeClock) -> None:
    t, res = pay(gw, "10")
    assert isinstance(res, Unknown) and res.code == "PAYMENT_IN_PROCESS"
    assert status(gw, t) is QueryOutcome.PENDING
    sandbox_clock.advance(3.0)
    assert status(gw, t) is QueryOutcome.PAID


def test_the_client_classifies_its_result_codes_as_causes(gw: AmsGateway, sandbox_clock: FakeClock) -> None:
    """The engine's rules read a cause, never a code: the v1 client classifies the v1 codes
    (pos/data/ams_result_codes.csv, column cause)."""
    _, confirming = pay(gw, "10")
    assert isinstance(confirming, Unknown) and confirming.code == "PAYMENT_IN_PROCESS"
    assert confirming.cause is Cause.CUSTOMER_CONFIRMING
    _, busy = pay(gw, "13")       # a system error is not the customer confirming: a neutral "checking"
    assert isinstance(busy, Unknown) and busy.code == "UNKNOWN_EXCEPTION" and busy.cause is None
    _, declined = pay(gw, "01")
    assert isinstance(declined, Failed) and declined.cause is None
    t, paid = pay(gw, "00")
    assert isinstance(paid, Succeeded)
    sandbox_clock.advance(2 * 86400.0)   # past the cancel window, whichever the sandbox keeps
    late = gw.cancel(merchant_trans_id=t)
    assert isinstance(late, Failed) and late.code == "CANCEL_EXPIRED" and late.cause is Cause.TOO_LATE_TO_CANCEL


def test_11_and_12_timeouts(gw: AmsGateway, ams_server: SandboxServer, sandbox_clock: FakeClock) -> None:
    t, res = pay(gw, "11")
    assert isinstance(res, Unknown) and res.reason == "timeout" and res.no_answer
    assert status(gw, t) is QueryOutcome.PAID
    t2, res2 = pay(gw, "12")
    assert isinstance(res2, Unknown) and res2.reason == "timeout"
    q = gw.query(merchant_trans_id=t2)
    assert isinstance(q, Failed) and q.code == "ORDER_NOT_EXIST" and q.query is QueryOutcome.NOT_FOUND
    assert isinstance(gw.cancel(merchant_trans_id=t2), Succeeded)
    assert charged(ams_server, sandbox_clock) == 1250


def test_13_and_14_unknowns_then_truth(gw: AmsGateway, sandbox_clock: FakeClock) -> None:
    t, res = pay(gw, "13")
    assert isinstance(res, Unknown) and res.code == "UNKNOWN_EXCEPTION"
    for _ in range(2):
        q = gw.query(merchant_trans_id=t)
        assert isinstance(q, Unknown) and q.code == "UNKNOWN_EXCEPTION"
    assert status(gw, t) is QueryOutcome.PAID
    t2, _ = pay(gw, "14")
    for _ in range(2):
        c = gw.cancel(merchant_trans_id=t2)
        assert isinstance(c, Unknown) and c.code == "UNKNOWN_EXCEPTION"
    assert isinstance(gw.cancel(merchant_trans_id=t2), Succeeded)
    assert status(gw, t2) is QueryOutcome.CLOSED


def test_15_16_17_99(gw: AmsGateway, ams_server: SandboxServer, sandbox_clock: FakeClock) -> None:
    t15, _ = pay(gw, "15")
    c = gw.cancel(merchant_trans_id=t15)
    assert isinstance(c, Failed) and c.code == "CANCEL_NOT_ALLOWED"
    t16, res16 = pay(gw, "16")
    assert isinstance(res16, Unknown) and "signature" in res16.reason
    assert status(gw, t16) is QueryOutcome.PAID      # money moved: why a bad signature is never "declined"
    t17, _ = pay(gw, "17")
    sandbox_clock.advance(91)
    assert status(gw, t17) is QueryOutcome.PAID
    t99, res99 = pay(gw, "99")
    assert isinstance(res99, Unknown)
    assert status(gw, t99) is QueryOutcome.NOT_FOUND
    sandbox_clock.advance(3.0)
    assert status(gw, t99) is QueryOutcome.PAID


def test_a_request_signed_with_another_key_changes_nothing(ams_settings: GatewaySection, ams_server: SandboxServer,
                                                           sandbox_keys: SandboxKeys,
                                                           sandbox_clock: FakeClock) -> None:
    # Signed with the gateway's own private key instead of the merchant's: the sandbox refuses it.
    wrong = AmsGateway(ams_settings, private_key=sandbox_keys.alipay_private)
    t, res = pay(wrong, "00")
    assert isinstance(res, Failed) and res.code == "INVALID_SIGNATURE"
    assert charged(ams_server, sandbox_clock) == 0 and ams_server.ledger.payments(sandbox_clock()) == []


def test_an_answer_signed_with_another_key_is_unknown(ams_settings: GatewaySection, sandbox_keys: SandboxKeys,
                                                      ams_server: SandboxServer, sandbox_clock: FakeClock) -> None:
    # The client expects Alipay's key; an answer verifiable only with another key is never believed.
    gw = AmsGateway(ams_settings, alipay_public_key=sandbox_keys.merchant_public)
    t, res = pay(gw, "00")
    assert isinstance(res, Unknown) and "signature" in res.reason
    assert gw.health().last_error == "answer signature did not verify"
    assert charged(ams_server, sandbox_clock) == 1250


def test_unreachable_gateway_is_unknown(ams_settings: GatewaySection) -> None:
    gw = AmsGateway(ams_settings.model_copy(update={"url": "http://127.0.0.1:9"}))
    t, res = pay(gw, "00")
    assert isinstance(res, Unknown) and res.no_answer and gw.health().link_down


def test_log_never_holds_the_payment_code(gw: AmsGateway, caplog: pytest.LogCaptureFixture) -> None:
    code = make_code("00")
    with caplog.at_level("INFO", logger="pos.gateway"):
        gw.pay(merchant_trans_id=rid(), identity_code=code, amount=SGD(100), order_title="x")
    assert code not in caplog.text and code[-4:] in caplog.text


def test_doctor_checks_the_v1_keys_and_endpoint_with_one_signed_inquiry(
        ams_settings: GatewaySection, ams_server: SandboxServer, sandbox_keys: SandboxKeys,
        sandbox_clock: FakeClock) -> None:
    from pos.config import Config
    from pos.ops import doctor
    from pos.ops.doctor import Level
    r = doctor.check_gateway_answer(Config(gateway=ams_settings))
    assert r.level is Level.OK and "ams" in r.detail and "ORDER_NOT_EXIST" in r.detail
    assert ams_server.ledger.payments(sandbox_clock()) == []      # an inquiry creates nothing
    wrong = ams_settings.model_copy(update={"alipay_public_key": str(sandbox_keys.path(MERCHANT_PUBLIC))})
    r = doctor.check_gateway_answer(Config(gateway=wrong))
    assert r.level is Level.FAIL and "did not verify" in r.detail and "alipay_public_key" in r.detail
    other = ams_settings.model_copy(update={"private_key": str(sandbox_keys.path(ALIPAY_PUBLIC).with_name(
        "alipay_private.pem"))})                                    # signs with a key Alipay does not hold
    r = doctor.check_gateway_answer(Config(gateway=other))
    assert r.level is Level.FAIL and "INVALID_SIGNATURE" in r.detail


def test_alipaycn_settlement_rules_on_the_v1_wire(ams_settings: GatewaySection, ams_server: SandboxServer,
                                                  sandbox_clock: FakeClock) -> None:
    session = RecordingTransport(ams_settings.url)
    gw = AmsGateway(ams_settings, transport=session, settlement_currency="USD")
    ok = gw.pay(merchant_trans_id=rid(), identity_code=make_code("00"), amount=Money(700, "CNY"), order_title="x")
    assert isinstance(ok, Succeeded)
    assert b'"settlementStrategy":{"settlementCurrency":"USD"}' in session.sent[0][1]
    # A non-CNY payment must settle in its own currency: refused before any request, nothing moved.
    refused = gw.pay(merchant_trans_id=rid(), identity_code=make_code("00"), amount=Money(700, "SGD"),
                     order_title="x")
    assert isinstance(refused, Failed) and refused.code == "CURRENCY_NOT_SUPPORT" and "not sent" in refused.message
    assert len(session.sent) == 1 and ams_server.ledger.total_charged("SGD", sandbox_clock()) == 0
    cny = AmsGateway(ams_settings, transport=RecordingTransport(ams_settings.url), settlement_currency="CNY")
    never = cny.pay(merchant_trans_id=rid(), identity_code=make_code("00"), amount=Money(700, "CNY"), order_title="x")
    assert isinstance(never, Failed) and "CNY" in never.message


def test_alipaycn_goods_on_the_v1_wire(ams_settings: GatewaySection, ams_server: SandboxServer,
                                      sandbox_clock: FakeClock) -> None:
    """Seed 002: the till's items go out as order.extendInfo.chinaExtraTransInfo; the sandbox checks and keeps it."""
    session = RecordingTransport(ams_settings.url)
    gw = AmsGateway(ams_settings, transport=session, settlement_currency="USD")
    mtid = rid()
    goods = "Macbook 12 inch M3 8G 256G SSD^1|Apple iPad Pro 11 inch^2"
    ok = gw.pay(merchant_trans_id=mtid, identity_code=make_code("00"), amount=Money(700, "CNY"),
                order_title="x", goods=goods)
    assert isinstance(ok, Succeeded)
    order = json.loads(session.sent[0][1])["order"]
    assert json.loads(order["extendInfo"]) == {"chinaExtraTransInfo": {
        "businessType": "4", "goodsInfo": goods, "totalQuantity": "3"}}
    payment = next(p for p in ams_server.ledger.to_json(sandbox_clock())["payments"] if p["merchantTransId"] == mtid)
    assert payment["alipayCn"] == {"settlementCurrency": "USD", "chinaExtraTransInfo": {
        "businessType": "4", "goodsInfo": goods, "totalQuantity": "3"}}
    # Items that break the rules are refused before any request: nothing sent, nothing charged.
    for bad in ("pencil^0", "a|b^1", "pen^x", "x" * 65 + "^1"):
        refused = gw.pay(merchant_trans_id=rid(), identity_code=make_code("00"), amount=Money(700, "CNY"),
                         order_title="x", goods=bad)
        assert isinstance(refused, Failed) and refused.code == "PARAM_ILLEGAL" and "not sent" in refused.message
    assert len(session.sent) == 1 and ams_server.ledger.total_charged("CNY", sandbox_clock()) == 700
    # Not an AlipayCN terminal: no chinaExtraTransInfo on the wire.
    plain_session = RecordingTransport(ams_settings.url)
    plain = AmsGateway(ams_settings, transport=plain_session)
    assert isinstance(plain.pay(merchant_trans_id=rid(), identity_code=make_code("00"), amount=Money(700, "SGD"),
                                order_title="x", goods=goods), Succeeded)
    assert b"extendInfo" not in plain_session.sent[0][1] and b"settlementStrategy" not in plain_session.sent[0][1]


def test_the_v1_sandbox_refuses_a_wrong_china_extra_trans_info(ams_settings: GatewaySection,
                                                               ams_server: SandboxServer,
                                                               sandbox_clock: FakeClock) -> None:
    gw = AmsGateway(ams_settings, settlement_currency="USD")
    body = {"productCode": "IN_STORE_PAYMENT", "paymentRequestId": rid(),
            "order": {"orderAmount": {"currency": "CNY", "value": "700"}, "orderDescription": "x",
                      "extendInfo": json.dumps({"chinaExtraTransInfo": {"businessType": "4",
                                                                        "goodsInfo": "pen^2|ink^1",
                                                                        "totalQuantity": "4"}})},
            "paymentAmount": {"currency": "CNY", "value": "700"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": make_code("00")},
            "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
            "settlementStrategy": {"settlementCurrency": "USD"}}
    answer = gw.call("pay", body, body["paymentRequestId"])
    assert isinstance(answer, Failed) and answer.code == "PARAM_ILLEGAL" and "totalQuantity" in answer.message
    assert ams_server.ledger.total_charged("CNY", sandbox_clock()) == 0


def test_pos_sandbox_speaks_the_v1_api_when_asked(tmp_path: Any, sandbox_keys: SandboxKeys,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import subprocess
    import sys

    from pos.cli.main import main as pos_main
    proc = subprocess.Popen([sys.executable, "-m", "pos", "sandbox", "--port", "0", "--keys", str(sandbox_keys.folder),
                             "--protocol", "ams"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = line.split()[4]
        settings = GatewaySection(protocol="ams", url=url, client_id=CLIENT_ID,
                                  private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                                  alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)), sandbox=True)
        with AmsGateway(settings) as gw:
            t, res = pay(gw, "00")
            assert isinstance(res, Succeeded) and res.data["paymentRequestId"] == t
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert pos_main(["sandbox", "--config", str(tmp_path / "t.toml"), "--protocol", "ams"]) == 2
    assert "--protocol goes with --port/--keys" in capsys.readouterr().err
