"""Short versions of the fault campaigns (the full soak: `make soak`, tests/soak.py).

Each runs real sales and refunds through the payment runner, the offline client, the
fault proxy (tests/fault_proxy.py) and the sandbox over HTTP on 127.0.0.1, then compares
the journal with the sandbox's ledger and the printer: 0 lost money, 0 lost receipts,
0 doubled, `PRAGMA integrity_check` ok.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos.core.errors import UserError
from pos.core.records import SaleState
from tests.fault_proxy import FAULTS
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import SandboxKeys
from tests.soak import FaultRig, run


def _clean(figures: Any) -> None:
    assert figures.discrepancies == [] and figures.receipts_missing == []
    assert (figures.double_charges, figures.lost_sales, figures.lost_receipts) == (0, 0, 0)
    assert figures.integrity == "ok"
    assert figures.secrets_found == []


@pytest.fixture
def rig(tmp_path: Path, sandbox_keys: SandboxKeys) -> Any:
    r = FaultRig(tmp_path / "rig", keys=sandbox_keys.folder)
    yield r
    r.close()


# -- network: every fault at each of the first exchanges of a sale (pay, query, cancel) and a refund --

@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "pass"])
def test_each_network_fault_at_each_step(rig: FaultRig, fault: str) -> None:
    for scenario in ("00", "18"):          # paid at once; U, queries, cancel
        for at in range(3):
            rig.network_fault(fault, at)
            state = rig.sale(scenario)
            assert state in (SaleState.PAID, SaleState.CANCELLED, SaleState.MANUAL_REVIEW)
            rig.proxy.script([])
    rig.network_fault(fault, 0)
    rig.refund()
    _clean(rig.settle_and_compare())
    # The client keeps its connection alive: the fault hit requests on a reused connection too.
    assert rig.proxy.reused[fault] >= 1, (rig.proxy.counts, rig.proxy.reused)


@pytest.mark.parametrize("fault", ["drop_before", "drop_after", "reset", "stale"])
def test_fault_on_a_reused_connection_at_each_step(rig: FaultRig, fault: str) -> None:
    """The pay, a query and the cancel each fail on a connection the client had used before."""
    assert rig.sale() is SaleState.PAID        # the client now holds a kept-alive connection
    for at in range(3):
        before = rig.proxy.reused[fault]
        rig.proxy.script(["pass"] * at + [fault])
        rig.figures.faults[f"network: {fault} (reused connection)"] += 1
        assert rig.sale("18") in (SaleState.CANCELLED, SaleState.MANUAL_REVIEW)
        assert rig.sale() is SaleState.PAID
        assert rig.proxy.reused[fault] == before + 1, (at, rig.proxy.counts, rig.proxy.reused)
    _clean(rig.settle_and_compare())


def test_the_secret_grep_finds_a_full_code(rig: FaultRig) -> None:
    rig.sale()
    assert rig.secrets_left() == []
    logging.getLogger("pos.test").warning("oops %s", rig.codes[0])
    assert rig.secrets_left() == [f"payment code {rig.codes[0][-4:]} in log"]


# -- storage: the journal full when a sale starts -------------------------------------------------

def test_journal_full_refuses_new_sales_then_sales_go_on(rig: FaultRig) -> None:
    assert rig.sale() is SaleState.PAID
    db = rig.journal.db
    db.write(f"PRAGMA max_page_count = {int(db.value('PRAGMA page_count'))}")
    refused = 0
    try:
        for _ in range(30):
            try:
                rig.runner.start_sale(rig_money(), rig_code(), rig.runner.clock.now(), "full")
            except UserError as exc:
                assert "could not record" in str(exc) or "full" in str(exc)   # the cashier is told why
                refused += 1
                break
            rig.figures.sales += 1   # started here, not through rig.sale(): counted as the soak counts its own
            rig.runner.wait_idle(timeout=10)
    finally:
        db.write("PRAGMA max_page_count = 1073741823")
    assert refused == 1
    # Open work is intact and the next sale is taken (not refused as "busy" by a half-started sale).
    deadline = time.monotonic() + 10
    # Ready again once the runner has rebuilt itself from the journal and settled what was open.
    while (not rig.runner.journal_ok or rig.runner.recovering
           or rig.runner.engine.active_sale() is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rig.sale() is SaleState.PAID
    _clean(rig.settle_and_compare())


def rig_money() -> Any:
    from pos.core.money import Money
    return Money(1000, "SGD")


def rig_code() -> str:
    from pos.sandbox.scenarios import make_code
    return make_code("00")


# -- a short soak: every kind of fault mixed ---------------------------------------------------------

def test_short_soak_with_every_kind_of_fault(tmp_path: Path) -> None:
    figures = run(tmp_path, sales=120, refunds=12, fault_rate=0.25, seed=5)
    assert figures.sales >= 100 and figures.refunds >= 10
    assert sum(figures.faults.values()) >= 15
    _clean(figures)


def test_soak_figures_count_a_sale_the_journal_took_before_a_later_commit_failed(rig: Any) -> None:
    """The table's "by state" (read from the journal) adds up to its "sales": a sale committed and then
    refused by a failing commit is a sale (recovery settles it), not a refusal."""
    from pos.core.records import SaleState
    from pos.journal.db import JournalError

    runner = rig.runner
    carry_out = runner._carry_out

    def commit_fails_after_the_sale(commands: Any, committed: Any = None) -> None:
        runner._carry_out = carry_out
        runner._broken = True   # what the runner does when a commit fails: nothing more is sent
        raise JournalError("the journal could not record this: database or disk is full")

    runner._carry_out = commit_fails_after_the_sale
    assert rig.sale() is None
    rig.restart()                 # as the soak does once the runner stopped itself
    assert rig.sale() is SaleState.PAID
    figures = rig.settle_and_compare()
    assert figures.sales == sum(figures.states.values()) == 2
    assert (figures.created_then_failed, figures.refused_sales) == (1, 0)
    _clean(figures)


def test_short_daemon_soak_with_kills() -> None:
    """`pos run` as a process, SIGKILLed at random moments during sales, refunds, prints and its own
    recovery, restarted each time (tests/daemon_soak.py; `make soak` runs the long one)."""
    from tests.daemon_soak import run_daemon

    figures = run_daemon(sales=16, refunds=3, fault_rate=0.2, kill_rate=0.4, seed=3)
    assert figures.kills >= 2 and figures.restarts >= figures.kills   # about 6 (the moments are timing's)
    assert figures.sales == 16 and figures.refunds >= 2
    assert figures.states.get("PAID", 0) >= 10
    _clean(figures)


# -- gateway answers: whatever comes back, the client returns a result and never raises -------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                      max_size=4),
                         max_leaves=20),
       status=st.sampled_from(["S", "F", "U", "X", "", None, 1]))
def test_any_signed_answer_is_a_result_and_never_keeps_the_code(fake_gateway: Any, sandbox_keys: SandboxKeys,
                                                                 body: Any, status: Any) -> None:
    from pos.core.money import Money
    from pos.core.outcomes import Failed, Succeeded, Unknown
    from pos.gateway.signing import build_signed
    from pos.sandbox.scenarios import make_code

    server, gw = fake_gateway
    code = make_code("00")

    def respond(head: dict[str, Any]) -> tuple[int, bytes]:
        rhead = {"function": head["function"], "reqMsgId": head["reqMsgId"]}
        info = {"resultStatus": status, "resultCode": code, "resultMsg": code}
        full = {"resultInfo": info, "extra": body, "acquirementId": code}
        return 200, build_signed("response", rhead, full, sandbox_keys.alipay_private)

    server.responder = respond
    res = gw.pay(merchant_trans_id="POS01-FZ-000001", identity_code=code, amount=Money(100, "SGD"), order_title="t")
    assert isinstance(res, (Succeeded, Failed, Unknown))
    assert not isinstance(res, Succeeded)      # no usable acquirementId: never paid
    assert code not in repr(res)


@pytest.fixture
def fake_gateway(sandbox_keys: SandboxKeys, gateway_settings: Any) -> Any:
    from pos.gateway.offline import OfflineGateway
    from tests.test_offline_client import _FakeGateway

    server = _FakeGateway()
    gw = OfflineGateway(gateway_settings.model_copy(update={"url": server.url}))
    yield server, gw
    gw.close()
    server.close()


# -- config files: every key with non-finite, negative, huge and wrongly typed values ---------------

def _every_key() -> list[tuple[str, str]]:
    from pos.config import Config
    return [(section, key) for section, model in Config.model_fields.items()
            for key in model.annotation.model_fields]  # type: ignore[union-attr]


BAD_VALUES = ["inf", "-inf", "nan", "-1", "0", "1e308", "-1e308", "99999999999999999999", '"x"', "true",
              "[1, 2]", "{a = 1}", '"\\u001b[2J"', '"' + "9" * 5000 + '"', "1979-05-27T07:32:00Z"]


@pytest.mark.parametrize("section,key", _every_key())
def test_every_config_key_with_bad_values_is_a_clear_error_or_accepted(tmp_path: Path, section: str,
                                                                       key: str) -> None:
    from pos.config import load_config
    from pos.core.errors import ConfigError

    path = tmp_path / "t.toml"
    for value in BAD_VALUES:
        path.write_text(f"[{section}]\n{key} = {value}\n")
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message.strip() and "Traceback" not in message
            assert message.startswith(f"{path}:"), message
            continue
        # Accepted: then it is a value the terminal can live with (finite numbers, bounded texts).
        got = getattr(getattr(cfg.config, section), key)
        if isinstance(got, float):
            assert got == got and abs(got) < 1e9, (section, key, value)


# -- the till interface: headers, ids and bodies beyond the schema never give a 500 ------------------

@pytest.fixture(scope="module")
def till_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pos.till.api import Tokens
    from pos.till.api import till_server as serve
    from tests.test_terminal import Rig

    rig = Rig(tmp_path_factory.mktemp("till"))
    server = serve(rig.terminal, Tokens("t" * 32, "m" * 32), max_wait=1.0).start()
    yield server
    server.stop()
    rig.close()


_TEXT = st.text(st.characters(codec="latin-1"), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.sampled_from(["/v1/sales", "/v1/sales/{id}", "/v1/sales/{id}/cancel", "/v1/refunds",
                             "/v1/reports/x", "/v1/reports/z", "/v1/health"]),
       sale_id=st.one_of(st.integers(min_value=-2**70, max_value=2**70).map(str), _TEXT),
       token=st.sampled_from(["t" * 32, "m" * 32, "", "t" * 31, "Bearer", "\xe9" * 32]),
       scheme=st.sampled_from(["Bearer", "bearer", "Basic", "", "Bearer  "]),
       body=st.one_of(st.none(), st.binary(max_size=200),
                      st.dictionaries(st.sampled_from(["amount", "currency", "saleId", "reason", "orderTitle",
                                                       "reference", "x"]),
                                      st.one_of(_TEXT, st.integers(), st.floats(), st.none(), st.booleans()),
                                      max_size=5)),
       wait=st.one_of(st.none(), st.sampled_from(["0", "0.1", "-1", "nan", "inf", "1e308", "x"])))
def test_till_requests_beyond_the_schema_never_give_a_500(till_server: Any, method: str, path: str,
                                                            sale_id: str, token: str, scheme: str, body: Any,
                                                            wait: str | None) -> None:
    import json
    import socket
    from urllib.parse import quote

    target = path.replace("{id}", quote(sale_id, safe=""))
    if wait is not None:
        target += f"?wait={wait}"
    payload = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n").encode("latin-1")
    head += f"Authorization: {scheme} {token}\r\n".encode("latin-1") + b"\r\n"
    with socket.create_connection(("127.0.0.1", till_server.port), timeout=10) as s:
        s.sendall(head + payload)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status < 500, answer[:500]
    operation = _openapi()["paths"].get(path.replace("{id}", "{sale_id}"), {}).get(method.lower())
    # An empty id or one with a slash reaches another route or none (the router's 404/405, its redirect).
    if "{id}" in path and (sale_id == "" or "/" in sale_id):
        operation = None
    if operation is not None:   # every status an operation answers is in the OpenAPI document
        assert str(status) in operation["responses"], (method, path, status, answer[:300])
    else:   # no such operation: the token and size guard answers first, then the router
        assert status in (307, 401, 404, 405, 413), (method, path, status)


@pytest.mark.parametrize(("method", "path", "status", "allow", "says"), [
    ("GET", "/v1/foo", 404, None, "No such endpoint: GET /v1/foo"),
    ("POST", "/v1/sales/S1/refund", 404, None, "No such endpoint: POST /v1/sales/S1/refund"),
    ("GET", "/nothing-here", 404, None, "No such endpoint: GET /nothing-here"),
    ("DELETE", "/v1/sales", 405, "POST", "/v1/sales does not take DELETE: use POST"),
    ("PUT", "/v1/health", 405, "GET", "/v1/health does not take PUT: use GET"),
    ("GET", "/v1/refunds", 405, "POST", "/v1/refunds does not take GET: use POST"),
    ("POST", "/openapi.json", 405, "GET, HEAD", "/openapi.json does not take POST: use GET or HEAD"),
    ("DELETE", "/v1/sales/S1/customs-declarations", 405, "GET, POST",   # two routes, one path
     "/v1/sales/S1/customs-declarations does not take DELETE: use GET or POST"),
])
def test_the_router_answers_unknown_paths_and_wrong_methods_with_a_problem(
        till_server: Any, method: str, path: str, status: int, allow: str | None, says: str) -> None:
    answer = requests.request(method, f"http://127.0.0.1:{till_server.port}{path}", timeout=10,
                              headers={"Authorization": "Bearer " + "t" * 32}, allow_redirects=False)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert {m.strip() for m in answer.headers.get("allow", "").split(",") if m} == set((allow or "").split(", ")) - {""}
    problem = answer.json()
    assert problem["status"] == status and problem["title"] in ("No such endpoint", "Method not allowed")
    assert problem["detail"].startswith(says) and "/openapi.json" in problem["detail"], problem
    # The statuses the router answers are the README's (404 and 405), and 404 is declared on every operation.
    if status == 404:
        assert all("404" in op["responses"] for ops in _openapi()["paths"].values() for op in ops.values())


@functools.cache
def _openapi() -> dict[str, Any]:
    from pos.till.api import openapi_document
    return openapi_document()


def test_every_status_the_till_code_can_answer_is_documented() -> None:
    """Every status written in the till interface and the services behind it (TillError, problem answers,
    refusal table) is declared on every operation of pos/data/openapi.json."""
    import json
    import re

    from pos.terminal.till_service import REFUSAL_PROBLEMS

    root = Path(__file__).resolve().parent.parent
    statuses = {status for status, _, _ in REFUSAL_PROBLEMS.values()}
    for source in [*(root / "pos" / "till").glob("*.py"), *(root / "pos" / "terminal").glob("*.py")]:
        text = source.read_text()
        statuses |= {int(n) for n in re.findall(r"(?:TillError|_problem)\(\s*(\d{3})", text)}
    statuses.add(400)   # the answer to a body that is not JSON (pos/web.py)
    assert {400, 401, 403, 404, 409, 413, 422, 503} <= statuses
    kept = json.loads((root / "pos" / "data" / "openapi.json").read_text())
    assert kept == _openapi(), "regenerate: python -m pos.till.api > pos/data/openapi.json"
    for path, operations in kept["paths"].items():
        for method, operation in operations.items():
            missing = statuses - {int(code) for code in operation["responses"]}
            assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"


# -- clock: the wall clock stepped by hours during a query schedule -----------------------------------

@pytest.mark.parametrize("step", [-7200.0, 7200.0])
def test_wall_clock_step_during_a_query_schedule(tmp_path: Path, step: float) -> None:
    from pos.core.money import Money
    from pos.journal.journal import Journal
    from pos.payments.runner import PaymentRunner, SystemClock
    from pos.sandbox.direct import DirectGateway
    from pos.sandbox.ledger import Ledger
    from pos.sandbox.scenarios import make_code
    from tests.crash_driver import FAST
    from tests.sandbox_fixtures import short_options

    offset = [0.0]
    clock = SystemClock(wall=lambda: time.time() + offset[0])
    ledger = Ledger(short_options(wallet_confirm_after=0.5))
    journal = Journal.open(tmp_path / "journal.db")
    runner = PaymentRunner(journal, DirectGateway(ledger, time.time), FAST, clock=clock)
    try:
        runner.recover()
        sale_id = runner.start_sale(Money(100, "SGD"), make_code("10"), clock.now(), "t")  # U, then queries
        time.sleep(0.05)
        offset[0] = step                       # the wall clock is stepped while the sale is querying
        record = runner.wait(sale_id, timeout=5)
        assert record is not None and record.state is SaleState.PAID   # queried on time, not cancelled early
        assert record.query_count >= 1
        # Once nothing is in progress, the terminal's times follow the wall clock again.
        runner.wait_idle(timeout=5)
        later = runner.start_sale(Money(100, "SGD"), make_code("00"), time.time() + step, "t")  # the scanner's time
        assert runner.wait(later, timeout=5).state is SaleState.PAID
        assert abs(journal.get_sale(later).created_at - (time.time() + step)) < 5
        runner.wait_idle(timeout=5)
        offset[0] = 0.0                        # stepped back while idle: the next sale is dated right
        third = runner.start_sale(Money(100, "SGD"), make_code("00"), time.time(), "t")
        assert abs(journal.get_sale(third).created_at - time.time()) < 5
    finally:
        runner.stop()
        journal.close()


def test_read_only_journal_refuses_new_sales_then_sales_go_on(rig: FaultRig) -> None:
    assert rig.sale() is SaleState.PAID
    db = rig.journal.db
    db.write("PRAGMA query_only = ON")      # every write fails as on a read-only file system
    try:
        with pytest.raises(UserError, match="could not record|journal"):
            rig.runner.start_sale(rig_money(), rig_code(), rig.runner.clock.now(), "read-only")
    finally:
        db.write("PRAGMA query_only = OFF")
    deadline = time.monotonic() + 10
    while not rig.runner.journal_ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rig.sale() is SaleState.PAID
    figures = rig.settle_and_compare()
    _clean(figures)
    # The refused sale sent nothing: the ledger knows only the two paid ones.
    assert figures.states == {"PAID": 2}


# -- receipt and display text: whatever the till or the gateway sends, no command reaches a device ----

@settings(max_examples=80, deadline=None)
@given(title=st.text(max_size=60), store=st.text(max_size=30), encoding=st.sampled_from(["GB18030", "UTF-8", "ASCII"]))
def test_any_text_on_paper_or_display_carries_no_device_command(title: str, store: str, encoding: str) -> None:
    from datetime import datetime

    from devices.display import fit_line
    from devices.messages import Catalogue
    from devices.receipt import ReceiptAmount, ReceiptData, ReceiptKind, render_receipt
    from pos.config import PrinterSection

    data = ReceiptData(kind=ReceiptKind.SALE, merchant_name="Shop", store_name=store, terminal_id="T1",
                       when=datetime(2024, 5, 1, 12, 0), amount=ReceiptAmount(500, "SGD", "SGD 5.00"),
                       status_key="status_paid", merchant_trans_id="T1-20240501-AAAA-000001",
                       acquirement_id="2024", code_last4="1234", order_title=title)
    out = render_receipt(data, PrinterSection(encoding=encoding), Catalogue.load("en"))
    assert b"\x1bp" not in out and out.count(b"\x1dV") == 1
    line = fit_line(title, 20, encoding)
    assert not any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in line)


# -- clock: the business day crosses midnight Beijing time while a sale is being cancelled ------------

@pytest.mark.parametrize("case,tz", [("cancelled within the 15-minute buffer", "Asia/Shanghai"),
                                     ("cancel expired, never charged", "Asia/Shanghai"),
                                     ("cancel expired, the customer confirms later", "Asia/Shanghai"),
                                     ("cancel expired, never charged", "Europe/London")])
def test_midnight_beijing_during_a_cancel(tmp_path: Path, sandbox_keys: SandboxKeys, case: str, tz: str) -> None:
    """Pay U at 23:59:59 Beijing time, queries, the cancel after 00:00 (§13: same Beijing day + 15 min).
    Terminal, client and sandbox share one wall clock that runs over midnight in real time. A terminal
    in London (16:59 there) keeps its own business date; the window is still Beijing's."""
    import json
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from pos.config import GatewaySection
    from pos.core.money import Money
    from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
    from pos.gateway.offline import OfflineGateway
    from pos.journal.journal import Journal
    from pos.payments.runner import PaymentRunner, SystemClock
    from pos.sandbox.ledger import BEIJING
    from pos.sandbox.scenarios import make_code
    from pos.sandbox.server import SandboxServer
    from tests.crash_driver import FAST
    from tests.fault_proxy import FaultProxy
    from tests.sandbox_fixtures import short_options

    midnight = datetime(2024, 5, 2, tzinfo=BEIJING)          # day D = 2024-05-01 ends here
    lead = 1.0                                               # the pay leaves about 1 s before midnight
    offset = midnight.timestamp() - lead - time.time()

    def wall() -> float:
        return time.time() + offset

    def beijing() -> datetime:
        return datetime.fromtimestamp(wall(), BEIJING)

    in_buffer = case.startswith("cancelled")
    scenario = "10" if "confirms" in case else "18"          # 10: confirms after wallet_confirm_after
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private, clock=beijing,
                           options=short_options(cancel_buffer=900.0 if in_buffer else 0.3,
                                                 wallet_confirm_after=3.5)).start()
    proxy = FaultProxy(server.url).start()
    keys = sandbox_keys.folder
    gateway = OfflineGateway(GatewaySection(url=proxy.url, private_key=str(keys / MERCHANT_PRIVATE),
                                            merchant_public_key=str(keys / MERCHANT_PUBLIC),
                                            alipay_public_key=str(keys / ALIPAY_PUBLIC),
                                            connect_timeout=1.0, read_timeout=1.0, sandbox=True), clock=beijing)
    journal = Journal.open(tmp_path / "journal.db", terminal_id="T1", timezone=tz)
    schedule = FAST.model_copy(update={"query_deadline": 2.0})   # the cancel comes about 1 s after midnight
    runner = PaymentRunner(journal, gateway, schedule, clock=SystemClock(wall=wall))
    try:
        runner.recover()
        runner.wait_recovered(timeout=10)
        sale_id = runner.start_sale(Money(1234, "SGD"), make_code(scenario), runner.clock.now(), "midnight")
        record = runner.wait(sale_id, timeout=15)
        assert record is not None
        expected = SaleState.CANCELLED if in_buffer else SaleState.MANUAL_REVIEW
        assert record.state is expected, record       # never DECLINED: money may have moved
        if "confirms" in case:   # found charged by the background check: given back in full (REVERSED)
            deadline = time.monotonic() + 15
            while journal.get_sale(sale_id).state is not SaleState.REVERSED and time.monotonic() < deadline:
                time.sleep(0.05)
        sale = journal.get_sale(sale_id)
        payment = next(p for p in server.ledger.payments(beijing()) if p.merchant_trans_id == sale.merchant_trans_id)

        # Business dates: the sale belongs to day D, where it was created, whenever it ends.
        assert sale.local_date == "2024-05-01"   # in London too: it is 17:00 there, the same day
        assert "-20240501-" in sale.merchant_trans_id
        assert datetime.fromtimestamp(sale.updated_at, ZoneInfo(tz)).date().isoformat() == (
            "2024-05-02" if tz == "Asia/Shanghai" else "2024-05-01")
        assert datetime.fromtimestamp(sale.created_at, BEIJING) < midnight
        assert payment.created_at.astimezone(BEIJING) < midnight <= datetime.fromtimestamp(sale.updated_at, BEIJING)

        # Request times: each request carries the wall clock of its sending, in GMT+8; the pay is dated
        # day D, the cancel day D+1 (it is the sandbox's clock that decides the window, from the same time).
        heads = [json.loads(r.partition(b"\r\n\r\n")[2])["request"]["head"] for r in proxy.requests]
        sent = [(head["function"], datetime.fromisoformat(head["reqTime"])) for head in heads]
        functions = [f for f, _ in sent]
        assert functions[0].endswith("pay") and any(f.endswith("payCancel") for f in functions), functions
        for function, at in sent:
            assert at.utcoffset() == timedelta(hours=8), (function, at)
        pay_at = sent[0][1]
        cancel_at = next(at for f, at in sent if f.endswith("payCancel"))
        assert pay_at < midnight <= cancel_at, (pay_at, cancel_at)
        assert all(a <= b + timedelta(seconds=0.01) for (_, a), (_, b) in zip(sent, sent[1:], strict=False))

        # The window as §13 says: the cancel inside the buffer closes the payment; after it, CANCEL_EXPIRED.
        if in_buffer:
            assert payment.status == "CANCELLED" and not payment.charged
            assert sale.result_code in (None, "SUCCESS")
        else:
            assert sale.result_code == "CANCEL_EXPIRED" or sale.state is SaleState.REVERSED, sale
            if "confirms" in case:
                assert sale.state is SaleState.REVERSED, sale       # charged after "No goods": refunded in full
                assert payment.charged and payment.refunded == payment.amount.minor
                refund = next(r for r in server.ledger.refunds() if r.merchant_refund_id == sale.reversal_id)
                assert refund.refunded_at.astimezone(BEIJING).date() == midnight.date()   # day D+1
            else:
                assert not payment.charged and payment.refunded == 0   # nothing moved; a manager looks
    finally:
        runner.stop()
        journal.close()
        gateway.close()
        proxy.stop()
        server.stop()


# -- scanner byte streams: whatever the scanner sends, the real reader over a pty never starts a sale ---

class _ScannerBench:
    """The terminal (tests/test_terminal.py's Rig: journal, runner, in-process sandbox, display ptys)
    fed by the real scanner reader (devices.scanner.Scanner) from a pty twin."""

    def __init__(self, folder: Path) -> None:
        import queue

        from devices.emulated import EmulatedScanner
        from devices.scanner import Scanner
        from tests.test_scanner import scanner_settings
        from tests.test_terminal import Rig

        self.rig = Rig(folder)
        self.device = EmulatedScanner(directory=folder)
        self.events: queue.Queue[Any] = queue.Queue()
        self.sync = 0

        def both(event: Any) -> None:
            self.events.put(event)
            self.rig.terminal.on_scanner_event(event)

        self.reader = Scanner(scanner_settings(str(self.device.path)), both, poll_interval=0.02).start()
        assert self.reader.connected.wait(5)
        self.errors: list[str] = []   # "scan handling failed", "scanner event handler failed", ...
        self._handler = logging.Handler(logging.ERROR)
        self._handler.emit = lambda record: self.errors.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger().addHandler(self._handler)

    def send(self, chunks: list[bytes]) -> list[Any]:
        """Send the chunks, then end the line and a receipt code as a marker: the events before the marker."""
        from devices.scanner import ReceiptScan

        for chunk in chunks:
            self.device.send_raw(chunk)
        self.sync += 1
        marker = ReceiptScan(f"SYNC{self.sync}")
        self.device.send_raw(f"\rPOS:SYNC{self.sync}\r".encode())
        seen = []
        while (event := self.events.get(timeout=10)) != marker:
            seen.append(event)
        return seen

    def close(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self.reader.stop()
        self.device.close()
        self.rig.close()


@pytest.fixture(scope="module")
def scanner_bench(tmp_path_factory: pytest.TempPathFactory) -> Any:
    bench = _ScannerBench(tmp_path_factory.mktemp("scanner"))
    yield bench
    bench.close()


_CODE_LIKE = re.compile(rb"(?:2[5-9]|30)[0-9]{14}")
_NOISE = st.lists(st.one_of(
    st.binary(max_size=80),                                            # anything, invalid UTF-8 included
    st.sampled_from([b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x03\x04\x11\x13\x1a\x1b[2J\x7f",
                     b"\x1bp\x00\x19\xfa", b"\r", b"\n", b"\r\n", b"]Q1", b"]E0", b"2812345", b"POS",
                     "２８１２３４５６７８９０１２３４５６".encode(), b"28" + b"0" * 13, b"28" + b"1" * 33,
                     b"\t \t", b"-" * 127, b"7" * 129]),
    st.integers(min_value=129, max_value=20_000).map(lambda n: b"9" * n),   # huge lines
), max_size=12)


@settings(max_examples=40, deadline=None)
@given(noise=_NOISE, waiting=st.booleans())
def test_scanner_garbage_starts_no_sale_and_a_code_after_it_still_pays(scanner_bench: Any, noise: list[bytes],
                                                                      waiting: bool) -> None:
    from hypothesis import assume

    from devices.scanner import Rejected, Scan
    from pos.core.money import Money
    from pos.sandbox.scenarios import make_code

    joined = b"".join(noise)
    assume(not _CODE_LIKE.search(joined) and b"POS:" not in joined)   # no real code hidden in the noise
    rig = scanner_bench.rig
    sales_before = len(rig.journal.list_sales())
    view = rig.terminal.create_sale(Money(250, "SGD"), "fuzz", "") if waiting else None
    seen = scanner_bench.send(noise)
    # Only refusals came out of the noise, each with the display's message; nothing else happened.
    assert all(isinstance(e, Rejected) and e.message_key == "scan_invalid" for e in seen), seen
    assert len(rig.journal.list_sales()) == sales_before
    assert scanner_bench.errors == []
    if view is None:
        return
    assert rig.terminal.get_sale(view["id"])["state"] == "CREATED"   # still waiting for a code
    code = make_code("00")
    scanner_bench.device.send_raw(b"\r" + code.encode() + b"\r")
    assert scanner_bench.events.get(timeout=10) == Scan(code)
    done = rig.settle(view["id"])
    assert done["state"] == "PAID", done
    assert len(rig.journal.list_sales()) == sales_before + 1
    assert scanner_bench.errors == []
