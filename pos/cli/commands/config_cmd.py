"""`pos config check PATH`: validate a configuration file and print it, secrets masked."""

from __future__ import annotations

import argparse
import sys

from pos.config import effective_config_text, load_config
from pos.core.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="check a configuration file",
                                   description="Work with the terminal's configuration file.")
    sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a file and print the effective configuration",
                           description="Validate PATH and print the effective configuration "
                                       "(defaults filled in, relative paths resolved, secrets masked). "
                                       "Exit status 2 if the file is not valid.")
    check.add_argument("path", metavar="PATH", help="the TOML file, e.g. /etc/pos/terminal.toml")
    check.add_argument("--require-keys", action="store_true",
                       help="also fail if key files are missing (as 'pos run' does)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    loaded = load_config(args.path, require_keys=args.require_keys)
    from pos.gateway.keys import credential_problems
    problems = credential_problems(loaded.config)
    if problems:
        raise ConfigError(f"{loaded.path}: " + "; ".join(problems))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from pos.ops.device_checks import receipt_code_problem
    receipt_code = receipt_code_problem(loaded.config)
    if receipt_code:
        print(f"warning: {receipt_code}", file=sys.stderr)
    if not loaded.config.store.id and not loaded.config.gateway.sandbox:
        print("warning: [store] id is empty: pays carry no storeId (Alipay's go-live checks look for it); "
              "set it from your onboarding pack", file=sys.stderr)
    print(f"# {loaded.path}: valid")
    print(effective_config_text(loaded.config), end="")
    return 0
