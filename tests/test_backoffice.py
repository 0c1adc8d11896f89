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
                                           acquirement_id=str(answer.data["acquirementId"])),)))
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
