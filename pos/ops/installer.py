"""What systemd/install.sh needs from the configuration, computed in Python.

The shell script stays a list of file operations; anything that has to read
and validate /etc/pos/terminal.toml is done here, with the same loader and
the same one-line errors as every other `pos` command:

    python -m pos.ops.installer udev-rules   --config /etc/pos/terminal.toml
    python -m pos.ops.installer secret-files --config /etc/pos/terminal.toml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pos.config import Config, load_config
from pos.core.errors import UserError

__all__ = ["udev_rules", "secret_files", "RULES_NAME", "main"]

RULES_NAME = "70-pos-terminal.rules"

# Which kernel subsystems each role may appear as, with the group that the
# unit's SupplementaryGroups= grants. Serial devices (ttyACM, ttyUSB) are in
# "tty"; usblp printers (/dev/usb/lp*) are "usbmisc"; a printer driven raw
# through libusb (python-escpos kind = "usb") is the "usb" device node itself.
_ROLE_RULES = {
    "scanner": [("tty", "dialout")],
    "display": [("tty", "dialout")],
    "printer": [("usbmisc", "lp"), ("tty", "dialout"), ("usb", "lp")],
}


def udev_rules(cfg: Config) -> str:
    """The text of /etc/udev/rules.d/70-pos-terminal.rules for this config."""
    lines = [
        "# Written by systemd/install.sh from the [udev] section of /etc/pos/terminal.toml;",
        "# edit that section and run install.sh again instead of editing this file.",
    ]
    any_rule = False
    for role, rules in _ROLE_RULES.items():
        vendor = getattr(cfg.udev, f"{role}_vendor").lower()
        product = getattr(cfg.udev, f"{role}_product").lower()
        if not vendor:
            continue
        any_rule = True
        lines.append(f"# {role}: USB {vendor}:{product} -> /dev/pos-{role}")
        for subsystem, group in rules:
            match = f'SUBSYSTEM=="{subsystem}", '
            if subsystem == "usb":
                # the device node under /dev/bus/usb; no symlink (libusb finds it by id)
                lines.append(f'{match}ENV{{DEVTYPE}}=="usb_device", ATTR{{idVendor}}=="{vendor}", '
                             f'ATTR{{idProduct}}=="{product}", GROUP="{group}", MODE="0660"')
                continue
            if subsystem == "usbmisc":
                match += 'KERNEL=="lp[0-9]*", '
            lines.append(f'{match}ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}", '
                         f'SYMLINK+="pos-{role}", GROUP="{group}", MODE="0660"')
    if not any_rule:
        lines.append("# no USB ids configured: no rules")
    return "\n".join(lines) + "\n"


def secret_files(cfg: Config) -> list[str]:
    """Token files the installer creates (0600, owned by pos) when missing.

    The daemon runs with ProtectSystem=strict and cannot write /etc/pos, so
    the ECR bearer tokens are made at install time, not at first start.
    """
    if not cfg.ecr.enabled:
        return []
    return [cfg.ecr.token_file, cfg.ecr.manager_token_file]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pos.ops.installer",
                                     description="Helpers for systemd/install.sh.")
    parser.add_argument("what", choices=["udev-rules", "secret-files"])
    parser.add_argument("--config", required=True, metavar="PATH")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config).config
    except UserError as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.what == "udev-rules":
        sys.stdout.write(udev_rules(cfg))
    else:
        for path in secret_files(cfg):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
