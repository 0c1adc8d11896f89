"""`pos demo --interactive`: play cashier at the keyboard against the sandbox.

The same Stage as the narrated demo (sandbox, device twins, `pos run`); you
type the amount and pick a sandbox test code, and see both displays and the
printed receipt as the daemon drives them.

`qr 9.90` is a QR sale, as in the narrated demo's ninth scene: on a second
terminal speaking Alipay's v1 API (started on first use), the terminal prints
its own code and you play the customer's wallet: pay, cancel in the wallet,
walk away (the code expires), or let the cashier press CANCEL; or open the
slip's code (the sandbox's cashier page) in a browser.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from devices.keypad import Key
from pos.core.money import Money
from pos.demo.stage import Stage
from pos.demo.story import SCENARIO_CODES, pad
from pos.sandbox.scenarios import SandboxOptions, make_code

__all__ = ["interactive", "QR_CODE_EXPIRY"]

HELP = """Commands:
  12.50        start a sale of that amount (the till sends it), then pick a test code
  qr 9.90      a QR sale (v1 API terminal): the terminal prints a code, you play the customer's wallet
  r            refund part of the last paid sale (manager)
  x / z        X report (running totals) / Z report (close the day)
  q            quit"""

QR_CODE_EXPIRY = 20.0    # seconds the v1 sandbox's order code takes payment (its query deadline is 30 s)
_SLIP_QR = re.compile(r"\[QR: ([^\]]+)\]")
_WALLET = ("customer: p = pays in the wallet, c = cancels in the wallet, w = walks away (the code expires "
           f"after {QR_CODE_EXPIRY:g} s), k = the cashier presses CANCEL; or open the code in a browser and "
           "press Enter> ")


def _lines(stage: Stage) -> str:
    cashier, customer = stage.displays()
    return (f"  cashier  |{pad(cashier[0])}|   customer |{pad(customer[0])}|\n"
            f"           |{pad(cashier[1])}|            |{pad(customer[1])}|")


def _follow(stage: Stage, sale_id: str, out: Callable[[str], None], seconds: float = 90.0) -> dict[str, Any]:
    """Print the state and displays each time they change until the sale is final; the sale's last view."""
    seen = ""
    deadline = time.monotonic() + seconds
    view = stage.sale(sale_id)
    while time.monotonic() < deadline:
        view = stage.sale(sale_id)
        shown = f"  [{view['state']}]\n{_lines(stage)}"
        if shown != seen:
            out(shown)
            seen = shown
        if view["final"]:
            break
        time.sleep(0.3)
    return view


def _qr_stage() -> Stage:
    """The second terminal of the narrated demo's ninth scene: [gateway] protocol = "ams", notifications on."""
    return Stage(protocol="ams", notify=True,
                 payment={"query_first_delay": 2.0, "query_interval_min": 2.0, "query_interval_max": 3.0,
                          "query_deadline": 30.0, "cancel_interval": 0.5},
                 sandbox_options=SandboxOptions(order_code_expiry=QR_CODE_EXPIRY))


def _qr_sale(stage: Stage, amount: str, read: Callable[[str], str], out: Callable[[str], None]) -> None:
    r = stage.till("POST", "/v1/sales", {"amount": amount, "method": "qr", "orderTitle": "Iced tea"})
    if r.status_code != 201:
        out(f"  refused: {r.json().get('title')}: {r.json().get('detail')}")
        return
    sale = r.json()
    slips = stage.new_receipts(1, timeout=15)
    found = _SLIP_QR.search(slips[0]) if slips else None
    if found is None:
        out("  no code was printed: the sale is cancelled (nothing to scan)")
        _follow(stage, sale["id"], out)
        return
    out(slips[0])
    out(_lines(stage))
    url = found.group(1)
    out(f"  the slip's code is the sandbox wallet's cashier page: {url}")
    pick = read(_WALLET).strip().lower()
    if pick == "p":
        page = requests.post(url + "/pay", timeout=10)
        out("  the wallet paid" if "data-status='SUCCESS'" in page.text else "  the wallet refused to pay")
    elif pick == "c":
        requests.post(url + "/cancel", timeout=10)
        out("  the customer cancelled in the wallet")
    elif pick == "k":
        stage.press(Key.CANCEL)
        out("  the cashier pressed CANCEL")
    elif pick == "w":
        out(f"  nobody scans: the code expires {QR_CODE_EXPIRY:g} s after it was made")
    view = _follow(stage, sale["id"], out)
    if view["state"] == "PAID":
        for receipt in stage.new_receipts(1, timeout=5):
            out(receipt)


def interactive(read: Callable[[str], str] = input, out: Callable[[str], None] = print) -> int:
    out("Starting the sandbox, device twins and the daemon...")
    with contextlib.ExitStack() as later, \
            Stage(payment={"query_first_delay": 0.5, "query_interval_min": 1.0, "query_interval_max": 1.5,
                           "query_deadline": 10.0, "cancel_interval": 0.5}) as stage:
        v1: Stage | None = None
        codes = list(SCENARIO_CODES.items())
        out("Sandbox test codes (each scan makes a fresh single-use code of that kind):")
        for i, (name, scenario) in enumerate(codes, 1):
            out(f"  {i:2}. {name:<36} 28{scenario}...")
        out(HELP)
        last_paid: dict[str, Any] | None = None
        while True:
            out(_lines(stage))
            try:
                line = read("pos> ").strip()
            except EOFError:
                break
            if line in ("q", "quit", "exit"):
                break
            if line in ("x", "z"):
                r = stage.till("POST" if line == "z" else "GET", f"/v1/reports/{line}", manager=line == "z")
                for c in r.json().get("currencies", []):
                    out(f"  {c['currency']}: sales {c['sales']['count']} {c['sales']['amount']['text']}, "
                        f"refunds {c['refunds']['count']} {c['refunds']['amount']['text']}, net {c['net']['text']}")
                continue
            if line == "r":
                if not last_paid:
                    out("  no paid sale yet")
                    continue
                # What is left now, not what the sale was: earlier refunds count.
                view = stage.sale(last_paid["id"])
                left = Money(view["amount"]["value"] - view["refunded"]["value"], view["amount"]["currency"])
                if left.minor <= 0:
                    out("  that sale is refunded in full")
                    continue
                amount = read(f"refund amount (up to {left.major_str()} {left.currency})> ").strip()
                r = stage.till("POST", "/v1/refunds", {"saleId": last_paid["id"], "amount": amount or None},
                               manager=True)
                body = r.json()
                out(f"  {body.get('state') or body.get('title')}: {body.get('detail', '')}")
                if body.get("state") == "REFUNDED":
                    # The refund's own receipt, now: left in the printer it came out under the next sale.
                    for receipt in stage.new_receipts(1, timeout=5):
                        out(receipt)
                continue
            if not line:
                continue
            if line == "qr" or line.startswith("qr "):
                amount = line[2:].strip() or read("QR sale amount> ").strip()
                if v1 is None:
                    out("Starting a second terminal speaking Alipay's v1 API (its own sandbox and daemon)...")
                    v1 = later.enter_context(_qr_stage())
                _qr_sale(v1, amount, read, out)
                continue
            r = stage.till("POST", "/v1/sales", {"amount": line})
            if r.status_code != 201:
                out(f"  refused: {r.json().get('title')}: {r.json().get('detail')}")
                continue
            sale = r.json()
            out(_lines(stage))
            pick = read(f"scan which code (1-{len(codes)}, or type a code)> ").strip()
            if pick.isascii() and pick.isdigit() and 1 <= int(pick) <= len(codes):
                code = make_code(codes[int(pick) - 1][1])
            else:
                code = pick
            stage.scan(code)
            view = _follow(stage, sale["id"], out)
            if view["state"] == "PAID":
                last_paid = view
                for receipt in stage.new_receipts(1, timeout=5):
                    out(receipt)
    return 0
