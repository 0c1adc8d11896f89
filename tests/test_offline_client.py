"""The offline client against the sandbox over real HTTP on 127.0.0.1 (and the same contract in-process).

Every function and every scripted outcome of the sandbox (README table) is
played through `OfflineGateway`; the same expectations are checked against
`DirectGateway`, so the engine's fast tests see the same rules.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos.core.money import Money
from pos.core.outcomes import Cause, Failed, QueryOutcome, Succeeded, Unknown, query_outcome_of
from pos.gateway.offline import FUNCTIONS, OfflineGateway
from pos.gateway.offline.status import query_outcome
from pos.gateway.signing import build_signed, split_signed
from pos.gateway.transport import Reply, Transport
from pos.sandbox.direct import DirectGateway
from pos.sandbox.ledger import Ledger
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import FakeClock, SandboxKeys, make_code, short_options

SGD = lambda minor: Money(minor, "SGD")  # noqa: E731
NOT_FOUND = ["ORDER_NOT_EXIST", "TARGET_NOT_FOUND"]
_ids = iter(range(10**9))


def mtid() -> str:
    return f"POS01-T-{next(_ids):06d}"


@dataclass
class Rig:
    gateway: Any
    ledger: Ledger
    clock: FakeClock
    http: bool


@pytest.fixture(params=["http", "direct"])
def rig(request: pytest.FixtureRequest, sandbox_clock: FakeClock) -> Rig:
    if request.param == "http":
        server = request.getfixturevalue("sandbox_server")
        return Rig(request.getfixturevalue("offline_gateway"), server.ledger, sandbox_clock, True)
    direct: DirectGateway = request.getfixturevalue("direct_gateway")
    return Rig(direct, direct.ledger, sandbox_clock, False)


def pay(rig: Rig, scenario: str, amount: int = 1250, trans_id: str | None = None) -> tuple[str, Any]:
    t = trans_id or mtid()
    return t, rig.gateway.pay(merchant_trans_id=t, identity_code=make_code(scenario), amount=SGD(amount),
                              order_title="Coffee x2")


def status(rig: Rig, t: str) -> QueryOutcome:
    return query_outcome(rig.gateway.query(merchant_trans_id=t), NOT_FOUND)


def charged(rig: Rig) -> int:
    return rig.ledger.total_charged("SGD", rig.clock())


# -- the scripted outcomes -------------------------------------------------------

def test_00_success_then_query_cancel_refund(rig: Rig) -> None:
    t, res = pay(rig, "00")
    assert isinstance(res, Succeeded) and res.code == "SUCCESS"
    acq = res.data["acquirementId"]
    assert res.data["merchantTransId"] == t and res.data["orderAmount"] == {"currency": "SGD", "value": "1250"}
    q = rig.gateway.query(merchant_trans_id=t)
    assert isinstance(q, Succeeded) and q.data["acquirementStatus"] == "SUCCESS"
    r = rig.gateway.refund(acquirement_id=acq, merchant_refund_id=t + "-R1", amount=SGD(500), reason="one cup")
    assert isinstance(r, Succeeded) and r.data["refundAmount"]["value"] == "500"
    assert charged(rig) == 750
    t2, _ = pay(rig, "00")
    c = rig.gateway.cancel(merchant_trans_id=t2)
    assert isinstance(c, Succeeded)
    assert status(rig, t2) is QueryOutcome.CLOSED
    assert charged(rig) == 750


def test_the_ids_and_amounts_of_an_answer_land_in_the_typed_fields(rig: Rig) -> None:
    """What the engine keeps is read from the offline field names by the client (and the in-process
    gateway): acquirementId, refundId, payAmount and conversionRate; the body stays as it came."""
    t, res = pay(rig, "00")                  # SGD 12.50, paid in CNY at the sandbox's 5.3696
    assert isinstance(res, Succeeded) and res.gateway_id and res.gateway_id == res.data["acquirementId"]
    assert res.customer_amount == Money(6712, "CNY") and res.data["payAmount"] == {"currency": "CNY", "value": "6712"}
    assert res.conversion_rate == "5.3696" and res.refund_gateway_id == ""
    q = rig.gateway.query(merchant_trans_id=t)
    assert isinstance(q, Succeeded) and q.gateway_id == res.gateway_id and q.customer_amount == Money(6712, "CNY")
    r = rig.gateway.refund(acquirement_id=res.gateway_id, merchant_refund_id=t + "-R1", amount=SGD(500), reason="")
    assert isinstance(r, Succeeded) and r.refund_gateway_id and r.refund_gateway_id == r.data["refundId"]
    waiting_id, waiting = pay(rig, "10")     # USER_PAYING: a U answer that names the payment
    assert isinstance(waiting, Unknown) and waiting.code == "USER_PAYING"
    assert waiting.gateway_id == rig.ledger.payment(waiting_id, rig.clock()).acquirement_id  # type: ignore[union-attr]
    assert rig.gateway.cancel(merchant_trans_id=waiting_id).gateway_id == waiting.gateway_id
    closed = rig.gateway.query(merchant_trans_id=waiting_id)
    assert query_outcome_of(closed) is QueryOutcome.CLOSED and closed.gateway_id == waiting.gateway_id
    _, declined = pay(rig, "01")
    assert isinstance(declined, Failed) and declined.gateway_id == ""


def test_every_answer_names_the_request_it_answers(rig: Rig) -> None:
    t, res = pay(rig, "00")
    assert isinstance(res, Succeeded) and res.request_id == t
    query = rig.gateway.query(merchant_trans_id=t)
    assert query.request_id == t and query_outcome_of(query) is QueryOutcome.PAID   # read by the protocol
    refund = rig.gateway.refund(acquirement_id=res.data["acquirementId"], merchant_refund_id=t + "-R1",
                                amount=SGD(100), reason="")
    assert refund.request_id == t + "-R1"
    declined_id, declined = pay(rig, "01")
    assert isinstance(declined, Failed) and declined.request_id == declined_id
    held_id, held = pay(rig, "11")
    assert isinstance(held, Unknown) and held.request_id == held_id


@pytest.mark.parametrize("scenario, code", [("01", "USER_BALANCE_NOT_ENOUGH"), ("02", "RISK_REJECT"),
                                            ("03", "EXPIRED_CODE"), ("04", "INVALID_CODE"),
                                            ("05", "AUTH_CODE_ALREADY_USED")])
def test_declines_are_failed_and_charge_nothing(rig: Rig, scenario: str, code: str) -> None:
    t, res = pay(rig, scenario)
    assert isinstance(res, Failed) and res.code == code and res.code_id.isdigit()
    assert charged(rig) == 0
    again = rig.gateway.pay(merchant_trans_id=t, identity_code=make_code(scenario), amount=SGD(1250),
                            order_title="Coffee x2")
    assert isinstance(again, Failed) and again.code == code


def test_10_customer_confirms_in_the_wallet(rig: Rig) -> None:
    t, res = pay(rig, "10")
    assert isinstance(res, Unknown) and res.code == "USER_PAYING"
    assert status(rig, t) is QueryOutcome.PENDING
    rig.clock.advance(3.0)
    assert status(rig, t) is QueryOutcome.PAID
    assert charged(rig) == 1250


def test_11_timeout_but_charged(rig: Rig) -> None:
    t, res = pay(rig, "11")
    assert isinstance(res, Unknown) and res.reason == "timeout"
    assert charged(rig) == 1250  # recorded before the held answer
    assert status(rig, t) is QueryOutcome.PAID


def test_12_timeout_never_created(rig: Rig) -> None:
    t, res = pay(rig, "12")
    assert isinstance(res, Unknown) and res.reason == "timeout"
    q = rig.gateway.query(merchant_trans_id=t)
    assert isinstance(q, Failed) and q.code == "ORDER_NOT_EXIST"
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t), Succeeded)
    assert charged(rig) == 0


def test_13_query_errors_then_truth(rig: Rig) -> None:
    t, res = pay(rig, "13")
    assert isinstance(res, Unknown) and res.code == "SYSTEM_ERROR"
    for _ in range(2):
        q = rig.gateway.query(merchant_trans_id=t)
        assert isinstance(q, Unknown) and q.code == "SYSTEM_ERROR"
    assert status(rig, t) is QueryOutcome.PAID
    assert charged(rig) == 1250


def test_14_cancel_unknown_twice_then_success(rig: Rig) -> None:
    t, res = pay(rig, "14")
    assert isinstance(res, Unknown)
    rig.clock.advance(1000)
    assert status(rig, t) is QueryOutcome.PENDING
    for _ in range(2):
        c = rig.gateway.cancel(merchant_trans_id=t)
        assert isinstance(c, Unknown) and c.code == "SYSTEM_ERROR"
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t), Succeeded)
    assert status(rig, t) is QueryOutcome.CLOSED
    assert charged(rig) == 0


def test_the_client_classifies_its_result_codes_as_causes(rig: Rig) -> None:
    """The engine's rules read a cause, never a code: the client (and the in-process gateway) classify
    the offline codes (pos/data/result_codes.csv, column cause)."""
    _, confirming = pay(rig, "10")
    assert isinstance(confirming, Unknown) and confirming.code == "USER_PAYING"
    assert confirming.cause is Cause.CUSTOMER_CONFIRMING
    _, busy = pay(rig, "13")      # a system error is not the customer confirming: a neutral "checking"
    assert isinstance(busy, Unknown) and busy.code == "SYSTEM_ERROR" and busy.cause is None
    _, declined = pay(rig, "01")
    assert isinstance(declined, Failed) and declined.cause is None
    t, paid = pay(rig, "00")
    assert isinstance(paid, Succeeded)
    refused = rig.gateway.cancel(merchant_trans_id=pay(rig, "15")[0])
    assert isinstance(refused, Failed) and refused.code == "CANCEL_NOT_ALLOWED" and refused.cause is None
    rig.clock.advance(2 * 86400.0)   # past the cancel window, whichever the sandbox keeps
    late = rig.gateway.cancel(merchant_trans_id=t)
    assert isinstance(late, Failed) and late.code == "CANCEL_EXPIRED" and late.cause is Cause.TOO_LATE_TO_CANCEL


def test_15_cancel_not_allowed(rig: Rig) -> None:
    t, _ = pay(rig, "15")
    c = rig.gateway.cancel(merchant_trans_id=t)
    assert isinstance(c, Failed) and c.code == "CANCEL_NOT_ALLOWED"
    assert status(rig, t) is QueryOutcome.PENDING


def test_16_bad_signature_is_never_success(rig: Rig) -> None:
    t, res = pay(rig, "16")
    assert isinstance(res, Unknown) and "signature" in res.reason
    assert charged(rig) == 1250  # money moved: exactly why a bad signature must not read as "declined"


def test_17_late_success_unless_cancelled(rig: Rig) -> None:
    t, res = pay(rig, "17")
    assert isinstance(res, Unknown)
    rig.clock.advance(60)
    assert status(rig, t) is QueryOutcome.PENDING
    rig.clock.advance(31)
    assert status(rig, t) is QueryOutcome.PAID
    t2, _ = pay(rig, "17")
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t2), Succeeded)
    rig.clock.advance(120)
    assert status(rig, t2) is QueryOutcome.CLOSED
    assert charged(rig) == 1250


def test_18_timeout_that_ends_cancelled(rig: Rig) -> None:
    t, res = pay(rig, "18")
    assert isinstance(res, Unknown) and res.code == "USER_PAYING"
    rig.clock.advance(3600)
    assert status(rig, t) is QueryOutcome.PENDING
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t), Succeeded)
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t), Succeeded)  # a repeat is safe
    assert status(rig, t) is QueryOutcome.CLOSED and charged(rig) == 0


def test_99_query_overtakes_the_pay(rig: Rig) -> None:
    t, res = pay(rig, "99")
    assert isinstance(res, Unknown)
    assert status(rig, t) is QueryOutcome.NOT_FOUND
    rig.clock.advance(3.0)
    assert status(rig, t) is QueryOutcome.PAID
    # Cancelled before it arrives: the late pay must not charge.
    t2, _ = pay(rig, "99")
    assert isinstance(rig.gateway.cancel(merchant_trans_id=t2), Succeeded)
    rig.clock.advance(10)
    assert status(rig, t2) is QueryOutcome.NOT_FOUND
    assert charged(rig) == 1250


def test_refund_rules_through_the_client(rig: Rig) -> None:
    _, res = pay(rig, "00", amount=1000)
    acq = res.data["acquirementId"]
    ok = rig.gateway.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(600), reason="")
    same = rig.gateway.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(600), reason="")
    assert isinstance(ok, Succeeded) and isinstance(same, Succeeded)
    assert ok.data["refundId"] == same.data["refundId"]
    other = rig.gateway.refund(acquirement_id=acq, merchant_refund_id="R1", amount=SGD(700), reason="")
    assert isinstance(other, Failed) and other.code == "REPEAT_REQ_INCONSISTENT"
    over = rig.gateway.refund(acquirement_id=acq, merchant_refund_id="R2", amount=SGD(401), reason="")
    assert isinstance(over, Failed) and over.code == "REFUND_AMOUNT_EXCEED"
    assert charged(rig) == 400


# -- HTTP-only properties of the client -----------------------------------------

class RecordingTransport(Transport):
    """The real transport, recording what it sends."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.sent: list[tuple[str, bytes]] = []

    def post(self, url: str, data: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> Reply | Unknown:
        self.sent.append((url, data))
        return super().post(url, data, headers, timeout)


def test_request_head_body_and_urls(gateway_settings: Any, sandbox_server: Any) -> None:
    session = RecordingTransport(gateway_settings.url)
    gw = OfflineGateway(gateway_settings.model_copy(update={"settle_contract_id": "SGD-1"}), transport=session)
    t = mtid()
    code = make_code("00")
    gw.pay(merchant_trans_id=t, identity_code=code, amount=SGD(1250), order_title="Coffee")
    res = gw.query(merchant_trans_id=t)
    gw.cancel(merchant_trans_id=t)
    assert isinstance(res, Succeeded) and gw.health().last_latency is not None and gw.health().last_latency >= 0
    urls = [u for u, _ in session.sent]
    assert urls == [sandbox_server.url + FUNCTIONS[op].path for op in ("pay", "query", "cancel")]
    heads = [json.loads(split_signed(d.decode(), "request")[0])["head"] for _, d in session.sent]
    assert len({h["reqMsgId"] for h in heads}) == 3
    for h in heads:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", h["reqTime"])
        assert h["signType"] == "RSA2" and h["reserve"] == "{}" and h["version"] == "2.0.4"
    body = json.loads(split_signed(session.sent[0][1].decode(), "request")[0])["body"]
    assert body == {"merchantId": gateway_settings.merchant_id, "productCode": "OFFLINE_PAY",
                    "merchantTransId": t, "codeType": "BARCODE", "identityCode": code,
                    "order": {"orderTitle": "Coffee", "orderAmount": {"currency": "SGD", "value": "1250"}},
                    "settleContractId": "SGD-1"}
    gw.close()


def test_log_never_holds_the_payment_code(offline_gateway: OfflineGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    codes = [make_code(s) for s in ("00", "01", "11", "16")]
    for code in codes:
        offline_gateway.pay(merchant_trans_id=mtid(), identity_code=code, amount=SGD(100), order_title="x")
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    lines = [r for r in caplog.records if r.name == "pos.gateway"]
    assert len(lines) == 4
    for code in codes:
        assert code not in text and code[:-4] not in text
        assert code[-4:] in text
    assert all("latency_ms=" in r.getMessage() and "reqMsgId=" in r.getMessage() for r in lines)


def test_unreachable_gateway_is_unknown(gateway_settings: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = OfflineGateway(gateway_settings.model_copy(update={"url": f"http://127.0.0.1:{port}"}))
    res = gw.pay(merchant_trans_id=mtid(), identity_code=make_code("00"), amount=SGD(1), order_title="x")
    assert isinstance(res, Unknown) and "connection" in res.reason
    gw.close()


# -- malformed answers from a scripted fake server ------------------------------

Responder = Callable[[dict[str, Any]], tuple[int, bytes]]


class _FakeGateway:
    """A loopback HTTP server whose answer to each request is computed by `responder`."""

    def __init__(self) -> None:
        self.responder: Responder = lambda head: (200, b"")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                head = json.loads(split_signed(raw.decode(), "request")[0])["head"]
                code, body = outer.responder(head)
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def fake(sandbox_keys: SandboxKeys, gateway_settings: Any) -> Iterator[tuple[_FakeGateway, OfflineGateway]]:
    server = _FakeGateway()
    gw = OfflineGateway(gateway_settings.model_copy(update={"url": server.url}))
    try:
        yield server, gw
    finally:
        gw.close()
        server.close()


def answer(keys: SandboxKeys, head: dict[str, Any], status: str = "S", *, key: Any = None,
           **head_changes: Any) -> bytes:
    rhead = {"version": head["version"], "function": head["function"], "clientId": head["clientId"],
             "respTime": datetime.now().astimezone().isoformat(timespec="seconds"),
             "reqMsgId": head["reqMsgId"], "reserve": "{}", **head_changes}
    body = {"resultInfo": {"resultStatus": status, "resultCodeId": "00000000", "resultCode": "SUCCESS",
                           "resultMsg": "ok"}, "acquirementId": "2024"}
    return build_signed("response", rhead, body, key or keys.alipay_private)


def test_well_formed_fake_answer_is_believed(fake: tuple[_FakeGateway, OfflineGateway],
                                             sandbox_keys: SandboxKeys) -> None:
    server, gw = fake
    server.responder = lambda head: (200, answer(sandbox_keys, head))
    assert isinstance(gw.query(merchant_trans_id="T1"), Succeeded)  # the harness itself works


@pytest.mark.parametrize("case", ["http500", "http302", "empty", "not json", "unsigned", "wrong key",
                                  "other reqMsgId", "other function", "status X", "no resultInfo",
                                  "bad utf8", "other merchantTransId", "huge"])
def test_malformed_answers_are_unknown(fake: tuple[_FakeGateway, OfflineGateway], sandbox_keys: SandboxKeys,
                                       case: str) -> None:
    server, gw = fake

    def respond(head: dict[str, Any]) -> tuple[int, bytes]:
        good = answer(sandbox_keys, head)
        if case == "http500":
            return 500, good
        if case == "http302":
            return 302, good
        if case == "empty":
            return 200, b""
        if case == "not json":
            return 200, b"<html>busy</html>"
        if case == "unsigned":
            inner, _ = split_signed(good.decode(), "response")
            return 200, ('{"response":' + inner + "}").encode()
        if case == "wrong key":
            return 200, answer(sandbox_keys, head, key=sandbox_keys.merchant_private)
        if case == "other reqMsgId":
            return 200, answer(sandbox_keys, head, reqMsgId="someone-else")
        if case == "other function":
            return 200, answer(sandbox_keys, head, function="alipay.intl.acquiring.offline.pay")
        if case == "status X":
            return 200, answer(sandbox_keys, head, "X")
        if case == "no resultInfo":
            return 200, build_signed("response", {"reqMsgId": head["reqMsgId"], "function": head["function"]},
                                     {}, sandbox_keys.alipay_private)
        if case == "bad utf8":
            return 200, good.replace(b'"ok"', b'"\xff"')
        if case == "huge":
            return 200, good[:-1] + b" " * (300 * 1024) + b"}"
        rhead = {"reqMsgId": head["reqMsgId"], "function": head["function"]}
        body = {"resultInfo": {"resultStatus": "S", "resultCode": "SUCCESS"}, "merchantTransId": "T-OTHER",
                "acquirementStatus": "SUCCESS"}
        return 200, build_signed("response", rhead, body, sandbox_keys.alipay_private)

    server.responder = respond
    res = gw.query(merchant_trans_id="T1")
    assert isinstance(res, Unknown), res


def test_last_error_names_the_trouble_and_clears_on_a_verified_answer(
        fake: tuple[_FakeGateway, OfflineGateway], sandbox_keys: SandboxKeys) -> None:
    server, gw = fake
    server.responder = lambda head: (503, b"")
    assert isinstance(gw.query(merchant_trans_id="T1"), Unknown)
    assert gw.health().last_error == "HTTP 503" and gw.health().last_latency is not None
    server.responder = lambda head: (200, answer(sandbox_keys, head, "U"))
    assert isinstance(gw.query(merchant_trans_id="T1"), Unknown)
    assert gw.health().last_error is None  # a verified U is the gateway talking: the link is fine


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_changed_byte_anywhere_in_a_signed_answer_is_never_success(
        fake: tuple[_FakeGateway, OfflineGateway], sandbox_keys: SandboxKeys, data: st.DataObject) -> None:
    server, gw = fake
    choice: dict[str, int] = {}

    def respond(head: dict[str, Any]) -> tuple[int, bytes]:
        good = bytearray(answer(sandbox_keys, head))
        pos = choice["pos"] % len(good)
        good[pos] ^= choice["mask"]
        return 200, bytes(good)

    choice["pos"] = data.draw(st.integers(0, 10_000))
    choice["mask"] = data.draw(st.integers(1, 255))
    server.responder = respond
    res = gw.query(merchant_trans_id="T1")
    assert not isinstance(res, Succeeded)


# -- the factory -------------------------------------------------------------------

def test_the_factory_opens_the_client_the_config_names(gateway_settings: Any) -> None:
    from typing import get_args

    from pos.config import Config, GatewaySection
    from pos.gateway.client import GatewayHealth
    from pos.gateway.factory import PROTOCOLS, open_gateway

    gw = open_gateway(Config(gateway=gateway_settings))
    try:
        assert isinstance(gw, OfflineGateway) and gw.health() == GatewayHealth()   # no call made yet
    finally:
        gw.close()
    # every name the config accepts has a client, and no client is unreachable from the config
    assert set(PROTOCOLS) == set(get_args(GatewaySection.model_fields["protocol"].annotation))


def test_no_answer_at_all_marks_the_link_down_and_an_answer_clears_it(
        fake: tuple[_FakeGateway, OfflineGateway], gateway_settings: Any, sandbox_keys: SandboxKeys) -> None:
    """The cashier is told "no network" only when nothing came back over the link."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]   # bound, never listening: connections are refused
        gw = OfflineGateway(gateway_settings.model_copy(update={"url": f"http://127.0.0.1:{port}"}))
        try:
            result = gw.query(merchant_trans_id="T1")
            assert isinstance(result, Unknown) and result.no_answer
            assert gw.health().link_down and (gw.health().last_error or "").startswith("connection error")
        finally:
            gw.close()
    server, answered = fake
    server.responder = lambda head: (503, b"")
    result = answered.query(merchant_trans_id="T1")
    assert isinstance(result, Unknown) and not result.no_answer     # the gateway spoke, badly
    assert not answered.health().link_down


# -- the store's identity (issue 17) ------------------------------------------------

STORE = {"id": "S-0042", "name": "Harbour Cafe", "terminal_id": "POS07", "secondary_merchant_id": "",
         "mcc": "5814", "address": "Pier 3"}


def test_every_pay_carries_the_store_identity_and_the_sandbox_records_it(gateway_settings: Any,
                                                                        sandbox_server: Any) -> None:
    """Before: no pay carried any store or terminal identity."""
    from pos.sandbox.ledger import as_datetime

    session = RecordingTransport(gateway_settings.url)
    gw = OfflineGateway(gateway_settings, transport=session, store=STORE)
    t = mtid()
    assert isinstance(gw.pay(merchant_trans_id=t, identity_code=make_code("00"), amount=SGD(1250),
                             order_title="Coffee"), Succeeded)
    body = json.loads(split_signed(session.sent[0][1].decode(), "request")[0])["body"]
    # Where each value goes is pos/data/store_fields.toml's choice.
    assert body["order"]["seller"] == {"storeId": "S-0042", "storeName": "Harbour Cafe", "sellerMCC": "5814"}
    assert body["envInfo"] == {"merchantTerminalId": "POS07"}
    payment = sandbox_server.ledger.payment(t, as_datetime(datetime.now().astimezone()))
    assert payment.store == {"id": "S-0042", "name": "Harbour Cafe", "terminal_id": "POS07", "mcc": "5814"}
    assert payment.as_json()["store"]["id"] == "S-0042"
    gw.close()


@pytest.mark.parametrize("sandbox_options", [short_options(require_store=True)])
def test_a_sandbox_that_requires_the_store_refuses_a_pay_without_it(gateway_settings: Any,
                                                                    sandbox_options: Any) -> None:
    bare = OfflineGateway(gateway_settings)
    refused = bare.pay(merchant_trans_id=mtid(), identity_code=make_code("00"), amount=SGD(100), order_title="")
    assert isinstance(refused, Failed) and refused.code == "PARAM_MISSING"
    assert "order.seller.storeId" in refused.message and "--require-store" in refused.message
    full = OfflineGateway(gateway_settings, store=STORE)
    assert isinstance(full.pay(merchant_trans_id=mtid(), identity_code=make_code("00"), amount=SGD(100),
                               order_title=""), Succeeded)
    bare.close()
    full.close()


def test_the_config_fills_the_store_identity_from_the_terminal_when_left_empty() -> None:
    from pos.config import Config, StoreSection, TerminalSection, store_identity

    cfg = Config(terminal=TerminalSection(terminal_id="POS02", merchant_name="Acme", store_name=""),
                 store=StoreSection(id="S1"))
    assert store_identity(cfg) == {"id": "S1", "name": "Acme", "terminal_id": "POS02",
                                   "secondary_merchant_id": "", "mcc": "", "address": ""}


def test_a_pay_with_no_answer_is_given_up_within_first_query_after(gateway_settings: Any) -> None:
    """Issue 17: the pay waited for the whole read_timeout (15 s by default) before the first query."""
    from pos.config import Config, PaymentSection

    slow = gateway_settings.model_copy(update={"read_timeout": 15.0})
    gw = OfflineGateway.from_config(Config(gateway=slow, payment=PaymentSection(first_query_after=1.0)))
    started = time.monotonic()
    result = gw.pay(merchant_trans_id=mtid(), identity_code=make_code("11"), amount=SGD(100), order_title="")
    took = time.monotonic() - started
    assert isinstance(result, Unknown) and result.no_answer and took < 1.8   # the sandbox holds it 2 s
    gw.close()


def test_the_manager_sees_every_id_alipays_support_asks_for(offline_gateway: OfflineGateway, tmp_path: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17: a MANUAL_REVIEW sale kept no acquirementId, and no reqMsgId was kept anywhere."""
    from pos.cli.main import main
    from pos.config import PaymentSection
    from pos.journal.journal import Journal
    from pos.payments.runner import PaymentRunner

    journal = Journal.open(tmp_path / "journal.db")
    runner = PaymentRunner(journal, offline_gateway, PaymentSection(
        query_first_delay=0.1, query_interval_min=0.1, query_interval_max=0.1, query_deadline=0.3,
        cancel_interval=0.1, background_interval=600.0))
    runner.recover()
    sale_id = runner.start_sale(SGD(990), make_code("15"), time.time())
    review = runner.wait(sale_id, timeout=20)
    runner.stop()
    journal.close()
    assert review is not None and review.state.value == "MANUAL_REVIEW" and review.acquirement_id
    cfg = tmp_path / "terminal.toml"
    cfg.write_text(f'[terminal]\nstate_dir = "{tmp_path}"\n[manager]\nsupport_contact = "+65 6000 0000"\n')
    assert main(["journal", "show", review.merchant_trans_id, "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"{'acquirementId:':20}{review.acquirement_id}" in out
    assert "+65 6000 0000" in out
    assert len(set(re.findall(r"reqMsgId=([0-9a-f-]{36})", out))) >= 3   # the pay, the queries, the cancel
    assert "F CANCEL_NOT_ALLOWED" in out and "U USER_PAYING" in out


def test_pos_journal_show_names_alipays_refund_id(offline_gateway: OfflineGateway, tmp_path: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17, defect 4: Alipay's refundId appeared in no `pos journal show` (of the refund or of its sale)."""
    from pos.cli.main import main
    from pos.config import PaymentSection
    from pos.journal.journal import Journal
    from pos.payments.runner import PaymentRunner

    journal = Journal.open(tmp_path / "journal.db")
    runner = PaymentRunner(journal, offline_gateway, PaymentSection())
    runner.recover()
    sale_id = runner.start_sale(SGD(990), make_code("00"), time.time())
    assert runner.wait(sale_id, timeout=20).state.value == "PAID"
    refund_id = runner.refund(sale_id, SGD(300), "returned")
    refund = runner.wait_refund(refund_id, timeout=20)
    runner.stop()
    journal.close()
    assert refund is not None and refund.state.value == "REFUNDED" and refund.gateway_refund_id
    cfg = tmp_path / "terminal.toml"
    cfg.write_text(f'[terminal]\nstate_dir = "{tmp_path}"\n')
    assert main(["journal", "show", f"R{refund_id}", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert refund.merchant_refund_id in out and refund.gateway_refund_id in out
    assert main(["journal", "show", str(sale_id), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert refund.merchant_refund_id in out and refund.gateway_refund_id in out
