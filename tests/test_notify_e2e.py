"""End to end: sales and refunds settled by Alipay's notifications, not by queries (the daemon as a process).

The daemon runs with [notify] listen and the v1 protocol; its queries are
scheduled far in the future, so only the sandbox's signed notifyPayment can
settle the sale in time, and a refund left pending (scenario 20: the refund
stays in process) is resent only after 300 s, so only the sandbox's signed
notifyRefund can settle it. Replays, forged and unknown notifications change nothing.
"""

import json
import time

import pytest
import requests

from pos.demo.stage import Stage
from pos.gateway.ams.signing import sign, sign_content, signature_header
from pos.gateway.keys import ALIPAY_PRIVATE, MERCHANT_PRIVATE
from pos.gateway.notify import NOTIFY_FUNCTION
from pos.gateway.signing import build_signed, load_private_key
from pos.sandbox.scenarios import SandboxOptions, make_code

pytestmark = pytest.mark.slow
PATH = "/notify/ams/payment"


@pytest.fixture(scope="module")
def stage():
    with Stage(protocol="ams", notify=True,
               payment={"query_first_delay": 40.0, "query_interval_min": 40.0, "query_interval_max": 40.0,
                        "query_deadline": 55.0, "refund_retries": 1, "refund_interval": 0.5,
                        "background_interval": 300.0},
               sandbox_options=SandboxOptions(wallet_confirm_after=1.0, slow_response=5.0,
                                              refund_settles_after=3.0)) as st:
        yield st


def post_notification(stage, body, *, key_file=ALIPAY_PRIVATE, path=PATH):
    raw = json.dumps(body, indent=2).encode()
    moment = "2024-05-01T12:00:00+08:00"
    key = load_private_key(stage.dir / "keys" / key_file)
    b64 = sign(sign_content("POST", path, "SANDBOX_CLIENT", moment, raw), key)
    return requests.post(f"http://127.0.0.1:{stage.notify_port}{path}", data=raw, timeout=10,
                         headers={"client-id": "SANDBOX_CLIENT", "request-time": moment,
                                  "signature": signature_header(b64, 1)})


def test_the_notification_settles_the_sale_long_before_any_query(stage):
    sale = stage.start_sale("9.40")
    stage.wait_display(lambda lines: "Scan" in lines[0])
    started = time.monotonic()
    stage.scan(make_code("10"))                        # the customer confirms in the wallet after 1 s
    done = stage.wait_sale(sale["id"], 20)
    assert done["state"] == "PAID" and time.monotonic() - started < 20   # the first query is 40 s away
    assert done["acquirementId"]
    stage.new_receipts(1)
    notices = stage.notifications("paymentRequestId", done["merchantTransId"])
    assert len(notices) == 1 and notices[0]["acknowledged"] and notices[0]["attempts"] == 1
    assert notices[0]["url"] == f"http://127.0.0.1:{stage.notify_port}{PATH}"
    log = stage.daemon_log()
    assert f"notification protocol=ams merchantTransId={done['merchantTransId']} outcome=applied" in log
    assert "api=inquiryPayment paymentRequestId=" + done["merchantTransId"] not in log

    # A replay is acknowledged and changes nothing.
    body = {"notifyType": "PAYMENT_RESULT", "paymentRequestId": done["merchantTransId"],
            "paymentId": done["acquirementId"],
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}}
    replay = post_notification(stage, body)
    assert replay.status_code == 200 and replay.json()["result"]["resultStatus"] == "S"
    assert replay.headers["signature"].startswith("algorithm=RSA256,keyVersion=1,signature=")
    assert "outcome=unchanged" in stage.daemon_log()
    assert len(stage.printer.texts()) == stage.receipts_seen     # no second receipt

    # Signed with the merchant's key, not Alipay's: refused, logged, nothing changes.
    forged = post_notification(stage, body, key_file=MERCHANT_PRIVATE)
    assert forged.status_code == 401 and forged.json()["result"]["resultStatus"] == "F"
    # A payment we never made: acknowledged (so Alipay stops), logged, nothing changes.
    unknown = post_notification(stage, {**body, "paymentRequestId": "NOT-OURS-1"})
    assert unknown.status_code == 200
    log = stage.daemon_log()
    assert "notification refused protocol=ams" in log and "merchantTransId=NOT-OURS-1 outcome=unknown" in log
    assert stage.till("GET", f"/v1/sales/{sale['id']}").json()["state"] == "PAID"


def test_a_pending_refund_is_settled_by_the_refund_notification(stage):
    sale = stage.start_sale("7.30")
    stage.wait_display(lambda lines: "Scan" in lines[0])
    stage.scan(make_code("20"))                      # paid at once; its refunds stay in process 3 s
    paid = stage.wait_sale(sale["id"], 20)
    assert paid["state"] == "PAID"
    stage.new_receipts(1)
    r = stage.till("POST", "/v1/refunds", {"saleId": sale["id"], "amount": "2.00"}, manager=True)
    assert r.status_code == 201, r.text
    refund = r.json()
    assert refund["state"] == "REFUND_PENDING"       # both sends answered REFUND_IN_PROCESS
    mrid = refund["merchantRefundId"]
    deadline = time.monotonic() + 20                  # the corrector's next send is 300 s away
    while time.monotonic() < deadline:
        view = stage.sale(sale["id"])
        if view["refunds"][0]["state"] != "REFUND_PENDING":
            break
        time.sleep(0.2)
    assert view["refunds"][0]["state"] == "REFUNDED" and view["refunded"]["value"] == 200
    stage.new_receipts(1)                            # the refund receipt, printed once
    notices = stage.notifications("refundRequestId", mrid)
    assert len(notices) == 1 and notices[0]["acknowledged"] and notices[0]["attempts"] == 1
    assert notices[0]["url"] == f"http://127.0.0.1:{stage.notify_port}/notify/ams/refund"
    log = stage.daemon_log()
    assert f"notification protocol=ams refundRequestId={mrid} refundStatus=SUCCESS outcome=applied" in log
    assert log.count(f"api=refund refundRequestId={mrid}") == 2          # no third send
    shown = stage.pos("journal", "show", mrid)
    assert "refund_succeeded" in shown.stdout and "notification: S SUCCESS" in shown.stdout, shown.stdout

    # A replay is acknowledged and changes nothing; a forged one is refused; an unknown one is logged.
    body = {"notifyType": "REFUND_RESULT", "refundStatus": "SUCCESS", "refundRequestId": mrid,
            "refundId": "RF-REPLAY", "refundAmount": {"currency": "SGD", "value": "200"},
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}}
    refund_path = "/notify/ams/refund"
    assert post_notification(stage, body, path=refund_path).status_code == 200
    assert post_notification(stage, body, path=refund_path, key_file=MERCHANT_PRIVATE).status_code == 401
    assert post_notification(stage, {**body, "refundRequestId": "NOT-OURS-R1"}, path=refund_path).status_code == 200
    log = stage.daemon_log()
    assert f"refundRequestId={mrid} refundStatus=SUCCESS outcome=unchanged" in log
    assert "refundRequestId=NOT-OURS-R1 refundStatus=SUCCESS outcome=unknown" in log
    view = stage.sale(sale["id"])
    assert view["refunds"][0]["state"] == "REFUNDED" and view["refunds"][0].get("refundId") != "RF-REPLAY"
    assert len(stage.printer.texts()) == stage.receipts_seen   # no second refund receipt


@pytest.fixture(scope="module")
def offline_stage():
    with Stage(protocol="offline", notify=True,
               payment={"query_first_delay": 40.0, "query_interval_min": 40.0, "query_interval_max": 40.0,
                        "query_deadline": 55.0},
               sandbox_options=SandboxOptions(wallet_confirm_after=1.0, slow_response=5.0)) as st:
        yield st


def post_notify_pay(stage, merchant_trans_id, *, key_file=ALIPAY_PRIVATE):
    head = {"version": "2.0.4", "function": NOTIFY_FUNCTION, "clientId": "SANDBOX_CLIENT",
            "reqTime": "2024-05-01T12:00:00+08:00", "reqMsgId": "notify-1", "reserve": "{}"}
    body = {"merchantTransId": merchant_trans_id, "acquirementId": "20240501111212800100160000000099",
            "orderAmount": {"currency": "SGD", "value": "520"}, "payAmount": {"currency": "SGD", "value": "520"},
            "resultInfo": {"resultStatus": "S", "resultCode": "SUCCESS", "resultCodeId": "00000000"}}
    wire = build_signed("request", head, body, load_private_key(stage.dir / "keys" / key_file))
    return requests.post(f"http://127.0.0.1:{stage.notify_port}/notify/offline", data=wire, timeout=10)


def test_the_offline_notify_pay_settles_the_sale_too(offline_stage):
    stage = offline_stage
    sale = stage.start_sale("5.20")
    stage.wait_display(lambda lines: "Scan" in lines[0])
    stage.scan(make_code("10"))
    stage.wait_display(lambda lines: "Checking" in lines[0], timeout=10)
    time.sleep(1.2)                                        # the customer has confirmed in the wallet
    mtid = stage.till("GET", f"/v1/sales/{sale['id']}").json()["merchantTransId"]
    forged = post_notify_pay(stage, mtid, key_file=MERCHANT_PRIVATE)
    assert forged.status_code == 200 and "INVALID_SIGNATURE" in forged.text
    assert stage.till("GET", f"/v1/sales/{sale['id']}").json()["state"] == "QUERYING"
    answer = post_notify_pay(stage, mtid)
    assert answer.status_code == 200 and '"resultStatus":"S"' in answer.text
    done = stage.wait_sale(sale["id"], 10)
    assert done["state"] == "PAID" and done["acquirementId"] == "20240501111212800100160000000099"
    stage.new_receipts(1)
    log = stage.daemon_log()
    assert f"notification protocol=offline merchantTransId={mtid} outcome=applied" in log
    assert "notification refused protocol=offline" in log
    assert f"function=alipay.intl.acquiring.offline.payQuery merchantTransId={mtid}" not in log
