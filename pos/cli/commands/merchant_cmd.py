"""`pos merchant register|status|info`: the store's merchant registration over the v1 API (the technician).

The registrationRequestId is committed to the journal before the first call;
repeating `register` with the same file after a timeout or a crash repeats
the same request (README "Merchant registration").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pos.backoffice.registration import Merchant, sales_refusal
from pos.config import Config, load_config
from pos.gateway.ams.backoffice import REGISTRATION_NOTIFY_PATH, BackOffice
from pos.gateway.ams.client import AmsGateway
from pos.journal.backoffice import Registration
from pos.journal.journal import Journal, journal_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    merchant = subparsers.add_parser(
        "merchant", help="register the store with the acquirer (v1 API) and follow the registration",
        description="Merchant registration over the v1 API ([gateway] protocol = ams), for acquirers that "
                    "require it before payments ([merchant] registration_required).")
    sub = merchant.add_subparsers(dest="merchant_command", metavar="ACTION", required=True)
    reg = sub.add_parser("register", help="send the store's registration from a TOML file",
                         description="Validate the store file (see config/store.example.toml) and send the "
                                     "registration. Its id is journaled before it is sent: after a timeout or a "
                                     "crash run the same command again, it repeats the same request.")
    reg.add_argument("--file", required=True, metavar="PATH", help="the store's registration file (TOML)")
    reg.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    reg.set_defaults(func=run_register)
    st = sub.add_parser("status", help="ask the registration's status and keep it in the journal",
                        description="Ask inquiryRegistrationStatus for the latest registration; the answer is "
                                    "kept in the journal (it opens sales when it is SUCCESSFUL).")
    st.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    st.set_defaults(func=run_status)
    info = sub.add_parser("info", help="show what the acquirer holds for the store",
                          description="Ask inquiryRegistrationInfo for the latest registration and print it.")
    info.add_argument("--config", metavar="PATH", required=True, help="the terminal's config file")
    info.set_defaults(func=run_info)


@contextmanager
def _merchant(args: argparse.Namespace) -> Iterator[tuple[Merchant, Config]]:
    cfg = load_config(args.config, require_keys=True).config
    journal = Journal.open(journal_path(cfg.terminal.state_dir), terminal_id=cfg.terminal.terminal_id,
                           timezone=cfg.terminal.timezone)
    back = None
    if cfg.gateway.protocol == "ams":
        url = cfg.notify.public_url + REGISTRATION_NOTIFY_PATH if cfg.notify.public_url else ""
        back = BackOffice(AmsGateway.from_config(cfg), registration_notify_url=url)
    try:
        yield Merchant(journal.db, journal.install_id, back), cfg
    finally:
        if back is not None:
            back.close()
        journal.close()


def _print(reg: Registration, merchant: Merchant, cfg: Config) -> None:
    tz = ZoneInfo(cfg.terminal.timezone)
    at = datetime.fromtimestamp(reg.updated_at, tz=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    print(f"registration {reg.registration_request_id}: {reg.state}  status {reg.registration_status or '-'}  "
          f"{at}")
    if reg.result_code and reg.result_code != "SUCCESS":
        print(f"  {reg.result_code} {reg.result_message}".rstrip())
    for e in merchant.store.events("registration", reg.registration_request_id):
        when = datetime.fromtimestamp(e.at, tz=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        print(f"  {when}  {e.what:16} {e.state:9} {e.detail}")
    refusal = sales_refusal(merchant.store, required=cfg.merchant.registration_required)
    if cfg.merchant.registration_required:
        print("sales: " + (refusal or "open (registration approved)"))


def run_register(args: argparse.Namespace) -> int:
    with _merchant(args) as (merchant, cfg):
        outcome = merchant.register(args.file)
        print(("repeated: " if outcome.repeated else "") + outcome.message)
        _print(outcome.registration, merchant, cfg)
        if outcome.registration.state == "SENDING":
            return 3
        return 1 if outcome.registration.state == "REFUSED" else 0


def run_status(args: argparse.Namespace) -> int:
    with _merchant(args) as (merchant, cfg):
        reg = merchant.status()
        _print(reg, merchant, cfg)
        return 1 if reg.registration_status == "FAILED" or reg.state == "REFUSED" else 0


def run_info(args: argparse.Namespace) -> int:
    with _merchant(args) as (merchant, _cfg):
        print(json.dumps(merchant.info(), indent=2, ensure_ascii=False, sort_keys=True))
        return 0
