"""`pos run --config PATH`: the terminal daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run", help="run the terminal daemon",
        description="Run the terminal: open the journal, resume every open sale and refund, start the devices "
                    "and the till interface, then take payments. Logs go to stderr, one line per event "
                    "(journald). SIGTERM stops it cleanly: no new pay is sent and calls in flight are "
                    "committed.")
    run.add_argument("--config", required=True, help="the terminal's config file, e.g. /etc/pos/terminal.toml")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pos.ops.daemon import run
    return run(args.config)
