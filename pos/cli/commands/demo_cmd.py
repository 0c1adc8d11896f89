"""`pos demo`: the product on an embedded default (sandbox gateway, device twins, the real daemon)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the product against the local sandbox",
        description="Start the sandbox gateway, pty twins of the scanner, displays and keypad, a network "
                    "printer twin and the daemon (`pos run`), then play and narrate nine scenarios: a sale "
                    "paid at once, a decline, a customer confirming in the wallet, a timeout that ends "
                    "cancelled, a partial refund by the manager, a reprint, a Z report and the end of day "
                    "with Alipay (reconciliation files over SFTP), then on a terminal speaking Alipay's v1 API a QR "
                    "sale the customer pays by scanning the printed slip. Needs no account, no hardware and no "
                    "network beyond 127.0.0.1.")
    demo.add_argument("--interactive", action="store_true",
                      help="play cashier yourself: type amounts and sandbox test codes at the keyboard")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.interactive:
        from pos.demo.interactive import interactive
        return interactive()
    from pos.demo.story import play
    return play()
