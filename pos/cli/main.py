"""The `pos` command: one entry point for the cashier's daemon and the tools around it.

Each sub-command lives in its own module with a `register(subparsers)`
function; the module list below is the only place that names them. Errors a
user can fix (UserError) are printed as one line with a stable exit status;
anything else is a bug, reported in one line (with the traceback only when
POS_DEBUG=1 is set).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pos import __version__
from pos.core.errors import EXIT_CONFIG, UserError

# Order here is the order in `pos --help`.
COMMAND_MODULES = [
    "pos.cli.commands.run_cmd",
    "pos.cli.commands.demo_cmd",
    "pos.cli.commands.sandbox_cmd",
    "pos.cli.commands.config_cmd",
    "pos.cli.commands.keys_cmd",
    "pos.cli.commands.pin_cmd",
    "pos.cli.commands.journal_cmd",
    "pos.cli.commands.reprint_cmd",
    "pos.cli.commands.receipt_cmd",
    "pos.cli.commands.reconcile_cmd",
    "pos.cli.commands.customs_cmd",
    "pos.cli.commands.merchant_cmd",
    "pos.cli.commands.doctor_cmd",
    "pos.cli.commands.status_cmd",
    "pos.cli.commands.hq_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos",
        description="Barcode payment terminal for Alipay's offline acquiring gateway.",
    )
    parser.add_argument("--version", action="version", version=f"pos {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage exits with status 2, which is EXIT_CONFIG
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence for users
        if os.environ.get("POS_DEBUG"):
            raise
        print(f"pos: internal error: {type(exc).__name__}: {exc} "
              "(run again with POS_DEBUG=1 for details and report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
