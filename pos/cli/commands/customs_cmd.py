"""`pos customs declare|status`: customs declarations of PAID AlipayCN payments (the manager).

The declarationRequestId is committed to the journal before the first call;
repeating the same command after a timeout or a crash repeats the same
declaration (README "Customs declarations").
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pos.backoffice.customs import Customs, CustomsRequest
from pos.config import load_config
from pos.gateway.ams.backoffice import BackOffice
from pos.gateway.ams.client import AmsGateway
from pos.journal.backoffice import BackOfficeJournal, Declaration
from pos.journal.journal import Journal, journal_path

__all__ = ["register", "print_declaration", "print_sale_declarations"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    customs = subparsers.add_parser(
        "customs", help="declare AlipayCN payments to Chinese customs (v1 API)",
        description="Customs declarations of PAID AlipayCN payments over the v1 API ([gateway] protocol = ams).")
    sub = customs.add_subparsers(dest="customs_command", metavar="ACTION", required=True)
    dec = sub.add_parser("declare", help="declare one paid sale to customs",
                         description="Declare a PAID AlipayCN sale. The declaration id is journaled before it is "
                                     "sent: after a timeout or a crash run the same command again, it repeats the "
                                     "same declaration.")
    dec.add_argument("sale", metavar="SALE_ID", help="sale number or merchantTransId (see 'pos journal list')")
    dec.add_argument("--customs", required=True, metavar="CODE", help="customs code, e.g. ZONGSHU or SHANGHAI_CBT")
    dec.add_argument("--merchant-customs-code", required=True, metavar="CODE",
                     help="the merchant's registration code at customs")
    dec.add_argument("--merchant-customs-name", required=True, metavar="NAME",
                     help="the merchant's registered name at customs")
    dec.add_argument("--amount", default="", metavar="AMOUNT",
                     help="CNY amount to declare, e.g. 100.00 (default: the sale's amount when it is in CNY)")
    dec.add_argument("--split", action="store_true",
                     help="a split declaration: one part of the order (more than one declaration per sale)")
    dec.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    dec.set_defaults(func=run_declare)
    st = sub.add_parser("status", help="ask customs' decision on a sale's declarations",
                        description="Ask Alipay for the status of every declaration of the sale and keep each "
                                    "change in the journal.")
    st.add_argument("sale", metavar="SALE_ID", help="sale number or merchantTransId")
    st.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    st.set_defaults(func=run_status)


@contextmanager
def _customs(args: argparse.Namespace) -> Iterator[tuple[Customs, ZoneInfo]]:
    cfg = load_config(args.config, require_keys=True).config
    journal = Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                           timezone=cfg.terminal.timezone, create=False)
    back = BackOffice(AmsGateway.from_config(cfg)) if cfg.gateway.protocol == "ams" else None
    try:
        yield Customs(journal, back, wallet=cfg.terminal.wallet, protocol=cfg.gateway.protocol), \
            ZoneInfo(cfg.terminal.timezone)
    finally:
        if back is not None:
            back.close()
        journal.close()


def _time(at: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, tz=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def print_declaration(d: Declaration, tz: ZoneInfo) -> None:
    status = d.customs_status or ("(not asked yet)" if d.state == "DECLARED" else "-")
    print(f"  {d.declaration_request_id}  {d.state:9}  customs {d.customs_code}  {d.amount.receipt()}"
          + ("  split" if d.split_order else "") + f"  status {status}  {_time(d.updated_at, tz)}")
    extra = [x for x in (d.customs_payment_id and f"customsPaymentId {d.customs_payment_id}",
                         d.result_code and d.result_code != "SUCCESS" and f"{d.result_code} {d.result_message}".strip())
             if x]
    if extra:
        print("    " + "; ".join(str(x) for x in extra))


def print_sale_declarations(journal: Journal, sale_id: int, tz: ZoneInfo) -> None:
    """The sale's customs declarations and their history (for `pos journal show`)."""
    store = BackOfficeJournal(journal.db, journal.install_id)
    declarations = store.declarations_of_sale(sale_id)
    if not declarations:
        return
    print("customs declarations:")
    for d in declarations:
        print_declaration(d, tz)
        for e in store.events("declaration", d.declaration_request_id):
            print(f"      {_time(e.at, tz)}  {e.what:10} {e.state:9} {e.detail}")


def run_declare(args: argparse.Namespace) -> int:
    req = CustomsRequest(args.customs, args.merchant_customs_code, args.merchant_customs_name, args.amount,
                         args.split)
    with _customs(args) as (customs, tz):
        outcome = customs.declare(args.sale, req)
        print(("repeated: " if outcome.repeated else "") + outcome.message)
        print_declaration(outcome.declaration, tz)
        if outcome.declaration.state == "SENDING":
            return 3
        return 1 if outcome.declaration.state == "REFUSED" else 0


def run_status(args: argparse.Namespace) -> int:
    with _customs(args) as (customs, tz):
        declarations = customs.status(args.sale)
        sale = customs.sale(args.sale)
        if not declarations:
            print(f"sale {sale.sale_id}: no customs declaration")
            return 0
        print(f"sale {sale.sale_id} ({sale.merchant_trans_id}): {len(declarations)} declaration(s)")
        for d in declarations:
            print_declaration(d, tz)
        return 0
