"""Chain-wide reconciliation: Alipay's files of a day against every terminal's sales and refunds.

The matching is the terminal's own (pos/reconcile/match.py), given the
items of all terminals at once, so a row another till took is matched instead
of "on Alipay's side only". Each item of the result names the store and the
terminal that has it, or, for a row no terminal has, the terminal its
merchantTransId names (ids are `<terminal>-<YYYYMMDD>-<install>-<seq>`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pos.core.money import Money
from pos.core.records import RefundRecord, RefundState, SaleRecord, SaleState
from pos.hq.db import HqDB, HqError
from pos.reconcile.match import Class, reconcile
from pos.reconcile.parse import AlipayRow, FileError, parse_file
from pos.reconcile.store import check_day, files_of_day

__all__ = ["chain_reconcile"]

_OUR_ID = re.compile(r"^(?P<terminal>[A-Za-z0-9]+)-\d{8}-[A-Z0-9]+-R?\d{6}$")


def _records(items: list[dict[str, Any]]) -> tuple[list[SaleRecord], list[RefundRecord]]:
    sale_ids: dict[tuple[str, str], int] = {}
    sales: list[SaleRecord] = []
    for n, it in enumerate((i for i in items if i["item_kind"] == "sale"), start=1):
        sale_ids[(it["terminal_id"], it["ref"])] = n
        sales.append(SaleRecord(
            sale_id=n, merchant_trans_id=it["ref"], amount=Money(int(it["amount_minor"]), it["currency"]),
            code_masked=it["code_masked"] or "", order_title="", reference="", state=SaleState(it["state"]),
            created_at=it["created_at"], updated_at=it["updated_at"], local_date=it["local_date"].isoformat(),
            scanned_at=it["created_at"], acquirement_id=it["acquirement_id"]))
    refunds = [RefundRecord(
        refund_id=n, sale_id=sale_ids.get((it["terminal_id"], it["sale_ref"]), 0), merchant_refund_id=it["ref"],
        acquirement_id=it["acquirement_id"] or "", amount=Money(int(it["amount_minor"]), it["currency"]), reason="",
        state=RefundState(it["state"]), created_at=it["created_at"], updated_at=it["updated_at"],
        local_date=it["local_date"].isoformat())
        for n, it in enumerate((i for i in items if i["item_kind"] == "refund"), start=1)]
    return sales, refunds


def chain_reconcile(db: HqDB, day: str, folder: Path) -> dict[str, Any]:
    """Match the day's files in `folder` against every terminal; stores and returns the result.

    The result keeps the totals per currency, the counts per store, terminal and currency, and
    the items to look at (each naming its store and terminal); matched items are only counted."""
    try:
        check_day(day)
    except ValueError as exc:
        raise HqError(str(exc)) from None
    paths = files_of_day(folder, day)
    if not paths:
        raise HqError(f"no reconciliation files of {day} in {folder}: fetch them first "
                      "(pos hq reconcile --config FILE fetches them over SFTP)")
    by_role: dict[str, list[AlipayRow]] = {"transaction": [], "settlement": [], "summary": []}
    for p in paths:
        try:
            parsed = parse_file(p.name, p.read_text(encoding="utf-8-sig"))
        except (FileError, OSError, UnicodeDecodeError) as exc:
            raise HqError(f"{p}: {exc}: the day is not reconciled; fetch the file again") from None
        by_role[parsed.role].extend(parsed.rows)
    items = db.items_for_day(day, [r.merchant_trans_id for r in by_role["transaction"]])
    where = {it["ref"]: (it["store_id"], it["terminal_id"]) for it in items}
    sales, refunds = _records(items)
    rec = reconcile(day, by_role["transaction"], by_role["settlement"], sales, refunds,
                    files=[p.name for p in paths], summary=by_role["summary"])
    result = rec.as_json()
    per: dict[tuple[str, str, str], dict[str, Any]] = {}

    def entry(ref: str, currency: str) -> tuple[str, str, dict[str, Any]]:
        store, terminal = where.get(ref, ("", ""))
        if not terminal:
            named = _OUR_ID.match(ref)
            terminal = named.group("terminal") if named else ""
        store, terminal = store or "?", terminal or "?"
        found = per.setdefault((store, terminal, currency), {
            "counts": {c.value: 0 for c in Class}, "paid": 0, "refunded": 0, "fees": 0, "netSettlement": 0})
        return store, terminal, found

    rows = []
    for item, shown in zip(rec.items, result["items"], strict=True):  # type: ignore[call-overload]
        store, terminal, totals = entry(item.merchant_trans_id, item.currency)
        totals["counts"][item.cls.value] += 1
        if item.cls is Class.MATCHED and item.theirs is not None:
            totals["paid" if item.kind == "payment" else "refunded"] += item.theirs.minor
        if item.cls not in (Class.MATCHED, Class.CANCELLED):   # kept: what a person has to look at
            rows.append({**shown, "store": store, "terminal": terminal})
    for row in by_role["settlement"]:
        if row.settlement is not None:
            _, _, totals = entry(row.merchant_trans_id, row.settlement.currency)
            totals["fees"] += row.fee.minor if row.fee else 0
            totals["netSettlement"] += row.settlement.minor
    result["itemCount"] = len(rec.items)
    result["items"] = rows   # the rows to look at; matched and cancelled ones are counted in perTerminal
    result["perTerminal"] = [{"store": s, "terminal": t, "currency": c, **n} for (s, t, c), n in sorted(per.items())]
    db.store_reconciliation(day, result)
    return result
