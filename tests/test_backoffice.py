"""`pos customs` against the v1 sandbox over real HTTP, with a real journal file.

The sale is paid for real through the sandbox (its paymentId is the sandbox's),
then journaled PAID; declarations go through the `pos` command (in-process, and
as a process that the journal's crash hook kills right after the declaration
is committed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from pos.cli.main import main
from pos.config import GatewaySection
from pos.core.engine import Record
from pos.core.money import Money
from pos.core.outcomes import Succeeded
from pos.core.records import SaleRecord, SaleState
from pos.gateway.ams import AmsGateway
from pos.gateway.keys import ALIPAY_PUBLIC, MERCHANT_PRIVATE, MERCHANT_PUBLIC
from pos.journal.backoffice import BackOfficeJournal
from pos.journal.journal import Journal
from pos.sandbox.server import SandboxServer
from tests.sandbox_fixtures import *  # noqa: F403 - fixtures
from tests.sandbox_fixtures import FakeClock, SandboxKeys, make_code, short_options

CLIENT_ID = "SANDBOX_POS0001"
REPO = Path(__file__).resolve().parent.parent
_n = iter(range(10**6))


@pytest.fixture
def ams_server(sandbox_keys: SandboxKeys, sandbox_clock: FakeClock) -> Iterator[SandboxServer]:
    server = SandboxServer(merchant_public_key=sandbox_keys.merchant_public,
                           alipay_private_key=sandbox_keys.alipay_private,
                           options=short_options(slow_response=2.5), clock=sandbox_clock, protocol="ams")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_config(tmp_path: Path, server: SandboxServer, keys: SandboxKeys, *, wallet: str = "ALIPAY_CN",
                 protocol: str = "ams", extra: str = "") -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / f"terminal-{wallet}-{protocol}.toml"
    path.write_text(f"""
[terminal]
terminal_id = "POS01"
state_dir = "{state}"
currency = "SGD"
wallet = "{wallet}"
timezone = "Asia/Singapore"

[gateway]
protocol = "{protocol}"
url = "{server.url}"
client_id = "{CLIENT_ID}"
merchant_id = "2188000000000001"
private_key = "{keys.path(MERCHANT_PRIVATE)}"
merchant_public_key = "{keys.path(MERCHANT_PUBLIC)}"
alipay_public_key = "{keys.path(ALIPAY_PUBLIC)}"
sandbox = true
connect_timeout = 2.0
read_timeout = 1.0
{extra}
""")
    return path


class Shop:
    """A journal with sales paid for real through the sandbox."""

    def __init__(self, tmp_path: Path, server: SandboxServer, keys: SandboxKeys) -> None:
        self.config = write_config(tmp_path, server, keys)
        self.server, self.keys = server, keys
        self.journal_path = tmp_path / "state" / "journal.db"
        self.settings = GatewaySection(protocol="ams", url=server.url, client_id=CLIENT_ID,
                                       private_key=str(keys.path(MERCHANT_PRIVATE)),
                                       merchant_public_key=str(keys.path(MERCHANT_PUBLIC)),
                                       alipay_public_key=str(keys.path(ALIPAY_PUBLIC)), sandbox=True)

    def journal(self) -> Journal:
        return Journal.open(self.journal_path, terminal_id="POS01", timezone="Asia/Singapore")

    def sale(self, *, paid: bool = True, minor: int = 2500) -> SaleRecord:
        j = self.journal()
        try:
            code = make_code("00")
            sale = j.create_sale(amount=Money(minor, "SGD"), code=code, scanned_at=time.time(), now=time.time())
            if not paid:
                return sale
            with AmsGateway(self.settings) as gw:
                answer = gw.pay(merchant_trans_id=sale.merchant_trans_id, identity_code=code,
                                amount=sale.amount, order_title="goods")
            assert isinstance(answer, Succeeded), answer
            j.record(Record(sales=(replace(sale, state=SaleState.PAID,
                                           acquirement_id=answer.gateway_id),)))
            found = j.get_sale(sale.sale_id)
            assert found is not None
            return found
        finally:
            j.close()

    def declarations(self, sale_id: int) -> list[Any]:
        j = self.journal()
        try:
            return BackOfficeJournal(j.db, j.install_id).declarations_of_sale(sale_id)
        finally:
            j.close()

    def sandbox_declarations(self) -> list[dict[str, Any]]:
        return list(requests.get(self.server.url + "/sandbox/ledger", timeout=5).json()["declarations"])


@pytest.fixture
def shop(tmp_path: Path, ams_server: SandboxServer, sandbox_keys: SandboxKeys) -> Shop:
    return Shop(tmp_path, ams_server, sandbox_keys)


def declare(shop: Shop, sale: int | str, *extra: str, code: str = "MCODE1", amount: str = "100.00") -> list[str]:
    args = ["customs", "declare", str(sale), "--customs", "ZONGSHU", "--merchant-customs-code", code,
            "--merchant-customs-name", "Demo Shop", "--config", str(shop.config), *extra]
    return args + (["--amount", amount] if amount else [])


def test_declare_status_repeat_and_journal_show(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    sale = shop.sale()
    assert main(declare(shop, sale.sale_id)) == 0
    out = capsys.readouterr().out
    (d,) = shop.declarations(sale.sale_id)
    assert d.state == "DECLARED" and d.declaration_request_id in out and d.customs_payment_id
    assert d.amount == Money(10000, "CNY") and d.payment_id == sale.acquirement_id
    # The same declaration again: shown from the journal, nothing sent.
    assert main(declare(shop, sale.merchant_trans_id)) == 0
    assert "declared already" in capsys.readouterr().out
    assert len(shop.sandbox_declarations()) == 1
    # Customs' decision, kept in the journal and shown by `pos journal show`.
    assert main(["customs", "status", str(sale.sale_id), "--config", str(shop.config)]) == 0
    assert "SUCCESSFUL" in capsys.readouterr().out
    assert shop.declarations(sale.sale_id)[0].customs_status == "SUCCESSFUL"
    assert main(["journal", "show", str(sale.sale_id), "--config", str(shop.config)]) == 0
    shown = capsys.readouterr().out
    assert "customs declarations:" in shown and d.declaration_request_id in shown
    assert "inquiry" in shown and "SUCCESSFUL" in shown
    # A second declaration of the same sale without --split is refused; with --split it is a new one.
    assert main(declare(shop, sale.sale_id, code="OTHER")) == 2
    assert "--split" in capsys.readouterr().err
    assert main(declare(shop, sale.sale_id, "--split", code="OTHER", amount="20.00")) == 0
    ds = shop.declarations(sale.sale_id)
    assert [x.split_order for x in ds] == [False, True] and ds[1].suborder_id == ds[1].declaration_request_id


def test_customs_rejection_is_kept(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    sale = shop.sale()
    assert main(declare(shop, sale.sale_id, code="REJECT-1")) == 0
    assert main(["customs", "status", str(sale.sale_id), "--config", str(shop.config)]) == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "CUSTOMS_REJECTED" in out
    (d,) = shop.declarations(sale.sale_id)
    assert d.customs_status == "FAILED" and d.result_code == "CUSTOMS_REJECTED"
    # Rejected by customs: declaring again (corrected) makes a new declaration.
    assert main(declare(shop, sale.sale_id, code="MCODE2")) == 0
    assert len(shop.declarations(sale.sale_id)) == 2


def test_timeout_then_repeat_is_the_same_declaration(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    sale = shop.sale()
    assert main(declare(shop, sale.sale_id, code="SLOW-1")) == 3      # read_timeout 1 s < the held answer
    assert "no answer" in capsys.readouterr().out
    (d,) = shop.declarations(sale.sale_id)
    assert d.state == "SENDING"
    # Another declaration while this one is unanswered is refused.
    assert main(declare(shop, sale.sale_id, code="MCODE9")) == 2
    assert "no answer yet" in capsys.readouterr().err
    assert main(declare(shop, sale.sale_id, code="SLOW-1")) == 0
    assert "repeated" in capsys.readouterr().out
    (again,) = shop.declarations(sale.sale_id)
    assert again.declaration_request_id == d.declaration_request_id and again.state == "DECLARED"
    assert [x["declarationRequestId"] for x in shop.sandbox_declarations()] == [d.declaration_request_id]


def test_crash_after_commit_then_repeat(shop: Shop) -> None:
    sale = shop.sale()
    env = {**os.environ, "POS_CRASH_AT": "after:1"}
    crashed = subprocess.run([sys.executable, "-m", "pos.cli.main", *declare(shop, sale.sale_id)], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    (d,) = shop.declarations(sale.sale_id)
    assert d.state == "SENDING" and shop.sandbox_declarations() == []      # committed, never sent
    env.pop("POS_CRASH_AT")
    done = subprocess.run([sys.executable, "-m", "pos.cli.main", *declare(shop, sale.sale_id)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "repeated" in done.stdout
    (again,) = shop.declarations(sale.sale_id)
    assert again.declaration_request_id == d.declaration_request_id and again.state == "DECLARED"
    assert len(shop.sandbox_declarations()) == 1


@pytest.mark.parametrize(("wallet", "protocol", "expected"), [
    ("ALIPAY_HK", "ams", "only for AlipayCN"), ("ALIPAY_CN", "offline", "only for AlipayCN")])
def test_non_alipaycn_is_refused(shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str], wallet: str,
                                 protocol: str, expected: str) -> None:
    sale = shop.sale()
    shop.config = write_config(tmp_path, shop.server, shop.keys, wallet=wallet, protocol=protocol)
    assert main(declare(shop, sale.sale_id)) == 2
    assert expected in capsys.readouterr().err
    assert shop.declarations(sale.sale_id) == [] and shop.sandbox_declarations() == []


def test_unpaid_sale_and_bad_input_are_refused(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    unpaid = shop.sale(paid=False)
    assert main(declare(shop, unpaid.sale_id)) == 2
    assert "not PAID" in capsys.readouterr().err
    sale = shop.sale()
    assert main(declare(shop, sale.sale_id, amount="")) == 2          # SGD sale: the CNY amount is needed
    assert "--amount" in capsys.readouterr().err
    assert main(declare(shop, sale.sale_id, amount="12.345")) == 2
    assert "decimals" in capsys.readouterr().err
    assert main(declare(shop, 999)) == 2
    assert "no sale" in capsys.readouterr().err
    assert shop.declarations(sale.sale_id) == [] and shop.sandbox_declarations() == []


def test_status_without_declarations(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    sale = shop.sale()
    assert main(["customs", "status", str(sale.sale_id), "--config", str(shop.config)]) == 0
    assert "no customs declaration" in capsys.readouterr().out
    assert json.loads(json.dumps(shop.sandbox_declarations())) == []


# -- merchant registration ------------------------------------------------------------------

STORE_EXAMPLE = REPO / "config" / "store.example.toml"


def store_file(tmp_path: Path, *, store_id: str = "S-0001", merchant_id: str = "M-1", **edits: str) -> Path:
    text = STORE_EXAMPLE.read_text()
    text = text.replace('reference_store_id = "S-0001"', f'reference_store_id = "{store_id}"')
    text = text.replace('reference_merchant_id = "M-2188000000000001"', f'reference_merchant_id = "{merchant_id}"')
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"store-{store_id}-{next(_n)}.toml"
    path.write_text(text)
    return path


class Listener:
    """The daemon's notification listener over HTTP on 127.0.0.1, on the shop's journal."""

    def __init__(self, shop: Shop, tmp_path: Path) -> None:
        from pos.config import load_config
        from pos.gateway.signing import load_private_key, load_public_key
        from pos.ops.notify_listener import build_notify_app, notify_server
        from pos.payments.runner import PaymentRunner

        cfg = load_config(shop.config).config
        self.journal = shop.journal()
        self.runner = PaymentRunner(self.journal, AmsGateway(shop.settings), cfg.payment)
        app = build_notify_app(self.runner, cfg, alipay_public_key=load_public_key(cfg.gateway.alipay_public_key),
                               merchant_private_key=load_private_key(cfg.gateway.private_key))
        self.server = notify_server(app)
        self.server.start()
        self.plain_config = shop.config        # no [notify]: the sandbox sends no notification
        shop.config = write_config(tmp_path, shop.server, shop.keys,
                                   extra=f'[notify]\npublic_url = "{self.server.url}"\n\n'
                                         '[merchant]\nregistration_required = true\n')

    def close(self) -> None:
        self.server.stop()
        self.runner.stop(timeout=5)
        self.journal.close()


@pytest.fixture
def listener(shop: Shop, tmp_path: Path) -> Iterator[Listener]:
    lis = Listener(shop, tmp_path)
    try:
        yield lis
    finally:
        lis.close()


def registration(shop: Shop) -> Any:
    from pos.backoffice.registration import sales_refusal

    j = shop.journal()
    try:
        store = BackOfficeJournal(j.db, j.install_id)
        latest = store.latest_registration()
        events = store.events("registration", latest.registration_request_id) if latest else []
        return latest, events, sales_refusal(store, required=True)
    finally:
        j.close()


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_register_notification_opens_sales(shop: Shop, listener: Listener, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = store_file(tmp_path)
    assert registration(shop)[2] == "merchant registration required: run 'pos merchant register'"
    assert main(["merchant", "register", "--file", str(path), "--config", str(shop.config)]) == 0
    assert "submitted" in capsys.readouterr().out
    # The sandbox's notifyRegistrationStatus reaches the listener, is verified and journaled.
    wait_for(lambda: registration(shop)[0].registration_status == "SUCCESSFUL")
    reg, events, refusal = registration(shop)
    assert refusal is None and [e.what for e in events] == ["create", "registration S", "notification"]
    wait_for(lambda: requests.get(shop.server.url + "/sandbox/ledger", timeout=5).json()
             ["registrations"][0]["acknowledged"])
    # The same file again: nothing sent; status and info ask the sandbox.
    assert main(["merchant", "register", "--file", str(path), "--config", str(shop.config)]) == 0
    assert "registered already" in capsys.readouterr().out
    assert main(["merchant", "status", "--config", str(shop.config)]) == 0
    out = capsys.readouterr().out
    assert "SUCCESSFUL" in out and "sales: open" in out
    assert main(["merchant", "info", "--config", str(shop.config)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["storeInfo"]["referenceStoreId"] == "S-0001" and info["productCodes"] == ["IN_STORE_PAYMENT"]
    assert len(requests.get(shop.server.url + "/sandbox/ledger", timeout=5).json()["registrations"]) == 1


def test_rejected_registration_keeps_sales_refused(shop: Shop, listener: Listener, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merchant", "register", "--file", str(store_file(tmp_path, store_id="REJECT-1")),
                 "--config", str(shop.config)]) == 0
    wait_for(lambda: registration(shop)[0].registration_status == "FAILED")
    reg, _, refusal = registration(shop)
    assert refusal is not None and "FAILED" in refusal
    assert main(["merchant", "status", "--config", str(shop.config)]) == 1
    assert "REGISTRATION_REJECTED" in capsys.readouterr().out
    # After a rejection a corrected file makes a new registration (same merchant: REPEAT_REGISTRATION here).
    assert main(["merchant", "register", "--file", str(store_file(tmp_path, store_id="S-0002")),
                 "--config", str(shop.config)]) == 1
    assert "REPEAT_REGISTRATION" in capsys.readouterr().out


def _signed_notice(shop: Shop, path: str, body: dict[str, Any], key: Any) -> tuple[bytes, dict[str, str]]:
    from pos.gateway.ams.client import request_time
    from pos.gateway.ams.signing import sign, sign_content, signature_header
    from pos.gateway.signing import compact_json

    raw = compact_json(body).encode()
    moment = request_time(datetime_now())
    sig = sign(sign_content("POST", path, CLIENT_ID, moment, raw), key)
    return raw, {"content-type": "application/json", "client-id": CLIENT_ID, "request-time": moment,
                 "signature": signature_header(sig, 1)}


def datetime_now() -> Any:
    from datetime import datetime
    return datetime.now().astimezone()


def test_notification_bad_signature_ignored_and_repeat_idempotent(shop: Shop, listener: Listener,
                                                                  tmp_path: Path) -> None:
    from pos.gateway.ams.backoffice import REGISTRATION_NOTIFY_PATH

    assert main(["merchant", "register", "--file", str(store_file(tmp_path)),
                 "--config", str(listener.plain_config)]) == 0
    reg, _, _ = registration(shop)
    assert reg.state == "SUBMITTED" and reg.registration_status == "PROCESSING"
    url = listener.server.url + REGISTRATION_NOTIFY_PATH
    body = {"registrationRequestId": reg.registration_request_id,
            "registrationResult": {"registrationStatus": "SUCCESSFUL"}}
    # Signed with the merchant's key instead of Alipay's: refused, nothing changes.
    raw, headers = _signed_notice(shop, REGISTRATION_NOTIFY_PATH, body, shop.keys.merchant_private)
    assert requests.post(url, data=raw, headers=headers, timeout=5).status_code == 401
    latest, events, refusal = registration(shop)
    assert latest.registration_status == "PROCESSING" and refusal is not None and len(events) == 2
    # Alipay's signature: applied once; the same notification again changes nothing.
    raw, headers = _signed_notice(shop, REGISTRATION_NOTIFY_PATH, body, shop.keys.alipay_private)
    for _ in range(2):
        answer = requests.post(url, data=raw, headers=headers, timeout=5)
        assert answer.status_code == 200 and answer.json()["result"]["resultStatus"] == "S"
    latest, events, refusal = registration(shop)
    assert latest.registration_status == "SUCCESSFUL" and refusal is None
    assert [e.what for e in events].count("notification") == 1


def test_register_timeout_and_crash_repeat_the_same_request(shop: Shop, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    slow = store_file(tmp_path, store_id="SLOW-2")
    assert main(["merchant", "register", "--file", str(slow), "--config", str(shop.config)]) == 3
    first, _, _ = registration(shop)
    assert main(["merchant", "register", "--file", str(store_file(tmp_path, store_id="OTHER")),
                 "--config", str(shop.config)]) == 2
    assert "no answer yet" in capsys.readouterr().err
    assert main(["merchant", "register", "--file", str(slow), "--config", str(shop.config)]) == 0
    again, _, _ = registration(shop)
    assert again.registration_request_id == first.registration_request_id and again.state == "SUBMITTED"
    # A crash right after the commit of a new registration (another terminal's journal).
    other = tmp_path / "other"
    other.mkdir()
    shop2 = Shop(other, shop.server, shop.keys)
    path = store_file(tmp_path, store_id="S-9", merchant_id="M-9")
    cmd = [sys.executable, "-m", "pos.cli.main", "merchant", "register", "--file", str(path),
           "--config", str(shop2.config)]
    crashed = subprocess.run(cmd, env={**os.environ, "POS_CRASH_AT": "after:1"}, cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    sending, _, _ = registration(shop2)
    assert sending.state == "SENDING"
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "repeated" in done.stdout, done.stderr
    assert registration(shop2)[0].registration_request_id == sending.registration_request_id
    ids = [r["registrationRequestId"] for r in
           requests.get(shop.server.url + "/sandbox/ledger", timeout=5).json()["registrations"]]
    assert ids.count(sending.registration_request_id) == 1


@pytest.mark.parametrize(("edit", "expected"), [
    ({'mcc = "5812"                                     #': 'mcc = "58" #'},
     ['[merchant] mcc = "58"', "expected text matching"]),
    ({'legal_name = "Sandbox Coffee Pte. Ltd."\n': ""}, ["[merchant] legal_name", "is required"]),
    ({'[store]\n': '[store]\nfloor = 2\n'}, ["[store] floor", "not a known key", "store.example.toml"]),
])
def test_store_file_errors_name_the_key(shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        edit: dict[str, str], expected: list[str]) -> None:
    path = store_file(tmp_path, **edit)
    assert main(["merchant", "register", "--file", str(path), "--config", str(shop.config)]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert registration(shop)[0] is None


# -- [merchant] registration_required: sales closed until approved -------------------------

def test_registration_required_closes_sales_until_approved(tmp_path: Path) -> None:
    from pos.terminal.till_service import TillError
    from pos.till.api import Tokens, till_server
    from tests.test_terminal import Rig

    rig = Rig(tmp_path, sections={"merchant": {"registration_required": True}})
    server = till_server(rig.terminal, Tokens("till-token", "manager-token")).start()
    auth = {"Authorization": "Bearer till-token"}
    try:
        over_http = requests.get(server.url + "/v1/health", headers=auth, timeout=5).json()
        assert over_http["status"] == "degraded" and "pos merchant register" in over_http["sales_refused"]
        sale = requests.post(server.url + "/v1/sales", json={"amount": "5.00"}, headers=auth, timeout=5)
        assert sale.status_code == 503 and sale.json()["title"] == "Sales closed"
        rig.keys("5E")
        want = rig.terminal.cashier_text.cashier("registration_required")
        assert rig.cashier(lambda lines: lines == want) == want
        assert rig.customer_pty.wait_for(lambda lines: lines[0] == "暂停服务")[0] == "暂停服务"
        health = rig.terminal.health()
        assert health["status"] == "degraded" and "pos merchant register" in health["sales_refused"]
        with pytest.raises(TillError) as refused:
            rig.terminal.create_sale(Money(500, "SGD"), "till-1", "Tea")
        assert refused.value.status == 503 and "pos merchant register" in refused.value.detail
        assert rig.journal.list_sales() == []
        store = BackOfficeJournal(rig.journal.db, rig.journal.install_id)
        reg = store.create_registration({"merchantInfo": {}})
        store.update_registration(reg.registration_request_id, what="notification", state="SUBMITTED",
                                  registration_status="PROCESSING")
        assert "PROCESSING" in rig.terminal.health()["sales_refused"]
        store.update_registration(reg.registration_request_id, what="notification", registration_status="SUCCESSFUL")
        health = rig.terminal.health()
        assert health["sales_refused"] is None and health["status"] == "ok"
        assert requests.get(server.url + "/v1/health", headers=auth, timeout=5).json()["sales_refused"] is None
        rig.keys("5E")
        assert rig.cashier(lambda lines: "Scan" in lines[0])
    finally:
        server.stop()
        rig.close()


# -- the till interface: POST/GET /v1/sales/{id}/customs-declarations -------------------------

def test_till_declares_at_checkout(tmp_path: Path, shop: Shop) -> None:
    from devices.scanner import Scan
    from pos.till.api import Tokens, till_server
    from tests.test_terminal import Rig

    gateway = AmsGateway(shop.settings)
    rig = Rig(tmp_path / "till", sections={"gateway": {"protocol": "ams"}}, wrap_gateway=lambda _direct: gateway)
    server = till_server(rig.terminal, Tokens("till-token", "manager-token")).start()
    auth = {"Authorization": "Bearer till-token"}
    try:
        view = rig.terminal.create_sale(Money(500, "SGD"), "till-1", "Tea")
        rig.terminal.on_scanner_event(Scan(make_code("00")))
        assert rig.settle(view["id"])["state"] == "PAID"
        url = f"{server.url}/v1/sales/{view['id']}/customs-declarations"
        body = {"customs": "ZONGSHU", "merchantCustomsCode": "MCODE1", "merchantCustomsName": "Demo Shop",
                "amount": "27.00"}
        first = requests.post(url, json=body, headers=auth, timeout=10)
        assert first.status_code == 201, first.text
        assert first.json()["state"] == "DECLARED" and first.json()["amount"]["value"] == 2700
        again = requests.post(url, json=body, headers=auth, timeout=10)
        assert again.status_code == 200
        assert again.json()["declarationRequestId"] == first.json()["declarationRequestId"]
        listed = requests.get(url, headers=auth, timeout=10)
        assert listed.status_code == 200 and [d["customsStatus"] for d in listed.json()] == ["SUCCESSFUL"]
        # Refusals: an unpaid sale, a bad body; neither sends anything.
        pending = rig.terminal.create_sale(Money(300, "SGD"), "till-2", "Tea")
        refused = requests.post(f"{server.url}/v1/sales/{pending['id']}/customs-declarations", json=body,
                                headers=auth, timeout=10)
        assert refused.status_code == 409 and "not PAID" in refused.json()["detail"]
        rig.keys("C")
        bad = requests.post(url, json={**body, "amount": "-1"}, headers=auth, timeout=10)
        assert bad.status_code == 422
        assert requests.post(url, json=body, timeout=10).status_code == 401
        assert len(shop.sandbox_declarations()) == 1
    finally:
        server.stop()
        rig.close()
        gateway.close()


def test_doctor_tells_whether_sales_are_open(shop: Shop, listener: Listener, tmp_path: Path) -> None:
    from pos.config import load_config
    from pos.ops.doctor import check_merchant_registration, run_checks

    cfg = load_config(shop.config).config
    closed = check_merchant_registration(cfg)
    assert closed.level.value == "WARN" and "pos merchant register" in closed.line()
    assert main(["merchant", "register", "--file", str(store_file(tmp_path)), "--config", str(shop.config)]) == 0
    wait_for(lambda: registration(shop)[0].registration_status == "SUCCESSFUL")
    assert "approved: sales open" in check_merchant_registration(cfg).line()
    names = [r.name for r in run_checks(load_config(shop.config), device_timeout=0.1, gateway_timeout=1.0)]
    assert "merchant registration" in names
