"""The v1 API's signature scheme, answer reading and sandbox rules, in-process (no sockets).

The HTTP round trips are in test_ams_client.py; here each rule is checked on
exact bytes: what is signed, how the header is written and read, that a
changed byte anywhere (body, path, client id, time) is never believed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pos.config import GatewaySection
from pos.core.money import Money
from pos.core.outcomes import Failed, QueryOutcome, Succeeded, Unknown
from pos.gateway.ams import AmsGateway, path_prefix
from pos.gateway.ams.codes import result_codes
from pos.gateway.ams.signing import (
    parse_signature_header,
    sign,
    sign_content,
    signature_header,
    verify,
)
from pos.gateway.ams.status import read_inquiry
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.signing import compact_json
from pos.sandbox.ams import AmsSandbox, route_endpoint
from pos.sandbox.ledger import Ledger
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys, make_code

BEIJING = timezone(timedelta(hours=8))
CLIENT = "SANDBOX_POS0001"
PAY = "/ams/sandbox/api/v1/payments/pay"


def test_sign_content_is_method_path_client_time_body() -> None:
    assert sign_content("POST", PAY, CLIENT, "2020-05-18T12:08:56+05:30", b'{"a":1}') == \
        b'POST /ams/sandbox/api/v1/payments/pay\nSANDBOX_POS0001.2020-05-18T12:08:56+05:30.{"a":1}'


def test_signature_header_round_trip_and_the_seed_spelling(sandbox_keys: SandboxKeys) -> None:
    content = sign_content("POST", PAY, CLIENT, "1", b"{}")
    b64 = sign(content, sandbox_keys.merchant_private)
    value = signature_header(b64, 2)
    assert value.startswith("algorithm=RSA256,keyVersion=2,signature=") and "+" not in value and "/" not in value
    parsed = parse_signature_header(value)
    assert parsed is not None and parsed.signature == b64 and parsed.key_version == "2"
    assert verify(content, parsed.signature, sandbox_keys.merchant_public)
    # Seed 002 writes the escapes in lower case (%2f, %3d): read the same.
    lower = parse_signature_header(value.replace("%2F", "%2f").replace("%3D", "%3d").replace("%2B", "%2b"))
    assert lower is not None and lower.signature == b64
    assert parse_signature_header("") is None and parse_signature_header("algorithm=RSA256") is None
    assert parse_signature_header("garbage") is None


@pytest.mark.parametrize("change", ["body", "path", "client", "time"])
def test_any_changed_part_fails_verification(sandbox_keys: SandboxKeys, change: str) -> None:
    parts = {"path": PAY, "client": CLIENT, "time": "2024-05-01T12:00:00+08:00", "body": b'{"x":"1"}'}
    b64 = sign(sign_content("POST", parts["path"], parts["client"], parts["time"], parts["body"]),  # type: ignore[arg-type]
               sandbox_keys.merchant_private)
    changed = dict(parts)
    changed[change] = b'{"x":"2"}' if change == "body" else str(parts[change]) + "x"
    content = sign_content("POST", changed["path"], changed["client"], changed["time"], changed["body"])  # type: ignore[arg-type]
    assert not verify(content, b64, sandbox_keys.merchant_public)
    assert not verify(content, "not base64!", sandbox_keys.merchant_public)


def test_path_prefix_follows_the_client_id() -> None:
    assert path_prefix("SANDBOX_5Y055A2Y2F6K05235") == "/ams/sandbox/api"
    assert path_prefix("5Y055A2Y2F6K05235") == "/ams/api"
    assert route_endpoint("/ams/api/v1/payments/inquiryPayment") == "inquiryPayment"
    assert route_endpoint("/ams/sandbox/api/v1/payments/refund") == "refund"
    assert route_endpoint("/api/alipay/intl/acquiring/offline/pay.htm") is None


def test_inquiry_status_words() -> None:
    for word, outcome in [("SUCCESS", QueryOutcome.PAID), ("PROCESSING", QueryOutcome.PENDING),
                          ("PENDING", QueryOutcome.PENDING), ("FAIL", QueryOutcome.CLOSED),
                          ("CANCELLED", QueryOutcome.CLOSED), ("WHATEVER", QueryOutcome.UNKNOWN)]:
        assert read_inquiry(Succeeded({"paymentStatus": word}), ["ORDER_NOT_EXIST"]).query is outcome  # type: ignore[union-attr]
    assert read_inquiry(Failed("ORDER_NOT_EXIST"), ["ORDER_NOT_EXIST"]).query is QueryOutcome.NOT_FOUND  # type: ignore[union-attr]
    assert read_inquiry(Failed("PROCESS_FAIL"), ["ORDER_NOT_EXIST"]).query is QueryOutcome.UNKNOWN  # type: ignore[union-attr]


def test_a_closed_payment_s_failure_code_is_read_into_the_typed_fields() -> None:
    body = {"paymentStatus": "FAIL", "paymentResultCode": "ORDER_IS_CLOSED",
            "paymentResultMessage": "the order code expired at 2027-01-15T10:05:00+08:00 unpaid"}
    read = read_inquiry(Succeeded(body, code="SUCCESS"), ["ORDER_NOT_EXIST"])   # the answer's own code, as read
    assert isinstance(read, Succeeded) and read.query is QueryOutcome.CLOSED and read.code == "SUCCESS"
    assert read.result_code == "ORDER_IS_CLOSED" and read.result_message.startswith("the order code expired")
    # Only a closed payment names a failure; an unreadable code is left out.
    for other in ({**body, "paymentStatus": "PROCESSING"}, {**body, "paymentResultCode": 7},
                  {**body, "paymentResultCode": " "}, {"paymentStatus": "FAIL"}):
        read = read_inquiry(Succeeded(other), ["ORDER_NOT_EXIST"])
        assert isinstance(read, Succeeded) and read.result_code == "" and read.result_message == ""


def test_offline_payquery_names_why_a_closed_payment_failed_when_it_says() -> None:
    from pos.gateway.offline.status import read_query
    closed = read_query(Succeeded({"acquirementStatus": "CLOSED", "paymentResultCode": "RISK_REJECT",
                                   "paymentResultMessage": "risk"}))
    assert isinstance(closed, Succeeded) and closed.query is QueryOutcome.CLOSED
    assert (closed.result_code, closed.result_message) == ("RISK_REJECT", "risk")
    silent = read_query(Succeeded({"acquirementStatus": "CLOSED"}))
    assert isinstance(silent, Succeeded) and silent.query is QueryOutcome.CLOSED and silent.result_code == ""
    paid = read_query(Succeeded({"acquirementStatus": "SUCCESS", "paymentResultCode": "X"}, gateway_id="A1"))
    assert isinstance(paid, Succeeded) and paid.query is QueryOutcome.PAID and paid.result_code == ""


def test_result_code_table() -> None:
    codes = result_codes()
    for code, status in [("SUCCESS", "S"), ("PAYMENT_IN_PROCESS", "U"), ("UNKNOWN_EXCEPTION", "U"),
                         ("ORDER_NOT_EXIST", "F"), ("REPEAT_REQ_INCONSISTENT", "F")]:
        assert codes[code].status == status
    assert {row.source for row in codes.values()} <= {"D", "I"}


# -- the client reading answers --------------------------------------------------------

@pytest.fixture
def client(sandbox_keys: SandboxKeys) -> AmsGateway:
    settings = GatewaySection(protocol="ams", url="http://127.0.0.1:1", client_id=CLIENT,
                              private_key=str(sandbox_keys.path(MERCHANT_PRIVATE)),
                              merchant_public_key=str(sandbox_keys.path(MERCHANT_PUBLIC)),
                              alipay_public_key=str(sandbox_keys.path(ALIPAY_PUBLIC)), sandbox=True)
    return AmsGateway(settings)


def answer(keys: SandboxKeys, body: Any, *, path: str = PAY, client: str = CLIENT,
           moment: str = "2024-05-01T12:00:01+08:00") -> tuple[bytes, dict[str, str]]:
    raw = (json.dumps(body, indent=2) if not isinstance(body, bytes) else body)
    raw_bytes = raw if isinstance(raw, bytes) else raw.encode()
    b64 = sign(sign_content("POST", path, client, moment, raw_bytes), keys.alipay_private)
    return raw_bytes, {"client-id": client, "response-time": moment, "signature": signature_header(b64, 1)}


def test_a_verified_answer_is_read_over_its_exact_bytes(client: AmsGateway, sandbox_keys: SandboxKeys) -> None:
    ok = {"result": {"resultStatus": "S", "resultCode": "SUCCESS", "resultMessage": "success"},
          "paymentRequestId": "T1", "paymentId": "P1"}
    raw, headers = answer(sandbox_keys, ok)    # indented JSON: verified as sent, never re-serialised
    res = client.read_answer(PAY, raw, headers, "pay", "T1")
    assert isinstance(res, Succeeded) and res.gateway_id == "P1"
    failed = client.read_answer(PAY, *answer(sandbox_keys, {**ok, "result": {
        "resultStatus": "F", "resultCode": "RISK_REJECT", "resultMessage": "no"}}), "pay", "T1")
    assert isinstance(failed, Failed) and failed.code == "RISK_REJECT"
    unknown = client.read_answer(PAY, *answer(sandbox_keys, {**ok, "result": {
        "resultStatus": "U", "resultCode": "PAYMENT_IN_PROCESS"}}), "pay", "T1")
    assert isinstance(unknown, Unknown) and unknown.code == "PAYMENT_IN_PROCESS"


def test_answers_that_are_not_ours_or_not_signed_are_unknown(client: AmsGateway, sandbox_keys: SandboxKeys) -> None:
    ok = {"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "paymentRequestId": "T1"}
    raw, headers = answer(sandbox_keys, ok)
    cases = [
        (raw.replace(b"T1", b"T2"), headers),                                   # a changed byte
        (raw, {**headers, "response-time": "2024-05-01T12:00:02+08:00"}),        # another time
        (raw, {k: v for k, v in headers.items() if k != "signature"}),          # unsigned
        answer(sandbox_keys, ok, client="SANDBOX_OTHER"),                        # another client id
        answer(sandbox_keys, ok, path="/ams/sandbox/api/v1/payments/cancel"),    # signed for another path
        answer(sandbox_keys, {**ok, "paymentRequestId": "T9"}),                  # another request's answer
        answer(sandbox_keys, b"not json"),
        answer(sandbox_keys, {"paymentRequestId": "T1"}),                        # no result
    ]
    for raw_bytes, hdrs in cases:
        assert isinstance(client.read_answer(PAY, raw_bytes, hdrs, "pay", "T1"), Unknown)


# -- the sandbox's rules, in-process ---------------------------------------------------

def signed_request(keys: SandboxKeys, path: str, body: dict[str, Any], *, client: str = CLIENT,
                   key: Any = None) -> tuple[bytes, dict[str, str]]:
    raw = compact_json(body).encode()
    moment = "2024-05-01T12:00:00+08:00"
    b64 = sign(sign_content("POST", path, client, moment, raw), key or keys.merchant_private)
    return raw, {"client-id": client, "request-time": moment, "Signature": signature_header(b64, 1)}


def pay_body(request_id: str, code: str, value: str = "100") -> dict[str, Any]:
    amount = {"currency": "SGD", "value": value}
    return {"productCode": "IN_STORE_PAYMENT", "paymentRequestId": request_id, "paymentAmount": amount,
            "order": {"orderAmount": amount, "orderDescription": "x", "referenceOrderId": request_id},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "paymentFactor": {"inStorePaymentScenario": "PaymentCode"}}


@pytest.fixture
def sandbox(sandbox_keys: SandboxKeys) -> AmsSandbox:
    return AmsSandbox(Ledger(), merchant_public_key=sandbox_keys.merchant_public,
                      alipay_private_key=sandbox_keys.alipay_private,
                      clock=lambda: datetime(2024, 5, 1, 12, 0, tzinfo=BEIJING))


def result_of(sandbox: AmsSandbox, keys: SandboxKeys, path: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    ans = sandbox.handle(path, raw, headers)
    assert ans.http_status == 200
    # Every answer, refusals included, is signed by the gateway's key over its exact bytes.
    sig = parse_signature_header(ans.headers["signature"])
    assert sig is not None
    assert verify(sign_content("POST", path, headers.get("client-id", ""), ans.headers["response-time"], ans.body),
                  sig.signature, keys.alipay_public)
    body: dict[str, Any] = json.loads(ans.body)
    return body


def test_sandbox_refuses_bad_signatures_and_changes_nothing(sandbox: AmsSandbox, sandbox_keys: SandboxKeys) -> None:
    code = make_code("00")
    raw, headers = signed_request(sandbox_keys, PAY, pay_body("T1", code), key=sandbox_keys.alipay_private)
    assert result_of(sandbox, sandbox_keys, PAY, raw, headers)["result"]["resultCode"] == "INVALID_SIGNATURE"
    raw, headers = signed_request(sandbox_keys, PAY, pay_body("T1", code))
    tampered = raw.replace(b'"value":"100"', b'"value":"900"')
    assert result_of(sandbox, sandbox_keys, PAY, tampered, headers)["result"]["resultCode"] == "INVALID_SIGNATURE"
    no_sig = {k: v for k, v in headers.items() if k != "Signature"}
    assert result_of(sandbox, sandbox_keys, PAY, raw, no_sig)["result"]["resultCode"] == "INVALID_SIGNATURE"
    assert sandbox.ledger.to_json(sandbox.now())["payments"] == []
    # The code was never used: the properly signed pay goes through.
    assert result_of(sandbox, sandbox_keys, PAY, raw, headers)["result"]["resultStatus"] == "S"


def test_sandbox_checks_the_product_fields(sandbox: AmsSandbox, sandbox_keys: SandboxKeys) -> None:
    for name, value in [("productCode", "CASHIER_PAYMENT"),
                        ("paymentFactor", {"inStorePaymentScenario": "EntryCode"}),
                        ("paymentMethod", {"paymentMethodType": "ALIPAY_CN", "paymentMethodId": "1"}),
                        ("paymentAmount", {"currency": "SGD", "value": "-1"})]:
        body = {**pay_body("T1", make_code("00")), name: value}
        res = result_of(sandbox, sandbox_keys, PAY, *signed_request(sandbox_keys, PAY, body))
        assert res["result"] ["resultStatus"] == "F" and res["result"]["resultCode"] == "PARAM_ILLEGAL"
    cny_to_cny = {**pay_body("T2", make_code("00")), "paymentAmount": {"currency": "CNY", "value": "700"},
                  "order": {"orderAmount": {"currency": "CNY", "value": "700"}},
                  "settlementStrategy": {"settlementCurrency": "CNY"}}
    res = result_of(sandbox, sandbox_keys, PAY, *signed_request(sandbox_keys, PAY, cny_to_cny))
    assert res["result"]["resultCode"] == "CURRENCY_NOT_SUPPORT"
    unknown = "/ams/sandbox/api/v1/payments/nothing"
    res = result_of(sandbox, sandbox_keys, unknown, *signed_request(sandbox_keys, unknown, {}))
    assert res["result"]["resultCode"] == "NO_INTERFACE_DEF"


def test_sandbox_idempotency_by_payment_request_id(sandbox: AmsSandbox, sandbox_keys: SandboxKeys) -> None:
    code = make_code("00")
    first = result_of(sandbox, sandbox_keys, PAY, *signed_request(sandbox_keys, PAY, pay_body("T1", code)))
    again = result_of(sandbox, sandbox_keys, PAY, *signed_request(sandbox_keys, PAY, pay_body("T1", code)))
    assert first["paymentId"] == again["paymentId"] and again["result"]["resultStatus"] == "S"
    other = result_of(sandbox, sandbox_keys, PAY, *signed_request(sandbox_keys, PAY, pay_body("T1", code, "200")))
    assert other["result"]["resultCode"] == "REPEAT_REQ_INCONSISTENT"
    assert sandbox.ledger.total_charged("SGD", sandbox.now()) == 100


def test_what_the_customer_paid_is_read_from_actual_payment_amount_and_payment_quote() -> None:
    from pos.gateway.ams.status import customer_amount

    answer = Succeeded({"paymentStatus": "SUCCESS", "paymentAmount": {"currency": "SGD", "value": "1250"},
                        "actualPaymentAmount": {"currency": "CNY", "value": "6712"},
                        "paymentQuote": {"quoteCurrencyPair": "SGD/CNY", "quotePrice": "5.3696"}})
    read = read_inquiry(answer, ["ORDER_NOT_EXIST"])
    assert isinstance(read, Succeeded) and read.query is QueryOutcome.PAID
    assert read.customer_amount == Money(6712, "CNY")
    assert read.conversion_rate == "5.3696"
    same = {"paymentAmount": {"currency": "SGD", "value": "1250"}}
    assert customer_amount(Succeeded(same), same) == Succeeded(same)           # no conversion: nothing to print
    for bad in ("6712", None, ["x"], {}, {"currency": "CNY", "value": "6.7"}):  # wrong types are ignored
        body = {"actualPaymentAmount": bad}
        read = customer_amount(Succeeded(body), body)
        assert isinstance(read, Succeeded) and read.customer_amount is None
    assert customer_amount(Failed("X"), {"actualPaymentAmount": {"currency": "CNY", "value": "1"}}) == Failed("X")


def test_goods_rules_and_the_china_extra_trans_info_text() -> None:
    from pos.core.goods import MAX_LINES, GoodsLine, check_goods, goods_info, parse_goods_info, total_quantity
    from pos.gateway.ams.client import china_extend_info

    lines = [GoodsLine("pencil", 2), GoodsLine(" eraser ", 5), GoodsLine("iPhone XS 256G", 1)]
    assert check_goods(lines) is None
    text = goods_info(lines)
    assert text == "pencil^2|eraser^5|iPhone XS 256G^1"          # seed 002's own example
    assert parse_goods_info(text) == [GoodsLine("pencil", 2), GoodsLine("eraser", 5), GoodsLine("iPhone XS 256G", 1)]
    assert total_quantity(lines) == 8 and parse_goods_info("") == []
    extend = china_extend_info(text)
    assert extend is not None and json.loads(extend) == {"chinaExtraTransInfo": {
        "businessType": "4", "goodsInfo": text, "totalQuantity": "8"}}
    for bad, why in [([GoodsLine("a^b", 1)], "'^'"), ([GoodsLine("a|b", 1)], "'|'"),
                     ([GoodsLine("a\x1bp", 1)], "\\x1b"), ([GoodsLine(" ", 1)], "no name"),
                     ([GoodsLine("a", 0)], "1 to 9999"),
                     ([GoodsLine("a", 10000)], "1 to 9999"), ([GoodsLine("a" * 65, 1)], "64"),
                     ([GoodsLine("a", 1)] * (MAX_LINES + 1), "at most 50"),
                     ([GoodsLine("n" * 60 + str(i), 1) for i in range(40)], "longer than")]:
        refusal = check_goods(bad)
        assert refusal is not None and refusal.reason == "goods" and why in refusal.message, (bad[:1], refusal)
    assert china_extend_info("a^b^1") is None and china_extend_info("pen^two") is None and china_extend_info("") is None
