"""`pos pin set --config PATH`: set the manager PIN (stored as a salted scrypt hash)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from pos.config import load_config
from pos.core.errors import ConfigError, UserError
from pos.terminal.pin import check_pin_format, hash_pin, write_pin_hash


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pin = subparsers.add_parser("pin", help="set the manager PIN",
                                description="Manage the PIN that opens the manager menu (refunds, reprints, reports).")
    sub = pin.add_subparsers(dest="pin_command", metavar="ACTION", required=True)
    set_ = sub.add_parser("set", help="set a new manager PIN in the config file",
                          description="Ask for a new PIN twice (4-12 digits) and store its salted scrypt hash "
                                      "as [manager] pin_hash in the config file. Other lines are kept.")
    set_.add_argument("--config", required=True, help="the terminal's config file")
    set_.add_argument("--pin-stdin", action="store_true",
                      help="read the PIN from standard input (one line) instead of asking; for installers")
    set_.set_defaults(func=run_set)


def run_set(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        load_config(path)  # refuse to edit a file that is not valid to begin with
    except ConfigError as exc:
        if "[manager] pin_hash" not in str(exc):  # a malformed PIN hash is what this command repairs
            raise
    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
        check_pin_format(pin)
    else:
        pin = getpass.getpass("New manager PIN (4-12 digits): ")
        check_pin_format(pin)
        if getpass.getpass("Repeat the PIN: ") != pin:
            raise UserError("the two PINs differ; nothing was changed")
    write_pin_hash(path, hash_pin(pin))
    load_config(path)  # the edited file must still be valid
    print(f"manager PIN set in {path}")
    return 0
