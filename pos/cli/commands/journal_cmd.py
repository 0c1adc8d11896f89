"""`pos journal list|show|resolve`: the payment journal (for the manager and the technician).

`list` and `show` are read-only: they open `<terminal.state_dir>/journal.db` without
creating it. Payment codes appear masked (last 4 digits), as they are stored.
`resolve` settles a sale charged after the cashier said "No goods" (PAID_LATE): it asks
the running daemon (POST /v1/sales/{id}/resolve on [ecr] listen, with the manager token),
which alone runs the payments.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pos.cli.commands.customs_cmd import print_sale_declarations
from pos.config import load_config
from pos.core.errors import UsageError, UserError
from pos.core.money import Money
from pos.core.records import RefundRecord, SaleRecord
from pos.journal.journal import Journal, journal_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journal = subparsers.add_parser(
        "journal", help="list and show sales and refunds in the payment journal",
        description="Read the payment journal (<terminal.state_dir>/journal.db). Nothing is changed.")
    sub = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="one line per sale, with its refunds",
                         description="List sales (oldest first) with their state and refunds. "
                                     "--open lists only what is not settled: sales in progress, "
                                     "MANUAL_REVIEW, and open refunds (REFUND_PENDING...).")
    lst.add_argument("--open", action="store_true", help="only sales and refunds not in a final state")
    lst.add_argument("--date", metavar="YYYY-MM-DD", help="only sales of this local date")
    lst.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    lst.set_defaults(func=run_list)
    show = sub.add_parser("show", help="everything about one sale or refund, with its history",
                          description="Show one sale (by number or merchantTransId) or refund (R<number> "
                                      "or merchantRefundId) and every transition it went through.")
    show.add_argument("id", metavar="ID", help="sale number, merchantTransId, R<refund number> or merchantRefundId")
    show.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    show.set_defaults(func=run_show)
    resolve = sub.add_parser(
        "resolve", help="settle a sale charged after 'No goods' (PAID_LATE): refund it now, or goods were given",
        description="A PAID_LATE sale was charged after the cashier told the customer 'No goods' and waits "
                    "on the manager's list ([payment] late_success = \"manager\", or its refund was "
                    "declined). --refund gives the money back now (a full refund under a fresh "
                    "merchantRefundId); --goods-given records that the customer got the goods (the sale "
                    "becomes PAID). The running daemon does it; the audit log keeps who and when.")
    resolve.add_argument("id", metavar="ID", help="sale number, merchantTransId or till sale id")
    how = resolve.add_mutually_exclusive_group(required=True)
    how.add_argument("--refund", dest="action", action="store_const", const="refund",
                     help="refund it in full now")
    how.add_argument("--goods-given", dest="action", action="store_const", const="goods_given",
                     help="the customer got the goods: the sale becomes PAID")
    resolve.add_argument("--by", metavar="NAME", default="",
                         help="who settles it, for the audit log (default: your login name)")
    resolve.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    resolve.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                         help="how long to wait for the daemon's answer (a refund waits for Alipay's)")
    resolve.set_defaults(func=run_resolve)


def _open(args: argparse.Namespace) -> tuple[Journal, ZoneInfo]:
    cfg = load_config(args.config).config
    args.support_contact = cfg.manager.support_contact
    path = journal_path(cfg.terminal.state_dir)
    journal = Journal.open(path, terminal_id=cfg.terminal.terminal_id, timezone=cfg.terminal.timezone,
                           create=False)
    return journal, ZoneInfo(cfg.terminal.timezone)


# Items a manager must settle with Alipay's support: their ids are printed with the contact.
_NEEDS_SUPPORT = {"MANUAL_REVIEW", "REVERSING", "PAID_LATE", "REFUND_PENDING"}
_STATE_NOTE = {"PAID_LATE": " (customer charged, no goods given: a manager must settle it)"}


def _print_support(args: argparse.Namespace) -> None:
    print(f"{'support:':20}{args.support_contact}")
    print(f"{'':20}give them the merchantTransId / merchantRefundId, the acquirementId and the")
    print(f"{'':20}reqMsgIds and codes in the history below")


def _time(at: float | None, tz: ZoneInfo) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, tz=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def run_list(args: argparse.Namespace) -> int:
    if args.date is not None:
        try:
            datetime.strptime(args.date, "%Y-%m-%d")
        except ValueError:
            raise UsageError(f"--date {args.date!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-22") from None
    journal, tz = _open(args)
    try:
        sales = journal.list_sales(open_only=False, date=args.date)
        refunds = journal.list_refunds()
        by_sale: dict[int, list[RefundRecord]] = {}
        for r in refunds:
            by_sale.setdefault(r.sale_id, []).append(r)
        if args.open:
            open_refund_sales = {r.sale_id for r in refunds if not r.is_final}
            sales = [s for s in sales if not s.is_final or s.sale_id in open_refund_sales]
        header = f"{'#':>5}  {'time':19}  {'merchantTransId':36}  {'amount':>14}  {'code':>8}  state"
        print(header)
        for s in sales:
            print(f"{s.sale_id:>5}  {_time(s.created_at, tz):19}  {s.merchant_trans_id:36}  "
                  f"{s.amount.receipt():>14}  {s.code_masked[-8:]:>8}  {s.state.value}"
                  + ("  (resolved later)" if s.resolved_by_corrector else ""))
            for r in by_sale.get(s.sale_id, []):
                if args.open and r.is_final:
                    continue
                print(f"{'R' + str(r.refund_id):>5}  {_time(r.created_at, tz):19}  {r.merchant_refund_id:36}  "
                      f"{'-' + r.amount.receipt():>14}  {'':>8}  {r.state.value}")
        what = "open items" if args.open else "sales"
        print(f"{len(sales)} {what}" + (f" on {args.date}" if args.date else ""))
        return 0
    finally:
        journal.close()


def run_show(args: argparse.Namespace) -> int:
    journal, tz = _open(args)
    try:
        key: str = args.id
        refund = None
        sale: SaleRecord | None = None
        if key[:1] in "Rr" and key[1:].isascii() and key[1:].isdigit():
            refund = journal.get_refund(int(key[1:]))
        else:
            sale = journal.get_sale(key)
            if sale is None and not (key.isascii() and key.isdigit()):
                refund = journal.get_refund(key)
        if sale is None and refund is None:
            raise UserError(f"no sale or refund {key!r} in {journal.path}: "
                            "see 'pos journal list' for the numbers and ids")
        if refund is not None:
            _print_refund(refund, tz)
            if refund.state.value in _NEEDS_SUPPORT:
                _print_support(args)
            print("history:")
            _print_events(journal, "refund", refund.refund_id, tz)
            return 0
        assert sale is not None
        rows = [
            ("sale", str(sale.sale_id)), ("merchantTransId", sale.merchant_trans_id),
            ("state", sale.state.value + _STATE_NOTE.get(sale.state.value, "")
             + (" (resolved by the background check)" if sale.resolved_by_corrector else "")),
            ("amount", sale.amount.receipt()), ("payment code", sale.code_masked),
            ("order title", sale.order_title or "-"), ("reference", sale.reference or "-"),
            ("items", sale.goods or "-"),
            ("created", _time(sale.created_at, tz)), ("pay sent", _time(sale.pay_sent_at, tz)),
            ("finished", _time(sale.finished_at, tz)), ("acquirementId", sale.acquirement_id or "-"),
            ("last result", " ".join(x for x in (sale.result_code or "", sale.result_message) if x) or "-"),
            ("queries / cancels", f"{sale.query_count} / {sale.cancel_attempts}"),
        ]
        if sale.pay_amount_minor is not None and sale.pay_currency:
            rows.append(("customer paid", f"{Money(sale.pay_amount_minor, sale.pay_currency).receipt()}"
                                          + (f" (rate {sale.conversion_rate})" if sale.conversion_rate else "")))
        if sale.reversal_id:
            rows.append(("reversal refund", f"{sale.reversal_id} (full amount; attempts {sale.reversal_attempts})"))
            rows.append(("Alipay refundId", sale.reversal_gateway_id or "-"))
        if sale.next_request and not sale.is_final:
            rows.append(("next", f"{sale.next_request} at {_time(sale.next_at, tz)}"))
        for name, value in rows:
            print(f"{name + ':':20}{value}")
        for r in journal.list_refunds(sale_id=sale.sale_id):
            label = f"refund R{r.refund_id}:"
            print(f"{label:20}{r.amount.receipt()} {r.state.value} {r.merchant_refund_id}"
                  + (f" refundId {r.gateway_refund_id}" if r.gateway_refund_id else ""))
        if sale.state.value in _NEEDS_SUPPORT:
            _print_support(args)
        if sale.state.value == "PAID_LATE":
            print(f"{'to settle:':20}pos journal resolve {sale.sale_id} --refund | --goods-given --config ...")
        print("history:")
        _print_events(journal, "sale", sale.sale_id, tz)
        print_sale_declarations(journal, sale.sale_id, tz)
        return 0
    finally:
        journal.close()


def _print_refund(r: RefundRecord, tz: ZoneInfo) -> None:
    rows = [
        ("refund", f"R{r.refund_id}"), ("merchantRefundId", r.merchant_refund_id), ("state", r.state.value),
        ("sale", str(r.sale_id)), ("amount", r.amount.receipt()), ("reason", r.reason or "-"),
        ("created", _time(r.created_at, tz)), ("finished", _time(r.finished_at, tz)),
        ("attempts", str(r.attempts)), ("acquirementId", r.acquirement_id or "-"),
        ("Alipay refundId", r.gateway_refund_id or "-"),
        ("last result", " ".join(x for x in (r.result_code or "", r.result_message) if x) or "-"),
    ]
    for name, value in rows:
        print(f"{name + ':':20}{value}")


def _print_events(journal: Journal, kind: str, item_id: int, tz: ZoneInfo) -> None:
    for e in journal.events(kind, item_id):
        arrow = f"{e.source or '-'} -> {e.dest}"
        print(f"  {_time(e.at, tz)}  {e.trigger:18} {arrow:30} {e.detail}")


def run_resolve(args: argparse.Namespace) -> int:
    """Ask the running daemon to settle a PAID_LATE sale, with the manager token."""
    import getpass
    from pathlib import Path

    import requests

    cfg = load_config(args.config).config
    by = " ".join(args.by.split()) or getpass.getuser()
    if len(by) > 64 or not by.isprintable():
        raise UsageError("--by: at most 64 printable characters (a name), e.g. --by 'Ann Lee'")
    try:
        token = Path(cfg.ecr.manager_token_file).read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read the manager token ([ecr] manager_token_file = "
                        f"{cfg.ecr.manager_token_file}): {exc.strerror}; run as a user who may read it") from None
    key = args.id.strip()
    if not key or len(key) > 64 or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in key):
        raise UsageError(f"{args.id!r} is not a sale: give its number, its merchantTransId or the till's "
                         "sale id ('pos journal list --open' shows them)")
    url = f"http://{cfg.ecr.listen}/v1/sales/{key}/resolve"
    try:
        answer = requests.post(url, json={"action": args.action, "by": f"pos journal resolve, {by}"},
                               headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout)
    except requests.RequestException:
        raise UserError(f"the terminal does not answer on {cfg.ecr.listen}: the running daemon settles the "
                        "sale; start it ('systemctl start pos' or 'pos run') and try again") from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200:
        title = body.get("title") if isinstance(body, dict) else None
        detail = body.get("detail") if isinstance(body, dict) else None
        raise UserError(f"{title or f'HTTP {answer.status_code}'}: {detail or 'the terminal refused'}")
    state = body.get("state", "?")
    refund = body.get("reversal") or {}
    print(f"sale {body.get('merchantTransId') or key}: {state}")
    if refund:
        print(f"refund {refund.get('merchantRefundId')}" + (f", Alipay refundId {refund['refundId']}"
                                                             if refund.get("refundId") else ""))
    if args.action == "refund" and state != "REVERSED":
        print("the refund has no final answer yet: the terminal keeps trying; see 'pos journal show'")
    return 0
