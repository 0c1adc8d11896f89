"""`pos doctor --config PATH`: check an installation, one line per check."""

from __future__ import annotations

import argparse

from pos.core.errors import EXIT_CONFIG
from pos.ops.doctor import MIN_FREE_BYTES, DoctorReport, load_for_doctor, run_checks


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "doctor", help="check keys, clock, gateway, devices, journal and disk of an installation",
        description="Check an installation and print one line per check: 'OK', 'WARN' (works, but "
                    "look at it) or 'FAIL' (what is wrong — what to do). Checks: config, key files "
                    "and modes, the merchant key pair self-test, Alipay's public key, the clock, the "
                    "gateway (DNS, TCP, TLS, latency), one signed query for an order that cannot exist, "
                    "scanner, printer (online/paper), display, ECR token files, journal integrity, free disk "
                    "space, sales waiting for a manager. "
                    "Exit status 0 all passed, 1 a check failed, 2 the config cannot be loaded.")
    p.add_argument("--config", required=True, metavar="PATH", help="the terminal's config, e.g. /etc/pos/terminal.toml")
    p.add_argument("--min-free-mb", type=int, default=MIN_FREE_BYTES // (1024 * 1024), metavar="MB",
                   help="fail the disk check below this many MB free in the state dir (default %(default)s)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="connect timeout for the gateway (default: [gateway] connect_timeout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_result, loaded = load_for_doctor(args.config)
    print(config_result.line(), flush=True)
    if loaded is None:
        return EXIT_CONFIG
    report = DoctorReport(run_checks(loaded, min_free_bytes=args.min_free_mb * 1024 * 1024,
                                     gateway_timeout=args.timeout))
    print(report.text(), flush=True)
    return report.exit_code
