"""`pos demo`'s story: nine scenarios played on Stages and narrated as the store sees them.

The story drives the till interface, the scanner and the keypad the way a
cashier and a manager would, and prints what the two displays and the
receipt printer show. `play` returns 0 only when every scenario ended as the
product's rules say it must, so the demo doubles as a smoke test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests

from devices.keypad import Key
from devices.messages import Catalogue, text_width
from pos.demo.stage import DEMO_PIN, Stage
from pos.sandbox.scenarios import make_code

__all__ = ["SCENARIO_CODES", "pad", "play"]

# The sandbox's test codes (README "Gateway and sandbox"): "28" + scenario + 14 digits.
SCENARIO_CODES = {
    "paid at once": "00", "insufficient balance": "01", "risk reject": "02", "expired code": "03",
    "confirm in the wallet": "10", "charged but the answer is lost": "11", "never created": "12",
    "query errors": "13", "cancel answers U first": "14", "cancel refused": "15",
    "bad response signature": "16", "success after the client gave up": "17", "never confirmed": "18",
}


def pad(text: str, columns: int = 20) -> str:
    """Pad to display columns (a CJK character takes two)."""
    return text + " " * max(0, columns - text_width(text))


def _box(title: str, lines: tuple[str, str]) -> str:
    return f"    {title:<9}|{pad(lines[0])}|\n    {'':<9}|{pad(lines[1])}|"


class _Narrator:
    def __init__(self, stage: Stage, out: Callable[[str], None]) -> None:
        self.stage, self.out = stage, out

    def say(self, text: str = "") -> None:
        self.out(text)

    def screens(self, note: str = "") -> None:
        cashier, customer = self.stage.displays()
        if note:
            self.out(f"  {note}")
        self.out(_box("cashier", cashier))
        self.out(_box("customer", customer))

    def receipt(self, text: str) -> None:
        width = max([42] + [len(line) for line in text.splitlines()])
        self.out("    ." + "-" * (width + 2) + ".")
        for line in text.splitlines():
            self.out(f"    | {line:<{width}} |")
        self.out("    '" + "-" * (width + 2) + "'")


def _scenes(stage: Stage, n: _Narrator, expect: Callable[[str, Any, Any], None]) -> None:
    """The eight scenarios; raises when the terminal does not do what the story says."""
    n.say(f"  daemon ready; till interface on {stage.url}; sandbox gateway on {stage.sandbox_url}")
    n.screens()

    n.say("\n1. A sale paid at once")
    n.say("   The till sends 12.50; the cashier scans the customer's code.")
    sale = stage.start_sale("12.50", reference="till-0001", orderTitle="Flat white x2")
    stage.wait_display(lambda lines: "Scan" in lines[0])
    n.screens("the terminal asks for the code:")
    stage.scan(make_code("00"))
    paid = stage.wait_sale(sale["id"])
    n.say(f"   -> {paid['state']}  merchantTransId {paid['merchantTransId']}  acquirementId {paid['acquirementId']}")
    expect("sale 1", paid["state"], "PAID")
    n.screens()
    n.say("   The receipt (its QR code carries the merchantTransId, for refunds):")
    first_receipt = stage.new_receipts(1)
    n.receipt(first_receipt[0] if first_receipt else "(no receipt printed)")

    n.say("\n2. A decline: the customer's balance is not enough")
    sale = stage.start_sale("48.00", orderTitle="Groceries")
    stage.scan(make_code("01"))
    declined = stage.wait_sale(sale["id"])
    n.say(f"   -> {declined['state']}: cashier reads {declined['message']['cashier']}")
    expect("sale 2", declined["state"], "DECLINED")
    n.screens()

    n.say("\n3. The customer confirms in the wallet: unknown at first, then queries, then paid")
    sale = stage.start_sale("7.80", orderTitle="Cake")
    stage.scan(make_code("10"))
    stage.wait_display(lambda lines: "Checking" in lines[0], timeout=10)
    n.screens("while the answer is unknown:")
    confirmed = stage.wait_sale(sale["id"])
    expect("sale 3", confirmed["state"], "PAID")
    n.say(f"   -> {confirmed['state']} after the wallet confirmed")
    n.screens()
    stage.new_receipts(1)

    n.say("\n4. The customer never confirms: the terminal queries until its time limit, then cancels")
    sale = stage.start_sale("23.00", orderTitle="Lunch set")
    stage.scan(make_code("18"))
    stage.wait_display(lambda lines: "Checking" in lines[0], timeout=10)
    n.screens("checking:")
    stage.wait_display(lambda lines: "Cancelling" in lines[0] or "cancelled" in lines[0].lower(), timeout=20)
    n.screens("past the query time limit the terminal sends payCancel:")
    cancelled = stage.wait_sale(sale["id"])
    expect("sale 4", cancelled["state"], "CANCELLED")
    n.say(f"   -> {cancelled['state']}: no money was taken")

    n.say("\n5. A partial refund by the manager, on the terminal's keypad with a PIN")
    n.say(f"   REFUND, PIN {DEMO_PIN}, scan the receipt of sale 1, type 5.00, ENTER")
    stage.press(Key.REFUND)
    stage.wait_display(lambda lines: "PIN" in lines[0].upper(), timeout=5)
    stage.type(DEMO_PIN)
    stage.press(Key.ENTER)
    stage.wait_display(lambda lines: "receipt" in (lines[0] + lines[1]).lower() or "scan" in lines[0].lower(),
                       timeout=5)
    n.screens("PIN accepted:")
    stage.scan_receipt(paid["merchantTransId"])
    stage.wait_display(lambda lines: "refund" in lines[0].lower(), timeout=5)
    n.screens("the sale is found:")
    stage.type("5.00")
    stage.press(Key.ENTER)
    refunded = _wait_state_refund(stage, paid["id"])
    n.say(f"   -> refund {refunded}")
    expect("refund", refunded, "REFUNDED")
    # The refund's outcome belongs on the displays, whichever sale it refunds.
    done = Catalogue.load("en").cashier("refund_done", amount="")[0]
    stage.wait_display(lambda lines: lines[0] == done, timeout=5)
    n.screens()
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no receipt printed)")

    n.say("\n6. A reprint of sale 1 (REPRINT, PIN, scan the receipt)")
    stage.press(Key.REPRINT)
    stage.wait_display(lambda lines: "PIN" in lines[0].upper(), timeout=5)
    stage.type(DEMO_PIN)
    stage.press(Key.ENTER)
    stage.wait_display(lambda lines: "receipt" in (lines[0] + lines[1]).lower(), timeout=5)
    stage.scan_receipt(paid["merchantTransId"])
    receipts = stage.new_receipts(1)
    reprint = receipts[0] if receipts else ""
    expect("reprint marked", "REPRINT" in reprint, True)
    n.receipt(reprint or "(no receipt printed)")

    n.say("\n7. The Z report closes the business day (manager token on the till interface)")
    report = stage.till("POST", "/v1/reports/z", manager=True).json()
    for c in report.get("currencies", []):
        n.say(f"   {c['currency']}: sales {c['sales']['count']} = {c['sales']['amount']['text']}, "
              f"refunds {c['refunds']['count']} = {c['refunds']['amount']['text']}, "
              f"cancels {c['cancels']['count']}, declines {c['declines']['count']}, "
              f"net {c['net']['text']}")
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no report printed)")

    ledger = stage.ledger()
    charged = [p for p in ledger.get("payments", []) if p.get("status") == "SUCCESS"]
    n.say(f"\nThe sandbox's ledger agrees: {len(charged)} payments charged, "
          f"{len(ledger.get('refunds', []))} refund(s).")

    n.say("\n8. End of day with Alipay: the reconciliation files over SFTP, matched against the journal")
    day = datetime.now(ZoneInfo(stage.timezone)).date().isoformat()
    published = stage.publish_reconciliation(day)
    n.say(f"   Alipay publishes {len(published)} files on its SFTP server (host key pinned in [reconcile]).")
    n.say(f"   $ pos reconcile fetch --date {day}")
    fetched = stage.pos("reconcile", "fetch", "--date", day)
    for line in fetched.stdout.splitlines():
        n.say(f"   {line}")
    expect("reconciliation fetch", fetched.returncode, 0)
    n.say(f"   $ pos reconcile report --date {day} --print")
    report_run = stage.pos("reconcile", "report", "--date", day, "--print")
    for line in report_run.stdout.splitlines():
        n.say(f"   {line}")
    expect("reconciliation report", report_run.returncode, 0)
    expect("everything matches", "Everything matches." in report_run.stdout, True)
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no summary printed)")


_SLIP_QR = re.compile(r"\[QR: ([^\]]+)\]")


def _qr_scene(stage: Stage, n: _Narrator, expect: Callable[[str, Any, Any], None]) -> None:
    """Scene 9, on a terminal speaking Alipay's v1 API: the customer scans the terminal's code."""
    n.say(f"  a second terminal, [gateway] protocol = \"ams\"; sandbox on {stage.sandbox_url}, "
          f"notifications to 127.0.0.1:{stage.notify_port}")
    n.say("   The till sends 9.90 with \"method\": \"qr\": the customer's phone cannot show a code.")
    sale = stage.start_sale("9.90", method="qr", orderTitle="Iced tea")
    stage.wait_display(lambda lines: "slip" in lines[0], timeout=10)
    n.screens("the terminal prints its own code:")
    slips = stage.new_receipts(1)
    slip = slips[0] if slips else ""
    n.receipt(slip or "(no slip printed)")
    found = _SLIP_QR.search(slip)
    expect("a QR on the slip", found is not None, True)
    if found is None:
        return
    url = found.group(1)
    n.say(f"   The customer's wallet opens {url} (the sandbox's cashier page) and presses Pay:")
    page = requests.post(url + "/pay", timeout=10)
    expect("the wallet paid", "data-status='SUCCESS'" in page.text, True)
    done = stage.wait_sale(sale["id"], 20)
    by = ("settled by Alipay's notification"
          if stage.logged(f"merchantTransId={done['merchantTransId']} outcome=applied")
          else "found paid by the terminal's query")
    n.say(f"   -> {done['state']} ({by})  merchantTransId {done['merchantTransId']}")
    expect("sale 9", done["state"], "PAID")
    n.screens()
    receipts = stage.new_receipts(1)
    n.receipt(receipts[0] if receipts else "(no receipt printed)")


def play(out: Callable[[str], None] = print) -> int:
    """Run the nine demo scenarios; returns 0 when every one ended as it should."""
    started = time.monotonic()
    n = _Narrator(Stage(payment={"query_first_delay": 0.5, "query_interval_min": 1.0, "query_interval_max": 1.5,
                                 "query_deadline": 6.0, "cancel_interval": 0.5}), out)
    problems: list[str] = []

    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: expected {want}, got {got}")
            n.say(f"  !! {what}: expected {want}, got {got}")

    n.say("pos demo: a sandbox gateway, pty device twins and the real daemon (`pos run`), all on 127.0.0.1.")
    try:
        with n.stage as stage:
            try:
                _scenes(stage, n, expect)
            except (AssertionError, RuntimeError, requests.RequestException) as exc:
                problems.append(str(exc))
                n.say(f"\n  !! the demo stopped: {exc}")
                n.say("  last lines of the daemon's log:")
                for line in stage.daemon_log().splitlines()[-15:]:
                    n.say(f"    {line}")
    except (RuntimeError, OSError) as exc:  # the stage itself did not come up
        problems.append(str(exc))
        n.say(f"pos demo: could not start: {exc}")
    if not problems:
        n.say("\n9. A QR sale: the customer scans the code the terminal prints (Alipay's v1 API, order code)")
        qr = _Narrator(Stage(protocol="ams", notify=True,
                             payment={"query_first_delay": 5.0, "query_interval_min": 5.0,
                                      "query_interval_max": 6.0, "query_deadline": 30.0}), out)
        try:
            with qr.stage as stage:
                try:
                    _qr_scene(stage, qr, expect)
                except (AssertionError, RuntimeError, requests.RequestException) as exc:
                    problems.append(str(exc))
                    n.say(f"\n  !! the demo stopped: {exc}")
        except (RuntimeError, OSError) as exc:
            problems.append(str(exc))
            n.say(f"pos demo: could not start the v1 terminal: {exc}")
    took = time.monotonic() - started
    if problems:
        n.say(f"\npos demo: {len(problems)} scenario(s) did not end as expected ({took:.0f} s).")
        return 1
    n.say(f"\npos demo: all nine scenarios done in {took:.0f} s.")
    return 0


def _wait_state_refund(stage: Stage, sale_id: str, timeout: float = 20.0) -> str:
    """The state of the sale's last refund once it is final or pending at the gateway."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        refunds = stage.sale(sale_id).get("refunds", [])
        if refunds and (refunds[-1]["final"] or refunds[-1]["state"] == "REFUND_PENDING"):
            return str(refunds[-1]["state"])
        time.sleep(0.1)
    return "no refund"
