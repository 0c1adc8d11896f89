"""notify.pay SPI: Alipay's signature is checked on the raw bytes; our reply is signed (§10, §17.5)."""

from __future__ import annotations

import json

from pos.core.money import Money
from pos.core.outcomes import Failed, QueryOutcome, Succeeded
from pos.gateway.notify import NOTIFY_FUNCTION, failed_result, handle_notify, paid_result
from pos.gateway.signing import build_signed, split_signed, verify
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys

HEAD = {"version": "2.0.4", "function": NOTIFY_FUNCTION, "clientId": "C1", "reqTime": "2024-05-01T12:30:40+08:00",
        "reqMsgId": "n-1", "reserve": "{}"}
BODY = {"resultInfo": {"resultStatus": "S", "resultCodeId": "00000000", "resultCode": "SUCCESS", "resultMsg": "ok"},
        "merchantId": "2188", "acquirementId": "2024050111", "merchantTransId": "POS01-1",
        "orderAmount": {"currency": "SGD", "value": "1250"}, "payAmount": {"currency": "CNY", "value": "6712"},
        "paymentTime": "2024-05-01T12:30:06+08:00"}


def _reply(keys: SandboxKeys, raw: bytes) -> dict:
    inner, sig = split_signed(raw.decode(), "response")
    assert verify(inner, sig, keys.merchant_public)  # signed with the merchant key
    return json.loads(inner)


def test_valid_notification_is_parsed_and_answered(sandbox_keys: SandboxKeys) -> None:
    raw = build_signed("request", HEAD, BODY, sandbox_keys.alipay_private)
    out = handle_notify(raw, alipay_public_key=sandbox_keys.alipay_public,
                        merchant_private_key=sandbox_keys.merchant_private)
    assert out.accepted and out.notification is not None
    n = out.notification
    assert (n.merchant_trans_id, n.acquirement_id, n.result_status) == ("POS01-1", "2024050111", "S")
    assert n.order_amount == Money(1250, "SGD") and n.pay_amount == Money(6712, "CNY")
    reply = _reply(sandbox_keys, out.reply)
    assert reply["head"]["reqMsgId"] == "n-1" and reply["head"]["function"] == NOTIFY_FUNCTION
    assert reply["body"]["resultInfo"]["resultStatus"] == "S"


def test_a_paid_notification_is_read_into_the_typed_fields(sandbox_keys: SandboxKeys) -> None:
    body = {**BODY, "conversionRate": {"sourceCurrency": "SGD", "targetCurrency": "CNY", "rate": "5.3696"}}
    out = handle_notify(build_signed("request", HEAD, body, sandbox_keys.alipay_private),
                        alipay_public_key=sandbox_keys.alipay_public,
                        merchant_private_key=sandbox_keys.merchant_private)
    assert out.notification is not None
    result = paid_result(out.notification)
    assert isinstance(result, Succeeded) and result.query is QueryOutcome.PAID and result.code == "SUCCESS"
    assert (result.gateway_id, result.customer_amount, result.conversion_rate) == (
        "2024050111", Money(6712, "CNY"), "5.3696")


def test_a_failure_notification_is_read_as_closed_with_its_code(sandbox_keys: SandboxKeys) -> None:
    # The engine takes it as a hint to query at once (tests/test_notifications.py), never as the decline.
    body = {"resultInfo": {"resultStatus": "F", "resultCodeId": "12005100", "resultCode": "ORDER_IS_CLOSED",
                           "resultMsg": "closed"}, "merchantTransId": "POS01-1"}
    out = handle_notify(build_signed("request", HEAD, body, sandbox_keys.alipay_private),
                        alipay_public_key=sandbox_keys.alipay_public,
                        merchant_private_key=sandbox_keys.merchant_private)
    assert out.notification is not None and out.notification.result_status == "F"
    result = failed_result(out.notification)
    assert isinstance(result, Failed) and result.query is QueryOutcome.CLOSED
    assert (result.code, result.message) == ("ORDER_IS_CLOSED", "closed")


def test_bad_signature_is_rejected(sandbox_keys: SandboxKeys) -> None:
    raw = build_signed("request", HEAD, BODY, sandbox_keys.alipay_private).replace(b"1250", b"9250")
    out = handle_notify(raw, alipay_public_key=sandbox_keys.alipay_public,
                        merchant_private_key=sandbox_keys.merchant_private)
    assert not out.accepted and out.notification is None
    assert _reply(sandbox_keys, out.reply)["body"]["resultInfo"]["resultCode"] == "INVALID_SIGNATURE"
    forged = build_signed("request", HEAD, BODY, sandbox_keys.merchant_private)
    assert not handle_notify(forged, alipay_public_key=sandbox_keys.alipay_public,
                             merchant_private_key=sandbox_keys.merchant_private).accepted
    junk = handle_notify(b"\xff{", alipay_public_key=sandbox_keys.alipay_public,
                         merchant_private_key=sandbox_keys.merchant_private)
    assert not junk.accepted and _reply(sandbox_keys, junk.reply)["body"]["resultInfo"]["resultStatus"] == "F"
