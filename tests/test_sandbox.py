"""The sandbox gateway: wire protocol checks over HTTP, and the pure ledger's rules with a fake clock."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos.cli.main import main as pos_main
from pos.config import load_config
from pos.core.money import Money
from pos.core.outcomes import Succeeded
from pos.gateway.keys import ensure_sandbox_keys, generate_key_folder
from pos.gateway.offline import FUNCTIONS
from pos.gateway.signing import build_signed, sign_text, split_signed, verify
from pos.sandbox.ledger import BEIJING, Ledger, valid_code_format
from pos.sandbox.scenarios import SandboxOptions
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import FakeClock, SandboxKeys, make_code

SGD = lambda minor: Money(minor, "SGD")  # noqa: E731
M = "2188000000000001"


def head(function: str, **changes: Any) -> dict[str, Any]:
    h = {"version": "2.0.4", "function": function, "clientId": "C1", "reqTime": "2024-05-01T12:00:00+08:00",
         "reqMsgId": str(uuid.uuid4()), "reserve": "{}", "signType": "RSA2"}
    h.update(changes)
    return {k: v for k, v in h.items() if v is not None}


def pay_body(code: str | None = None, **changes: Any) -> dict[str, Any]:
    b = {"merchantId": M, "productCode": "OFFLINE_PAY", "merchantTransId": f"T-{uuid.uuid4().hex[:10]}",
         "codeType": "BARCODE", "identityCode": code or make_code("00"),
         "order": {"orderTitle": "x", "orderAmount": {"currency": "SGD", "value": "100"}}}
    b.update(changes)
    return {k: v for k, v in b.items() if v is not None}


def post(server: Any, keys: SandboxKeys, path: str, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = requests.post(server.url + path, data=data, timeout=5)
    text = resp.content.decode("utf-8")
    inner, sig = split_signed(text, "response")
    assert verify(inner, sig, keys.alipay_public), "every sandbox answer is signed"
    return resp.status_code, json.loads(inner)


def signed(keys: SandboxKeys, function: str, body: dict[str, Any], **head_changes: Any) -> bytes:
    return build_signed("request", head(function, **head_changes), body, keys.merchant_private)


PAY = FUNCTIONS["pay"]


def _sign_inner(keys: SandboxKeys, inner: str) -> bytes:
    return ('{"request":' + inner + ',"signature":"' + sign_text(inner, keys.merchant_private) + '"}').encode()


def result(env: dict[str, Any]) -> str:
    return env["body"]["resultInfo"]["resultCode"]


# -- wire protocol ----------------------------------------------------------------

def test_routes_case_insensitively_and_with_isupergw_prefix(sandbox_server: Any, sandbox_keys: SandboxKeys) -> None:
    t = "T-route-1"
    _, env = post(sandbox_server, sandbox_keys, PAY.path,
                  signed(sandbox_keys, PAY.name, pay_body(merchantTransId=t)))
    assert result(env) == "SUCCESS"
    q = FUNCTIONS["query"]
    for path in ("/api/alipay/intl/acquiring/offline/payquery.htm", q.path,
                 "/isupergw/alipay/intl/acquiring/offline/payQuery.htm"):
        _, env = post(sandbox_server, sandbox_keys, path, signed(sandbox_keys, q.name,
                                                                  {"merchantId": M, "merchantTransId": t}))
        assert env["body"]["acquirementStatus"] == "SUCCESS"
        assert env["head"]["function"] == q.name


def test_tampered_request_is_refused_and_changes_nothing(sandbox_server: Any, sandbox_keys: SandboxKeys) -> None:
    data = signed(sandbox_keys, PAY.name, pay_body()).replace(b'"value":"100"', b'"value":"900"')
    _, env = post(sandbox_server, sandbox_keys, PAY.path, data)
    assert result(env) == "INVALID_SIGNATURE" and env["body"]["resultInfo"]["resultStatus"] == "F"
    other_key = build_signed("request", head(PAY.name), pay_body(), sandbox_keys.alipay_private)
    assert result(post(sandbox_server, sandbox_keys, PAY.path, other_key)[1]) == "INVALID_SIGNATURE"
    assert sandbox_server.ledger.payments(datetime.now(BEIJING)) == []


def test_double_base64_signature_is_tolerated(sandbox_server: Any, sandbox_keys: SandboxKeys) -> None:
    import base64
    text = signed(sandbox_keys, PAY.name, pay_body()).decode()
    inner, sig = split_signed(text, "request")
    double = base64.b64encode(sig.encode()).decode()
    _, env = post(sandbox_server, sandbox_keys, PAY.path, text.replace(sig, double).encode())
    assert result(env) == "SUCCESS"


@pytest.mark.parametrize("case, code", [
    ("not json", "MSG_PARSE_ERROR"), ("empty", "MSG_PARSE_ERROR"), ("bad utf8", "MSG_PARSE_ERROR"),
    ("no signature", "INVALID_SIGNATURE"), ("unknown path", "NO_INTERFACE_DEF"),
    ("unknown function", "NO_INTERFACE_DEF"), ("function mismatch", "FUNCTION_NOT_MATCH"),
    ("no reqMsgId", "PARAM_MISSING"), ("no body", "PARAM_MISSING"), ("no merchantTransId", "PARAM_MISSING"),
    ("no amount", "PARAM_MISSING"), ("bad amount", "PARAM_ILLEGAL"), ("zero amount", "PARAM_ILLEGAL"),
    ("bad product", "PARAM_ILLEGAL"), ("bad reqTime", "PARAM_ILLEGAL"), ("bad signType", "PARAM_ILLEGAL"),
    ("bad code", "AUTH_CODE_ILLEGAL"), ("query without ids", "PARAM_MISSING"),
])
def test_malformed_requests_get_the_documented_code(sandbox_server: Any, sandbox_keys: SandboxKeys,
                                                    case: str, code: str) -> None:
    k = sandbox_keys
    path = PAY.path
    data = {
        "not json": b"{not json", "empty": b"", "bad utf8": b'{"request":{"\xff":1},"signature":"x"}',
        "no signature": json.dumps({"request": {"head": head(PAY.name), "body": pay_body()}}).encode(),
        "unknown path": signed(k, PAY.name, pay_body()),
        "unknown function": signed(k, "alipay.intl.acquiring.offline.nothing", pay_body()),
        "function mismatch": signed(k, FUNCTIONS["query"].name, {"merchantId": M, "merchantTransId": "T"}),
        "no reqMsgId": signed(k, PAY.name, pay_body(), reqMsgId=None),
        "no body": _sign_inner(k, '{"head":' + json.dumps(head(PAY.name)) + ',"body":7}'),
        "no merchantTransId": signed(k, PAY.name, pay_body(merchantTransId=None)),
        "no amount": signed(k, PAY.name, pay_body(order={"orderTitle": "x"})),
        "bad amount": signed(k, PAY.name, pay_body(order={"orderAmount": {"currency": "SGD", "value": "1.5"}})),
        "zero amount": signed(k, PAY.name, pay_body(order={"orderAmount": {"currency": "SGD", "value": "0"}})),
        "bad product": signed(k, PAY.name, pay_body(productCode="AUTO_DEBIT")),
        "bad reqTime": signed(k, PAY.name, pay_body(), reqTime="yesterday"),
        "bad signType": signed(k, PAY.name, pay_body(), signType="MD5"),
        "bad code": signed(k, PAY.name, pay_body(code="1234567890123456")),
        "query without ids": signed(k, FUNCTIONS["query"].name, {"merchantId": M}),
    }[case]
    if case == "unknown path":
        path = "/api/alipay/intl/acquiring/offline/nothing.htm"
    if case == "query without ids":
        path = FUNCTIONS["query"].path
    _, env = post(sandbox_server, k, path, data)
    assert result(env) == code
    assert requests.get(sandbox_server.url + "/sandbox/health", timeout=5).json() == {"ok": True}


def test_oversized_body_is_refused_and_server_stays_up(sandbox_server: Any, sandbox_keys: SandboxKeys) -> None:
    big = signed(sandbox_keys, PAY.name, pay_body(order={"orderTitle": "x" * 70_000,
                                                         "orderAmount": {"currency": "SGD", "value": "1"}}))
    status, env = post(sandbox_server, sandbox_keys, PAY.path, big)
    assert status == 413 and result(env) == "PARAM_ILLEGAL"
    status, env = post(sandbox_server, sandbox_keys, PAY.path, signed(sandbox_keys, PAY.name, pay_body()))
    assert status == 200 and result(env) == "SUCCESS"


def test_stats_count_each_gateway_call_and_its_time_and_nothing_else(sandbox_server: Any,
                                                                     offline_gateway: Any) -> None:
    url = sandbox_server.url

    def stats() -> dict[str, Any]:
        answer = requests.get(url + "/sandbox/stats", timeout=5)
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]

    start = stats()
    assert start == {"gateway_calls": 0, "gateway_seconds": 0.0}
    # Paths that are not gateway calls move nothing: the ledger, health, the stats themselves,
    # a reconciliation day and a cashier page's button (both POSTs, answered 404 here).
    requests.get(url + "/sandbox/ledger", timeout=5).raise_for_status()
    requests.get(url + "/sandbox/health", timeout=5).raise_for_status()
    assert requests.post(url + "/sandbox/reconciliation/2024-05-01", timeout=5).status_code == 404
    assert requests.post(url + "/sandbox/cashier/P1/pay", timeout=5).status_code == 404
    assert stats() == start
    outcome = offline_gateway.pay(merchant_trans_id="T-STATS-1", identity_code=make_code("00"),
                                  amount=SGD(250), order_title="x")
    assert isinstance(outcome, Succeeded)
    after = stats()
    assert after["gateway_calls"] == 1 and after["gateway_seconds"] > 0
    assert after == sandbox_server.stats.as_json()   # the same counters in process
    requests.get(url + "/sandbox/ledger", timeout=5).raise_for_status()
    requests.get(url + "/sandbox/health", timeout=5).raise_for_status()
    assert stats() == after


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_random_bytes_never_crash_the_sandbox(sandbox_server: Any, sandbox_keys: SandboxKeys, junk: bytes) -> None:
    status, env = post(sandbox_server, sandbox_keys, PAY.path, junk)
    assert status == 200 and env["body"]["resultInfo"]["resultStatus"] == "F"


def test_ledger_endpoint_returns_json(sandbox_server: Any, sandbox_keys: SandboxKeys) -> None:
    code = make_code("00")
    post(sandbox_server, sandbox_keys, PAY.path, signed(sandbox_keys, PAY.name, pay_body(code, merchantTransId="T-L")))
    data = requests.get(sandbox_server.url + "/sandbox/ledger", timeout=5).json()
    (p,) = data["payments"]
    assert p["merchantTransId"] == "T-L" and p["status"] == "SUCCESS" and p["identityCodeTail"] == code[-4:]
    assert code not in json.dumps(data)


# -- the ledger, pure, with a fake clock -------------------------------------------

@pytest.fixture
def ledger() -> Ledger:
    return Ledger(SandboxOptions())


def test_pay_is_idempotent_and_inconsistent_repeats_are_refused(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    now = sandbox_clock()
    code = make_code("00")
    first = ledger.pay(M, "T1", code, SGD(100), "x", now)
    again = ledger.pay(M, "T1", code, SGD(100), "x", now)
    assert first.status == again.status == "S" and first.body["acquirementId"] == again.body["acquirementId"]
    assert ledger.pay(M, "T1", code, SGD(101), "x", now).code == "REPEAT_REQ_INCONSISTENT"
    assert ledger.pay(M, "T1", code, Money(100, "USD"), "x", now).code == "REPEAT_REQ_INCONSISTENT"
    assert ledger.total_charged("SGD", now) == 100 and len(ledger.payments(now)) == 1
    # another merchant may use the same merchantTransId (key is merchantId + merchantTransId)
    assert ledger.pay("OTHER", "T1", make_code("00"), SGD(5), "x", now).status == "S"


def test_a_code_is_single_use(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    now = sandbox_clock()
    code = make_code("00")
    assert ledger.pay(M, "T1", code, SGD(100), "x", now).status == "S"
    assert ledger.pay(M, "T2", code, SGD(100), "x", now).code == "AUTH_CODE_ALREADY_USED"
    assert ledger.pay(M, "T1", code, SGD(100), "x", now).status == "S"  # repeat, not a second use
    assert ledger.total_charged("SGD", now) == 100


@given(code=st.builds(lambda p, t: p + t, st.sampled_from(["25", "26", "27", "28", "29", "30"]),
                      st.text(alphabet="0123456789", min_size=14, max_size=30)))
def test_valid_code_formats(code: str) -> None:
    assert valid_code_format(code)


@pytest.mark.parametrize("code", ["2" * 15, "28" + "1" * 31, "24" + "1" * 16, "31" + "1" * 16,
                                  "28a" + "1" * 15, "２８" + "1" * 16, "", "28 1234567890123456"])
def test_invalid_code_formats_are_refused(ledger: Ledger, sandbox_clock: FakeClock, code: str) -> None:
    assert ledger.pay(M, "T1", code, SGD(100), "x", sandbox_clock()).code == "AUTH_CODE_ILLEGAL"
    assert ledger.payments(sandbox_clock()) == []


def test_query_before_pay_is_not_found(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    assert ledger.query(M, sandbox_clock(), merchant_trans_id="T1").code == "ORDER_NOT_EXIST"


def test_cancel_before_pay_blocks_the_pay(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    now = sandbox_clock()
    assert ledger.cancel(M, now, merchant_trans_id="T1").status == "S"
    code = make_code("00")
    assert ledger.pay(M, "T1", code, SGD(100), "x", now).code == "ORDER_IS_CLOSED"
    assert ledger.total_charged("SGD", now) == 0
    assert ledger.pay(M, "T2", code, SGD(100), "x", now).status == "S"  # the code was not used up


@pytest.mark.parametrize("window, paid_at, ok_at, late_at", [
    # same Beijing day + 15 min buffer
    ("beijing_day", datetime(2024, 5, 1, 23, 50, tzinfo=BEIJING), datetime(2024, 5, 2, 0, 14, tzinfo=BEIJING),
     datetime(2024, 5, 2, 0, 16, tzinfo=BEIJING)),
    ("beijing_day", datetime(2024, 5, 1, 0, 1, tzinfo=BEIJING), datetime(2024, 5, 1, 23, 59, tzinfo=BEIJING),
     datetime(2024, 5, 2, 0, 15, 1, tzinfo=BEIJING)),
    ("24h", datetime(2024, 5, 1, 12, 0, tzinfo=BEIJING), datetime(2024, 5, 2, 11, 59, tzinfo=BEIJING),
     datetime(2024, 5, 2, 12, 1, tzinfo=BEIJING)),
])
def test_cancel_window(window: str, paid_at: datetime, ok_at: datetime, late_at: datetime) -> None:
    for when, expected in ((ok_at, "SUCCESS"), (late_at, "CANCEL_EXPIRED")):
        ledger = Ledger(SandboxOptions(cancel_window=window))  # type: ignore[arg-type]
        assert ledger.pay(M, "T1", make_code("00"), SGD(100), "x", paid_at).status == "S"
        assert ledger.cancel(M, when, merchant_trans_id="T1").code == expected
        assert ledger.total_charged("SGD", when) == (0 if expected == "SUCCESS" else 100)


def test_refunds_never_exceed_the_payment(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    now = sandbox_clock()
    acq = ledger.pay(M, "T1", make_code("00"), SGD(1000), "x", now).body["acquirementId"]
    assert ledger.refund(M, acq, "R1", SGD(600), "", now).status == "S"
    assert ledger.refund(M, acq, "R1", SGD(600), "", now).status == "S"       # idempotent
    assert ledger.refund(M, acq, "R1", SGD(300), "", now).code == "REPEAT_REQ_INCONSISTENT"
    assert ledger.refund(M, acq, "R2", SGD(401), "", now).code == "REFUND_AMOUNT_EXCEED"
    assert ledger.refund(M, acq, "R2", SGD(400), "", now).status == "S"
    assert ledger.refund(M, acq, "R3", SGD(1), "", now).code == "REFUND_AMOUNT_EXCEED"
    assert ledger.refund(M, acq, "R4", Money(1, "USD"), "", now).code == "CURRENCY_NOT_SUPPORT"
    assert ledger.refund(M, "nope", "R5", SGD(1), "", now).code == "ORDER_NOT_EXIST"
    assert ledger.cancel(M, now, merchant_trans_id="T1").code == "ORDER_STATUS_INVALID"
    late = now + timedelta(days=366)
    acq2 = ledger.pay(M, "T2", make_code("00"), SGD(10), "x", now).body["acquirementId"]
    assert ledger.refund(M, acq2, "R6", SGD(1), "", late).code == "REFUND_WINDOW_EXCEED"


@given(amounts=st.lists(st.integers(1, 600), max_size=12))
def test_refund_sum_property(amounts: list[int]) -> None:
    ledger = Ledger()
    now = datetime(2024, 5, 1, 12, tzinfo=BEIJING)
    acq = ledger.pay(M, "T1", make_code("00"), SGD(1000), "x", now).body["acquirementId"]
    accepted = 0
    for i, a in enumerate(amounts):
        reply = ledger.refund(M, acq, f"R{i}", SGD(a), "", now)
        if reply.status == "S":
            accepted += a
        else:
            assert reply.code == "REFUND_AMOUNT_EXCEED" and accepted + a > 1000
    assert accepted <= 1000 and ledger.total_charged("SGD", now) == 1000 - accepted


def test_unpaid_payment_cannot_be_refunded(ledger: Ledger, sandbox_clock: FakeClock) -> None:
    reply = ledger.pay(M, "T1", make_code("18"), SGD(100), "x", sandbox_clock())
    assert reply.code == "USER_PAYING"
    assert ledger.refund(M, reply.body["acquirementId"], "R1", SGD(1), "", sandbox_clock()).code == \
        "ORDER_STATUS_INVALID"


def test_export_transaction_detail_csv(ledger: Ledger, tmp_path: Path) -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=BEIJING)
    acq = ledger.pay(M, "T1", make_code("00"), SGD(7300), "Pencil", now).body["acquirementId"]
    ledger.pay(M, "T2", make_code("00"), Money(1250, "JPY"), "Tea", now)
    ledger.refund(M, acq, "R1", SGD(50), "dent", now)
    ledger.pay(M, "T3", make_code("01"), SGD(99), "declined", now)
    paths = ledger.export_csv(tmp_path, "20240501")
    assert sorted(p.name for p in paths) == ["ALIPAY_TRANSACTION_DETAIL_JPY_20240501.csv",
                                             "ALIPAY_TRANSACTION_DETAIL_SGD_20240501.csv"]
    rows = list(csv.DictReader((tmp_path / "ALIPAY_TRANSACTION_DETAIL_SGD_20240501.csv").open()))
    assert [(r["transType"], r["orderAmount"], r["merchantTransId"]) for r in rows] == [
        ("PAYMENT", "73.00", "T1"), ("REFUND", "0.50", "R1")]
    assert rows[1]["originalAcquirementId"] == acq and rows[0]["paymentTime"] == "2024-05-01T12:00:00+08:00"
    jpy = list(csv.DictReader((tmp_path / "ALIPAY_TRANSACTION_DETAIL_JPY_20240501.csv").open()))
    assert jpy[0]["orderAmount"] == "1250"
    assert ledger.export_csv(tmp_path, "20240502") == []


# -- keys and the commands -----------------------------------------------------------

def test_keys_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "keys"
    assert pos_main(["keys", "generate", str(folder)]) == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {"merchant_private.pem": 0o600, "merchant_public.pem": 0o644,
                     "alipay_private.pem": 0o600, "alipay_public.pem": 0o644}
    before = (folder / "merchant_private.pem").read_bytes()
    assert pos_main(["keys", "generate", str(folder)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (folder / "merchant_private.pem").read_bytes() == before
    assert pos_main(["keys", "generate", str(folder), "--force"]) == 0
    assert (folder / "merchant_private.pem").read_bytes() != before
    assert (folder / "merchant_private.pem").stat().st_mode & 0o777 == 0o600


def test_ensure_sandbox_keys_only_for_sandbox_configs(tmp_path: Path) -> None:
    cfg_path = tmp_path / "t.toml"
    cfg_path.write_text('[gateway]\nurl = "http://127.0.0.1:18080"\nsandbox = true\n'
                        'private_key = "k/merchant_private.pem"\nmerchant_public_key = "k/merchant_public.pem"\n'
                        'alipay_public_key = "k/alipay_public.pem"\n[ecr]\nenabled = false\n')
    cfg = load_config(cfg_path).config
    created = ensure_sandbox_keys(cfg)
    assert sorted(p.name for p in created) == sorted(["merchant_private.pem", "merchant_public.pem",
                                                      "alipay_private.pem", "alipay_public.pem"])
    assert ensure_sandbox_keys(cfg) == []
    (tmp_path / "k" / "merchant_public.pem").unlink()
    assert [p.name for p in ensure_sandbox_keys(cfg)] == ["merchant_public.pem"]
    prod = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"sandbox": False,
                                                                              "private_key": str(tmp_path / "x")})})
    assert ensure_sandbox_keys(prod) == [] and not (tmp_path / "x").exists()
    assert load_config(cfg_path, require_keys=True)


def test_pos_sandbox_process_listens_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    generate_key_folder(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pos", "sandbox", "--port", "0", "--keys", str(tmp_path),
                             "--slow-response", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("pos sandbox: listening on http://127.0.0.1:")
        url = line.split()[4]
        assert requests.get(url + "/sandbox/health", timeout=5).json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pos_sandbox_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pos_main(["sandbox"]) == 2
    assert pos_main(["sandbox", "--port", "0", "--keys", str(tmp_path)]) == 1
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize(("method", "path", "allow", "says"), [
    ("GET", "/nothing-here", {"POST"}, "/nothing-here does not take GET: use POST"),
    ("PUT", "/alipay/intl/acquiring/offline/pay.htm", {"POST"},
     "/alipay/intl/acquiring/offline/pay.htm does not take PUT: use POST"),
    # a POST there would be a gateway call: the sandbox takes it too
    ("DELETE", "/sandbox/ledger", {"GET", "HEAD", "POST"},
     "/sandbox/ledger does not take DELETE: use GET, HEAD or POST"),
    ("PATCH", "/sandbox/health", {"GET", "HEAD", "POST"},
     "/sandbox/health does not take PATCH: use GET, HEAD or POST"),
    ("PUT", "/sandbox/stats", {"GET", "HEAD", "POST"},
     "/sandbox/stats does not take PUT: use GET, HEAD or POST"),
])
def test_wrong_methods_get_a_problem_naming_the_routes(sandbox_server: Any, method: str, path: str,
                                                        allow: set[str], says: str) -> None:
    # Every path takes POST (a gateway call; an unknown one gets the protocol's own answer): no 404 here.
    answer = requests.request(method, sandbox_server.url + path, timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allow
    problem = answer.json()
    assert problem["status"] == 405 and problem["title"] == "Method not allowed"
    assert problem["detail"].startswith(says) and "GET /sandbox/ledger" in problem["detail"], problem
