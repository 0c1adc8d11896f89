"""The `pos` command: one entry point for the cashier's daemon and the tools around it.

Each sub-command lives in its own module with a `register(subparsers)`
function; the module list below is the only place that names them. A command
line that names a sub-command imports that module only (`pos run` does not pay
for the imports of `pos hq`, `pos customs`...); `pos`, `pos --help` and an
unknown command import them all, so help and errors list every one. Errors a
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


def _command_module(name: str) -> str:
    return f"pos.cli.commands.{name}_cmd"


def _named_command(argv: Sequence[str]) -> str | None:
    """The sub-command a command line names: its first word that is not an option (the top level has no
    option with a value), when that is a known sub-command."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if _command_module(word) in COMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `pos` parser: with `argv`, only the sub-command it names (when it names one), else all of them."""
    named = _named_command(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="pos",
        description="Barcode payment terminal for Alipay's offline acquiring gateway.",
    )
    parser.add_argument("--version", action="version", version=f"pos {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if named is None or name == _command_module(named):
            importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
