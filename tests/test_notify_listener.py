"""The notification listener over real HTTP on 127.0.0.1, fed by the v1 sandbox, on a real journal file.

- A refund the sandbox keeps "in process" (scenario 20) waits in REFUND_PENDING;
  the sandbox's signed notifyRefund (to the refundNotifyUrl our client sent)
  settles it, once; a replay, a forgery and an unknown refund change nothing.
- Bad input everywhere, for both protocols' routes (hypothesis): malformed JSON,
  duplicate keys, wrong types, huge bodies, a signature over other bytes, a
  valid signature from the wrong key, unknown ids, replays. Each gets a clear
  error answer (never HTTP 500), the listener keeps serving, and the journal
  is byte for byte what it was.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos.config import Config, PaymentSection, load_config
from pos.core.money import Money
from pos.core.records import RefundState, SaleState
from pos.gateway.ams import AmsGateway
from pos.gateway.ams.signing import sign, sign_content, signature_header
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.gateway.notify import NOTIFY_FUNCTION
from pos.gateway.signing import build_signed
from pos.journal.journal import Journal
from pos.ops.notify_listener import MAX_NOTIFICATION, build_notify_app, notify_server
from pos.payments.runner import PaymentRunner
from pos.sandbox.server import SandboxServer
from pos.wsgiserver import WsgiServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys, make_code, short_options

CLIENT = "SANDBOX_POS0001"
PAYMENT_PATH, REFUND_PATH, OFFLINE_PATH = "/notify/ams/payment", "/notify/ams/refund", "/notify/offline"
REGISTRATION_PATH = "/notify/ams/registration"
MOMENT = "2024-05-01T12:00:00+08:00"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, sandbox: SandboxServer, keys: SandboxKeys, port: int) -> Config:
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    path = tmp / "terminal.toml"
    path.write_text(f"""
[terminal]
terminal_id = "POS01"
state_dir = "{state}"
currency = "SGD"
timezone = "Asia/Singapore"

[gateway]
protocol = "ams"
url = "{sandbox.url}"
client_id = "{CLIENT}"
merchant_id = "2188000000000001"
private_key = "{keys.path(MERCHANT_PRIVATE)}"
merchant_public_key = "{keys.path(MERCHANT_PUBLIC)}"
alipay_public_key = "{keys.path(ALIPAY_PUBLIC)}"
sandbox = true
connect_timeout = 2.0
read_timeout = 2.0

[notify]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
""")
    return load_config(path).config


@dataclass
class Shop:
    sandbox: SandboxServer
    journal: Journal
    journal_path: Path
    runner: PaymentRunner
    listener: WsgiServer
    keys: SandboxKeys

    @property
    def url(self) -> str:
        return self.listener.url

    def paid_sale(self, amount: int = 730) -> int:
        sale_id = self.runner.start_sale(Money(amount, "SGD"), make_code("20"), time.time(), "Coffee")
        sale = self.runner.wait(sale_id, timeout=10)
        assert sale is not None and sale.state is SaleState.PAID, sale
        return sale_id

    def pending_refund(self, sale_id: int, amount: int = 200) -> str:
        refund_id = self.runner.refund(sale_id, Money(amount, "SGD"))
        refund = self.runner.wait_refund(refund_id, timeout=10)
        assert refund is not None and refund.state is RefundState.REFUND_PENDING, refund
        return refund.merchant_refund_id

    def refund_state(self, merchant_refund_id: str) -> RefundState:
        refund = self.journal.get_refund(merchant_refund_id)
        assert refund is not None
        return refund.state

    def ledger(self) -> dict[str, Any]:
        return requests.get(self.sandbox.url + "/sandbox/ledger", timeout=10).json()  # type: ignore[no-any-return]

    def snapshot(self) -> list[str]:
        """Every row of the journal, as SQL text (a second connection sees what is committed)."""
        with sqlite3.connect(self.journal_path) as conn:
            return list(conn.iterdump())


@pytest.fixture(scope="module")
def shop_factory(sandbox_keys: SandboxKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    opened: list[Shop] = []

    def make(refund_settles_after: float, payment: PaymentSection | None = None) -> Shop:
        tmp = tmp_path_factory.mktemp("notify-listener")
        sandbox = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                                alipay_private_key=sandbox_keys.alipay_private,
                                options=short_options(refund_settles_after=refund_settles_after),
                                protocol="ams").start()
        port = _free_port()
        cfg = _config(tmp, sandbox, sandbox_keys, port)
        path = tmp / "state" / "journal.db"
        journal = Journal.open(path, terminal_id="POS01", timezone="Asia/Singapore")
        runner = PaymentRunner(journal, AmsGateway.from_config(cfg),
                               payment or PaymentSection(refund_retries=1, refund_interval=0.2,
                                                         background_interval=300.0))
        runner.recover()
        app = build_notify_app(runner, cfg, alipay_public_key=sandbox_keys.alipay_public,
                               merchant_private_key=sandbox_keys.merchant_private)
        listener = notify_server(app, "127.0.0.1", port).start()
        shop = Shop(sandbox, journal, path, runner, listener, sandbox_keys)
        opened.append(shop)
        return shop

    yield make
    for shop in opened:
        shop.listener.stop()
        shop.runner.stop(timeout=5)
        shop.journal.close()
        shop.sandbox.stop()


def signed_v1(keys: SandboxKeys, raw: bytes, path: str, *, key: Any = None, signed_raw: bytes | None = None,
              client: str = CLIENT) -> dict[str, str]:
    b64 = sign(sign_content("POST", path, client, MOMENT, raw if signed_raw is None else signed_raw),
               key or keys.alipay_private)
    return {"client-id": client, "request-time": MOMENT, "signature": signature_header(b64, 1),
            "Content-Type": "application/json"}


def post(shop: Shop, path: str, raw: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(shop.url + path, data=raw, headers=headers or {}, timeout=10)


def refund_note(merchant_refund_id: str, **extra: Any) -> dict[str, Any]:
    return {"notifyType": "REFUND_RESULT", "refundStatus": "SUCCESS", "refundRequestId": merchant_refund_id,
            "refundId": "RF-TEST", "refundAmount": {"currency": "SGD", "value": "200"},
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."}, **extra}


# ---- the sandbox's failure notifyPayment: a hint that queries at once -----------------------------

def test_the_sandbox_failure_notification_makes_the_terminal_query_at_once(shop_factory: Any) -> None:
    """The customer cancels the order code in the wallet: the sandbox sends a signed F notifyPayment
    (ORDER_IS_CLOSED), acknowledged once; the terminal does not decline on it but queries at once
    (its own next query is 30 s away), and that inquiry's FAIL ends the sale DECLINED with the cause."""
    slow = PaymentSection(query_first_delay=30.0, first_query_after=30.0, query_interval_min=20.0,
                          query_interval_max=25.0, query_deadline=90.0, background_interval=300.0)
    shop: Shop = shop_factory(1.0, slow)
    started = time.monotonic()
    sale_id = shop.runner.start_sale(Money(640, "SGD"), "", time.time(), "Tea", qr=True)
    sale = shop.journal.get_sale(sale_id)
    deadline = time.monotonic() + 10
    while sale is not None and sale.state is not SaleState.QUERYING and time.monotonic() < deadline:
        time.sleep(0.05)
        sale = shop.journal.get_sale(sale_id)
    assert sale is not None and sale.state is SaleState.QUERYING and sale.acquirement_id
    page = requests.post(f"{shop.sandbox.url}/sandbox/cashier/{sale.acquirement_id}/cancel", timeout=5)
    assert page.status_code == 200 and "data-status='CLOSED'" in page.text
    done = shop.runner.wait(sale_id, timeout=15)
    assert done is not None and done.state is SaleState.DECLINED, done
    assert time.monotonic() - started < 20                       # not the 30 s schedule
    assert done.result_code == "ORDER_IS_CLOSED" and done.result_message
    events = shop.journal.events("sale", sale_id)
    triggers = [e.trigger for e in events]
    # The notification was a hint (no state change), the inquiry it triggered decided.
    assert triggers.index("notified") < triggers.index("query_closed") and "cancel_succeeded" not in triggers
    hint = events[triggers.index("notified")]
    assert hint.source == hint.dest == "QUERYING" and "F ORDER_IS_CLOSED" in hint.detail
    notices = [n for n in shop.ledger()["notifications"] if n.get("paymentRequestId") == done.merchant_trans_id]
    assert notices == [{"paymentRequestId": done.merchant_trans_id, "kind": "payment",
                        "url": shop.url + PAYMENT_PATH, "attempts": 1, "acknowledged": True}]

    # A verified F notification replayed for the now final sale changes nothing.
    before = shop.snapshot()
    note = {"notifyType": "PAYMENT_RESULT", "paymentRequestId": done.merchant_trans_id,
            "paymentId": done.acquirement_id,
            "result": {"resultCode": "ORDER_IS_CLOSED", "resultStatus": "F", "resultMessage": "closed"}}
    raw = json.dumps(note).encode()
    replay = post(shop, PAYMENT_PATH, raw, signed_v1(shop.keys, raw, PAYMENT_PATH))
    assert replay.status_code == 200 and replay.json()["result"]["resultStatus"] == "S"
    assert shop.snapshot() == before


def test_a_failure_notification_for_a_paid_sale_changes_nothing(shop_factory: Any) -> None:
    shop: Shop = shop_factory(1.0)
    sale_id = shop.paid_sale()
    sale = shop.journal.get_sale(sale_id)
    assert sale is not None
    before = shop.snapshot()
    note = {"notifyType": "PAYMENT_RESULT", "paymentRequestId": sale.merchant_trans_id,
            "paymentId": sale.acquirement_id,
            "result": {"resultCode": "PROCESS_FAIL", "resultStatus": "F", "resultMessage": "failed"}}
    raw = json.dumps(note).encode()
    answer = post(shop, PAYMENT_PATH, raw, signed_v1(shop.keys, raw, PAYMENT_PATH))
    assert answer.status_code == 200 and answer.json()["result"]["resultStatus"] == "S"
    assert shop.snapshot() == before


# ---- the sandbox's notifyRefund settles a pending refund ------------------------------------------

def test_the_sandbox_refund_notification_settles_a_pending_refund_once(shop_factory: Any) -> None:
    shop: Shop = shop_factory(1.0)
    sale_id = shop.paid_sale()
    mrid = shop.pending_refund(sale_id)
    sent = [r for r in shop.ledger()["refunds"] if r["merchantRefundId"] == mrid]
    assert len(sent) == 1                                        # the ledger holds it once, in process
    deadline = time.monotonic() + 15                             # the corrector's next send is 300 s away
    while shop.refund_state(mrid) is RefundState.REFUND_PENDING and time.monotonic() < deadline:
        time.sleep(0.1)
    refund = shop.journal.get_refund(mrid)
    assert refund is not None and refund.state is RefundState.REFUNDED and refund.gateway_refund_id
    events = shop.journal.events("refund", refund.refund_id)
    assert events[-1].trigger == "refund_succeeded" and events[-1].detail.startswith("notification: S SUCCESS")
    notices = [n for n in shop.ledger()["notifications"] if n.get("refundRequestId") == mrid]
    assert notices == [{"refundRequestId": mrid, "kind": "refund", "url": shop.url + REFUND_PATH,
                        "attempts": 1, "acknowledged": True}]

    # Replayed, forged, for another amount, for a refund we never made: nothing changes.
    before = shop.snapshot()
    raw = json.dumps(refund_note(mrid)).encode()
    replay = post(shop, REFUND_PATH, raw, signed_v1(shop.keys, raw, REFUND_PATH))
    assert replay.status_code == 200 and replay.json()["result"]["resultStatus"] == "S"
    forged = post(shop, REFUND_PATH, raw, signed_v1(shop.keys, raw, REFUND_PATH, key=shop.keys.merchant_private))
    assert forged.status_code == 401 and forged.json()["result"]["resultCode"] == "INVALID_SIGNATURE"
    unknown = json.dumps(refund_note("NOT-OURS-R1")).encode()
    assert post(shop, REFUND_PATH, unknown, signed_v1(shop.keys, unknown, REFUND_PATH)).status_code == 200
    assert shop.snapshot() == before


def test_a_failed_refund_notification_declines_a_pending_refund(shop_factory: Any) -> None:
    shop: Shop = shop_factory(3600.0)                            # the sandbox never settles it
    mrid = shop.pending_refund(shop.paid_sale())
    other = json.dumps(refund_note(mrid, refundAmount={"currency": "SGD", "value": "199"})).encode()
    assert post(shop, REFUND_PATH, other, signed_v1(shop.keys, other, REFUND_PATH)).status_code == 200
    assert shop.refund_state(mrid) is RefundState.REFUND_PENDING   # another amount: not ours to settle
    body = refund_note(mrid, refundStatus="FAIL",
                       result={"resultCode": "REFUND_WINDOW_EXCEED", "resultStatus": "F", "resultMessage": "late"})
    raw = json.dumps(body).encode()
    answer = post(shop, REFUND_PATH, raw, signed_v1(shop.keys, raw, REFUND_PATH))
    assert answer.status_code == 200 and answer.json()["result"]["resultStatus"] == "S"
    refund = shop.journal.get_refund(mrid)
    assert refund is not None and refund.state is RefundState.REFUND_DECLINED
    assert refund.result_code == "REFUND_WINDOW_EXCEED"


# ---- bad input everywhere (issue 16): hypothesis over both protocols' routes ----------------------

@pytest.fixture(scope="module")
def target(shop_factory: Any) -> tuple[Shop, str, str]:
    """A PAID sale and a refund pending for good: what a forged notification would like to settle."""
    shop: Shop = shop_factory(3600.0)
    sale_id = shop.paid_sale()
    mrid = shop.pending_refund(sale_id)
    sale = shop.journal.get_sale(sale_id)
    assert sale is not None
    return shop, sale.merchant_trans_id, mrid


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
not_text = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)


def refused_cleanly(answer: requests.Response, *, status: set[int]) -> dict[str, Any]:
    assert answer.status_code in status, (answer.status_code, answer.text)
    body = answer.json()
    assert isinstance(body, dict) and isinstance(body.get("result"), dict)
    if answer.status_code != 200:
        assert body["result"]["resultStatus"] == "F" and body["result"]["resultMessage"]
    return body  # type: ignore[no-any-return]


def still_serving(shop: Shop, mrid: str) -> None:
    raw = json.dumps(refund_note(mrid, refundStatus="PROCESSING")).encode()   # settles nothing
    assert post(shop, REFUND_PATH, raw, signed_v1(shop.keys, raw, REFUND_PATH)).status_code == 200


@FUZZ
@given(raw=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()),
       path=st.sampled_from([PAYMENT_PATH, REFUND_PATH, REGISTRATION_PATH]))
def test_v1_any_signed_bytes(target: tuple[Shop, str, str], raw: bytes, path: str) -> None:
    shop, _, mrid = target
    before = shop.snapshot()
    refused_cleanly(post(shop, path, raw, signed_v1(shop.keys, raw, path)), status={200, 400})
    assert shop.snapshot() == before


@FUZZ
@given(fields=st.fixed_dictionaries({}, optional={
    "notifyType": json_values, "paymentRequestId": not_text, "refundRequestId": not_text,
    "refundStatus": not_text, "result": not_text, "refundAmount": json_values, "paymentId": json_values}),
    path=st.sampled_from([PAYMENT_PATH, REFUND_PATH]), ours=st.booleans())
def test_v1_wrong_types_for_our_own_ids(target: tuple[Shop, str, str], fields: dict[str, Any], path: str,
                                        ours: bool) -> None:
    shop, mtid, mrid = target
    body = {"paymentRequestId": mtid, "refundRequestId": mrid, **fields} if ours else fields
    raw = json.dumps(body).encode()
    before = shop.snapshot()
    refused_cleanly(post(shop, path, raw, signed_v1(shop.keys, raw, path)), status={200, 400})
    assert shop.snapshot() == before


@FUZZ
@given(key=st.sampled_from(["refundRequestId", "refundStatus", "result", "notifyType"]), value=st.text(max_size=8))
def test_v1_duplicate_keys_are_refused(target: tuple[Shop, str, str], key: str, value: str) -> None:
    shop, _, mrid = target
    text = json.dumps(refund_note(mrid))
    raw = (text[:-1] + f", {json.dumps(key)}: {json.dumps(value)}}}").encode()   # the key again, last
    before = shop.snapshot()
    body = refused_cleanly(post(shop, REFUND_PATH, raw, signed_v1(shop.keys, raw, REFUND_PATH)), status={400})
    assert "twice" in body["result"]["resultMessage"]
    assert shop.snapshot() == before


@FUZZ
@given(other=st.binary(min_size=1, max_size=64), path=st.sampled_from([PAYMENT_PATH, REFUND_PATH]),
       how=st.sampled_from(["other bytes", "merchant key", "other client", "garbage header", "no header"]))
def test_v1_signatures_that_do_not_vouch_for_these_bytes(target: tuple[Shop, str, str], other: bytes, path: str,
                                                         how: str) -> None:
    shop, mtid, mrid = target
    raw = json.dumps(refund_note(mrid, paymentRequestId=mtid)).encode()
    if how == "other bytes":
        headers = signed_v1(shop.keys, raw, path, signed_raw=raw + other)
    elif how == "merchant key":
        headers = signed_v1(shop.keys, raw, path, key=shop.keys.merchant_private)
    elif how == "other client":
        headers = signed_v1(shop.keys, raw, path, client=CLIENT + other.hex()[:8])
        assert headers["client-id"] != CLIENT
    elif how == "garbage header":
        printable = "x" + "".join(chr(33 + b % 94) for b in other)    # any text a header value can carry
        headers = {**signed_v1(shop.keys, raw, path), "signature": printable}
    else:
        headers = {"client-id": CLIENT, "request-time": MOMENT}
    before = shop.snapshot()
    refused_cleanly(post(shop, path, raw, headers), status={401})
    assert shop.snapshot() == before


@FUZZ
@given(request_id=st.text(min_size=1, max_size=80), paid=st.booleans())
def test_v1_unknown_ids_are_acknowledged_and_change_nothing(target: tuple[Shop, str, str], request_id: str,
                                                             paid: bool) -> None:
    shop, mtid, mrid = target
    if paid:
        path, body = PAYMENT_PATH, {"notifyType": "PAYMENT_RESULT", "paymentRequestId": request_id,
                                    "paymentId": "2024050111121280010016000000009999",
                                    "result": {"resultCode": "SUCCESS", "resultStatus": "S"}}
    else:
        path, body = REFUND_PATH, refund_note(request_id)
    raw = json.dumps(body).encode()
    before = shop.snapshot()
    refused_cleanly(post(shop, path, raw, signed_v1(shop.keys, raw, path)), status={200})
    assert shop.snapshot() == before
    if request_id not in (mtid, mrid):
        assert shop.refund_state(mrid) is RefundState.REFUND_PENDING


def test_v1_replays_huge_bodies_deep_nesting_and_lone_surrogates(target: tuple[Shop, str, str]) -> None:
    shop, mtid, mrid = target
    before = shop.snapshot()
    paid = json.dumps({"notifyType": "PAYMENT_RESULT", "paymentRequestId": mtid,
                       "result": {"resultCode": "SUCCESS", "resultStatus": "S"}}).encode()
    for _ in range(3):                                           # the sale is PAID already: a replay
        refused_cleanly(post(shop, PAYMENT_PATH, paid, signed_v1(shop.keys, paid, PAYMENT_PATH)), status={200})
    huge = b'{"refundRequestId":"' + b"9" * (MAX_NOTIFICATION + 10) + b'"}'
    refused_cleanly(post(shop, REFUND_PATH, huge, signed_v1(shop.keys, huge, REFUND_PATH)), status={413})
    deep = b"[" * 100_000 + b"]" * 100_000
    refused_cleanly(post(shop, REFUND_PATH, deep[:MAX_NOTIFICATION - 2] + b"]]",
                         signed_v1(shop.keys, deep[:MAX_NOTIFICATION - 2] + b"]]", REFUND_PATH)), status={400})
    nested = b"[" * 30_000 + b"]" * 30_000
    refused_cleanly(post(shop, REFUND_PATH, nested, signed_v1(shop.keys, nested, REFUND_PATH)), status={400})
    surrogate = b'{"notifyType":"REFUND_RESULT","refundRequestId":"\\ud800","refundStatus":"SUCCESS"}'
    body = refused_cleanly(post(shop, REFUND_PATH, surrogate, signed_v1(shop.keys, surrogate, REFUND_PATH)),
                           status={400})
    assert "UTF-8" in body["result"]["resultMessage"]
    assert shop.snapshot() == before
    still_serving(shop, mrid)


# -- the offline protocol's notify.pay

def offline_envelope(shop: Shop, body: Any, *, key: Any = None, head: dict[str, Any] | None = None) -> bytes:
    head = head or {"version": "2.0.4", "function": NOTIFY_FUNCTION, "clientId": CLIENT, "reqTime": MOMENT,
                    "reqMsgId": "notify-1", "reserve": "{}"}
    return build_signed("request", head, body, key or shop.keys.alipay_private)


def offline_refused(answer: requests.Response) -> str:
    """The signed reply envelope's resultCode (the offline protocol answers HTTP 200 either way)."""
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.text)["response"]["body"]["resultInfo"]
    assert info["resultStatus"] in ("S", "F") and info["resultCode"]
    return str(info["resultCode"])


@FUZZ
@given(raw=st.binary(max_size=512))
def test_offline_any_bytes(target: tuple[Shop, str, str], raw: bytes) -> None:
    shop = target[0]
    before = shop.snapshot()
    assert offline_refused(post(shop, OFFLINE_PATH, raw)) != "SUCCESS"
    assert shop.snapshot() == before


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["merchantTransId", "acquirementId", "resultInfo", "orderAmount",
                                             "payAmount", "paymentTime"]), json_values, max_size=6),
       ours=st.booleans(), wrong_key=st.booleans())
def test_offline_signed_bodies_of_any_shape(target: tuple[Shop, str, str], body: dict[str, Any], ours: bool,
                                            wrong_key: bool) -> None:
    shop, mtid, _ = target
    if ours:
        body = {**body, "merchantTransId": mtid}   # PAID already: nothing to settle
    raw = offline_envelope(shop, body, key=shop.keys.merchant_private if wrong_key else None)
    before = shop.snapshot()
    code = offline_refused(post(shop, OFFLINE_PATH, raw))
    if wrong_key:
        assert code == "INVALID_SIGNATURE"
    assert shop.snapshot() == before


def test_offline_duplicate_keys_and_other_bytes_are_refused(target: tuple[Shop, str, str]) -> None:
    shop, mtid, mrid = target
    body = {"merchantTransId": mtid, "resultInfo": {"resultStatus": "S", "resultCode": "SUCCESS"}}
    raw = offline_envelope(shop, body).decode()
    twice = raw.replace('"merchantTransId":', '"merchantTransId":"X","merchantTransId":', 1).encode()
    before = shop.snapshot()
    assert offline_refused(post(shop, OFFLINE_PATH, twice)) in ("MSG_PARSE_ERROR", "INVALID_SIGNATURE")
    changed = raw.replace('"S"', '"F"', 1).encode()               # signed over other bytes
    assert offline_refused(post(shop, OFFLINE_PATH, changed)) == "INVALID_SIGNATURE"
    assert offline_refused(post(shop, OFFLINE_PATH, b"{" * (MAX_NOTIFICATION - 1))) == "MSG_PARSE_ERROR"
    # Unsigned, with a lone surrogate in the head our reply echoes: it used to end in HTTP 500.
    surrogate = b'{"request":{"head":{"reqMsgId":"\\ud800","function":"x"},"body":{}},"signature":"x"}'
    assert offline_refused(post(shop, OFFLINE_PATH, surrogate)) == "MSG_PARSE_ERROR"
    assert post(shop, OFFLINE_PATH, b"x" * (MAX_NOTIFICATION + 1)).status_code == 413
    assert shop.snapshot() == before
    still_serving(shop, mrid)


@pytest.mark.parametrize(("method", "path", "status", "says"), [
    ("POST", "/notify/nothing", 404, "No such endpoint: POST /notify/nothing"),
    ("GET", "/", 404, "No such endpoint: GET /"),
    ("GET", "/notify/offline", 405, "/notify/offline does not take GET: use POST"),
    ("PUT", PAYMENT_PATH, 405, f"{PAYMENT_PATH} does not take PUT: use POST"),
])
def test_unknown_paths_and_wrong_methods_get_a_problem_and_change_nothing(
        target: tuple[Shop, str, str], method: str, path: str, status: int, says: str) -> None:
    shop, _, mrid = target
    before = shop.snapshot()
    answer = requests.request(method, shop.url + path, data=b"{}", timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if status == 405:
        assert answer.headers["allow"] == "POST"
    problem = answer.json()
    assert problem["status"] == status and problem["title"] in ("No such endpoint", "Method not allowed")
    assert problem["detail"].startswith(says) and "/notify/offline" in problem["detail"], problem
    assert shop.snapshot() == before
    still_serving(shop, mrid)
