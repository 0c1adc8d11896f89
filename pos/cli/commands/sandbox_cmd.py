"""`pos sandbox`: run the local sandbox gateway on 127.0.0.1 (the offline acquiring protocol or the v1 API)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit

from pos.config import load_config
from pos.core.errors import UsageError, UserError
from pos.gateway.keys import ALIPAY_PRIVATE, MERCHANT_PUBLIC, ensure_sandbox_keys, sandbox_signing_key_path
from pos.gateway.signing import load_private_key, load_public_key
from pos.sandbox.scenarios import CANCEL_WINDOWS, SandboxOptions
from pos.sandbox.server import SandboxServer

__all__ = ["register", "run"]

_DEFAULTS = SandboxOptions()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sandbox", help="run the local sandbox gateway",
        description="Run a local gateway that behaves like Alipay's offline acquiring gateway, or its v1 "
                    "payments API ([gateway] protocol = \"ams\", or --protocol ams): it verifies "
                    "request signatures, signs its answers, keeps idempotency and plays scripted outcomes "
                    "chosen by the payment code (see README, 'Gateway and sandbox'). Listens on 127.0.0.1 "
                    "only. Either --config (host:port and protocol from [gateway], keys generated if missing) "
                    "or --port with --keys. Stop with Ctrl-C or SIGTERM.")
    p.add_argument("--config", metavar="PATH", help="terminal config with [gateway] sandbox = true")
    p.add_argument("--port", type=int, metavar="N", help="port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--keys", metavar="DIR",
                   help=f"folder with {MERCHANT_PUBLIC} and {ALIPAY_PRIVATE} (see 'pos keys generate')")
    p.add_argument("--protocol", choices=("offline", "ams"), default=None,
                   help="with --port/--keys: the wire protocol (default offline); --config takes [gateway] protocol")
    p.add_argument("--cancel-window", choices=CANCEL_WINDOWS, default=_DEFAULTS.cancel_window,
                   help="payCancel window: same Beijing day + 15 min, or 24 h after payment "
                        f"(default {_DEFAULTS.cancel_window})")
    for name, help_text in [
        ("wallet_confirm_after", "scenario 10: seconds until the customer confirms"),
        ("slow_response", "scenarios 11/12/99: seconds an answer is held"),
        ("late_success_after", "scenario 17: seconds until the late success"),
        ("race_delay", "scenario 99: seconds until the pay reaches the gateway"),
        ("order_code_expiry", "v1 QR sales: seconds an order code takes payment, then it closes unpaid"),
    ]:
        p.add_argument("--" + name.replace("_", "-"), type=float, metavar="S", default=getattr(_DEFAULTS, name),
                       help=f"{help_text} (default {getattr(_DEFAULTS, name)})")
    for name, help_text in [("query_errors", "scenario 13: payQuery SYSTEM_ERRORs before the truth"),
                            ("cancel_errors", "scenario 14: payCancel U answers before S")]:
        p.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", default=getattr(_DEFAULTS, name),
                       help=f"{help_text} (default {getattr(_DEFAULTS, name)})")
    p.add_argument("--files-dir", metavar="DIR",
                   help="write Alipay's reconciliation files here on POST /sandbox/reconciliation/YYYY-MM-DD "
                        "(into DIR/download/<merchantId>/<YYYYMMDD>/, as Alipay's SFTP server lays them out)")
    p.add_argument("--sftp-port", type=int, metavar="N",
                   help="also serve --files-dir over SFTP on 127.0.0.1:N (user 'alipay', password 'sandbox'; "
                        "the host key's fingerprint is printed for [reconcile] host_key)")
    p.add_argument("--require-store", action="store_true",
                   help="refuse a pay without the store identity (storeId, storeName, the terminal: "
                        "pos/data/store_fields.toml), as Alipay's go-live checks do")
    p.set_defaults(func=run)


def _keys_from_config(path: str) -> tuple[str, int, Path, Path, str]:
    loaded = load_config(path)
    gw = loaded.config.gateway
    parts = urlsplit(gw.url)
    if not gw.sandbox:
        raise UserError(f"{path}: [gateway] sandbox is false: the sandbox serves only sandbox configs "
                        "(set sandbox = true and a url on 127.0.0.1)")
    ensure_sandbox_keys(loaded.config)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme != "http":
        raise UserError(f"{path}: [gateway] url = {gw.url!r}: the sandbox speaks plain http on 127.0.0.1; "
                        "use a url like 'http://127.0.0.1:18080'")
    return (parts.hostname or "127.0.0.1", port, Path(gw.merchant_public_key),
            sandbox_signing_key_path(loaded.config), gw.protocol)


def run(args: argparse.Namespace) -> int:
    if args.config and (args.port is not None or args.keys):
        raise UsageError("give either --config PATH, or --port N with --keys DIR, not both")
    protocol = args.protocol or "offline"
    if args.config and args.protocol:
        raise UsageError("--protocol goes with --port/--keys; with --config, [gateway] protocol decides")
    if args.config:
        host, port, merchant_pub, alipay_priv, protocol = _keys_from_config(args.config)
    elif args.port is not None and args.keys:
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: expected 0-65535")
        host, port = "127.0.0.1", args.port
        merchant_pub, alipay_priv = Path(args.keys) / MERCHANT_PUBLIC, Path(args.keys) / ALIPAY_PRIVATE
    else:
        raise UsageError("give --config PATH, or --port N with --keys DIR (see 'pos sandbox --help')")
    try:
        options = SandboxOptions(
            wallet_confirm_after=args.wallet_confirm_after, slow_response=args.slow_response,
            late_success_after=args.late_success_after, race_delay=args.race_delay,
            query_errors=args.query_errors, cancel_errors=args.cancel_errors, cancel_window=args.cancel_window,
            require_store=args.require_store, order_code_expiry=args.order_code_expiry)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files_dir = Path(args.files_dir).resolve() if args.files_dir else None
    if args.sftp_port is not None and (files_dir is None or not 0 <= args.sftp_port <= 65535):
        raise UsageError("--sftp-port N needs --files-dir DIR and a port 0-65535")
    merchant_id = load_config(args.config).config.gateway.merchant_id if args.config else "2188000000000001"
    try:
        server = SandboxServer(merchant_public_key=load_public_key(merchant_pub),
                               alipay_private_key=load_private_key(alipay_priv),
                               options=options, host=host, port=port, protocol=protocol,
                               files_dir=files_dir, merchant_id=merchant_id)
    except (OSError, ValueError) as exc:
        raise UserError(f"pos sandbox: {exc}: choose another port or stop what uses it") from None
    sftp = None
    if files_dir is not None and args.sftp_port is not None:
        from pos.sandbox.sftp import SandboxSftp
        files_dir.mkdir(parents=True, exist_ok=True)
        try:
            sftp = SandboxSftp(files_dir, port=args.sftp_port, host_key=files_dir.parent / "sandbox-sftp-host-key")
            sftp.start()
        except (OSError, ValueError) as exc:
            raise UserError(f"pos sandbox: --sftp-port {args.sftp_port}: {exc}: choose another port") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"pos sandbox: listening on {server.url} (cancel window {options.cancel_window})", flush=True)
    if files_dir is not None:
        print(f"pos sandbox: reconciliation files go to {files_dir} "
              f"(POST {server.url}/sandbox/reconciliation/YYYY-MM-DD)", flush=True)
    if sftp is not None:
        print(f"pos sandbox: SFTP on 127.0.0.1:{sftp.port}, user {sftp.username}, password {sftp.password}, "
              f"host key {sftp.fingerprint}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        if sftp is not None:
            sftp.stop()
    return 0
