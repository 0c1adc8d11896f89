"""`pos keys generate DIR`: create a key set for the local sandbox or for a first upload to Alipay."""

from __future__ import annotations

import argparse

from pos.gateway.keys import generate_key_folder

__all__ = ["register", "run_generate"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="generate gateway key files",
                                 description="Work with the RSA key files used to sign gateway messages.")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser(
        "generate", help="create merchant and sandbox key pairs in a folder",
        description="Create four RSA-2048 PEM files in DIR: merchant_private.pem (0600, the terminal signs "
                    "with it), merchant_public.pem (upload it to Alipay), alipay_private.pem (0600, only the "
                    "local sandbox signs with it) and alipay_public.pem (for a real gateway, replace it with "
                    "the key Alipay gives you). Existing files are never replaced without --force.")
    gen.add_argument("dir", metavar="DIR", help="folder for the key files (created if missing)")
    gen.add_argument("--force", action="store_true", help="replace existing key files")
    gen.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    for path in generate_key_folder(args.dir, force=args.force):
        print(f"wrote {path}")
    return 0
