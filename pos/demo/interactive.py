"""`pos demo --interactive`: play cashier at the keyboard against the sandbox.

The same Stage as the narrated demo (sandbox, device twins, `pos run`); you
type the amount and pick a sandbox test code, and see both displays and the
printed receipt as the daemon drives them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pos.core.money import Money
from pos.demo.stage import Stage
from pos.demo.story import SCENARIO_CODES, pad
from pos.sandbox.scenarios import make_code

__all__ = ["interactive"]

HELP = """Commands:
  12.50        start a sale of that amount (the till sends it), then pick a test code
  r            refund part of the last paid sale (manager)
  x / z        X report (running totals) / Z report (close the day)
  q            quit"""


def _lines(stage: Stage) -> str:
    cashier, customer = stage.displays()
    return (f"  cashier  |{pad(cashier[0])}|   customer |{pad(customer[0])}|\n"
            f"           |{pad(cashier[1])}|            |{pad(customer[1])}|")


def interactive(read: Callable[[str], str] = input, out: Callable[[str], None] = print) -> int:
    out("Starting the sandbox, device twins and the daemon...")
    with Stage(payment={"query_first_delay": 0.5, "query_interval_min": 1.0, "query_interval_max": 1.5,
                        "query_deadline": 10.0, "cancel_interval": 0.5}) as stage:
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
            seen = ""
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                view = stage.sale(sale["id"])
                shown = _lines(stage)
                if shown != seen:
                    out(f"  [{view['state']}]\n{shown}")
                    seen = shown
                if view["final"]:
                    break
                time.sleep(0.3)
            if view["state"] == "PAID":
                last_paid = view
                for receipt in stage.new_receipts(1, timeout=5):
                    out(receipt)
    return 0
