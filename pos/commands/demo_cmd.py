"""`pos demo`: the product on an embedded default (sandbox gateway, emulated devices)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pos.config import load_config
from pos.money import parse_amount


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run the product against the local sandbox",
                                 description="Start the sandbox gateway, emulated devices and the "
                                             "daemon, and play the main scenarios.")
    demo.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "config" / "sandbox.toml"),
                      help="sandbox configuration (default: config/sandbox.toml)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    term = loaded.config.terminal
    print(f"pos demo: terminal {term.terminal_id} at {term.merchant_name}, currency {term.currency}")
    for text in ("12.50", "0.99", "1250"):
        amount = parse_amount(text, term.currency)
        print(f"  cashier types {text!r:>8} -> {amount.minor} minor units, display {amount.display()!r}, "
              f"wire {amount.wire()}")
    return 0
