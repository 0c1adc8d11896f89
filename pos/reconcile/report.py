"""A day's reconciliation as text for the screen, CSV, a short receipt-printer summary and JSON. Pure."""

from __future__ import annotations

import csv
import io

from pos.core.money import Money
from pos.reconcile.match import Class, Reconciliation

__all__ = ["CLASS_TITLES", "render_text", "render_csv", "printer_rows", "printer_lines", "as_json"]

CLASS_TITLES = {
    Class.MATCHED: "matched",
    Class.CANCELLED: "cancelled/reversed",
    Class.ALIPAY_ONLY: "on Alipay's side only",
    Class.OURS_ONLY: "in our journal only",
    Class.MISMATCH: "amount/currency differ",
    Class.OPEN: "still open here",
}

CSV_COLUMNS = ["date", "class", "kind", "currency", "id", "acquirementId", "ours", "alipay", "ourState",
               "alipayStatus", "where", "advice"]


def _m(minor: int, currency: str) -> str:
    return Money(minor, currency).receipt()


def render_text(rec: Reconciliation) -> str:
    out = [f"Reconciliation with Alipay for {rec.date}"]
    out.append("Files: " + (", ".join(rec.files) if rec.files else "none"))
    for t in sorted(rec.totals.values(), key=lambda t: t.currency):
        out.append("")
        out.append(f"{t.currency}:")
        for cls in Class:
            out.append(f"  {CLASS_TITLES[cls]:<24}{t.counts[cls.value]:>5}")
        out.append(f"  {'payments (matched)':<24}{_m(t.paid, t.currency):>16}")
        out.append(f"  {'refunds (matched)':<24}{_m(t.refunded, t.currency):>16}")
        if t.settlement_rows:
            out.append(f"  {'fees':<24}{_m(t.fees, t.currency):>16}")
            out.append(f"  {'net settlement':<24}{_m(t.settled, t.currency):>16}")
        else:
            out.append("  no settlement rows for this currency in the day's files")
        if t.summary_net is not None:
            out.append(f"  {'summary file: net':<24}{_m(t.summary_net, t.currency):>16}")
            out.append(f"  {'summary file: fees':<24}{_m(t.summary_fees or 0, t.currency):>16}")
    if rec.other_store:
        out.append(f"\n{rec.other_store} row(s) of other stores were left out")
    if rec.other_terminal:
        out.append(f"{rec.other_terminal} row(s) of this merchant's other terminals were left out")
    problems = rec.problems
    out.append("")
    if not problems:
        out.append("Everything matches.")
    else:
        out.append(f"{len(problems)} item(s) need attention:")
        for i in problems:
            ours = i.ours.receipt() if i.ours else "-"
            theirs = i.theirs.receipt() if i.theirs else "-"
            out.append(f"- [{CLASS_TITLES[i.cls]}] {i.kind} {i.merchant_trans_id}: ours {ours} ({i.our_state}), "
                       f"Alipay {theirs} ({i.their_status}) [{i.where}]")
            out.append(f"    what to do: {i.advice}")
    return "\n".join(out) + "\n"


def render_csv(rec: Reconciliation) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i in rec.items:
        w.writerow([rec.date, i.cls.value, i.kind, i.currency, i.merchant_trans_id, i.acquirement_id,
                    i.ours.major_str() if i.ours else "", i.theirs.major_str() if i.theirs else "",
                    i.our_state, i.their_status, i.where, i.advice])
    return buf.getvalue()


def printer_rows(rec: Reconciliation) -> list[tuple[str, str]]:
    """A short summary for the receipt printer as (label, value) rows: counts, money, ids to check."""
    rows: list[tuple[str, str]] = [("Day", rec.date)]
    for t in sorted(rec.totals.values(), key=lambda t: t.currency):
        rows.append((f"-- {t.currency}", ""))
        for cls in Class:
            n = t.counts[cls.value]
            if n:
                rows.append((CLASS_TITLES[cls], str(n)))
        rows += [("paid", _m(t.paid, t.currency)), ("refunded", _m(t.refunded, t.currency)),
                 ("fees", _m(t.fees, t.currency)), ("net settlement", _m(t.settled, t.currency))]
    problems = rec.problems
    rows.append(("ALL MATCHED" if not problems else f"{len(problems)} TO CHECK", ""))
    for i in problems[:10]:
        rows.append((i.cls.value, i.merchant_trans_id))
    if len(problems) > 10:
        rows.append((f"{len(problems) - 10} more", "pos reconcile report"))
    return rows


def printer_lines(rec: Reconciliation, width: int = 42) -> list[str]:
    """The printer summary as plain lines of at most `width` characters (for logs and tests)."""
    out = []
    for label, value in printer_rows(rec):
        gap = max(1, width - len(label) - len(value))
        out.append((label + " " * gap + value)[:width] if value else label[:width])
    return out


def as_json(rec: Reconciliation) -> dict[str, object]:
    return rec.as_json()
