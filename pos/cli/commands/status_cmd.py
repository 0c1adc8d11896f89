"""`pos status --config PATH`: ask the running daemon how it is, or say it is not running.

The daemon answers GET /v1/health on the till interface ([ecr] listen, bearer
token from [ecr] token_file) with:

    {"status": "ok" | "degraded", "uptime_s": N,
     "gateway": {"latency_ms": N | null, "last_error": str | null},
     "devices": {"scanner": {"ok": bool, "last_error": str | null}, "printer": {...}, "display": {...}},
     "open_items": N, "journal_bytes": N}

When nothing answers, the journal file is read directly (size, open items)
and the exit status is 3 (a needed service is unavailable).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from pos.config import Config, load_config
from pos.core.errors import EXIT_FAIL, EXIT_OK, EXIT_UNAVAILABLE

__all__ = ["register", "run", "fetch_health", "format_health", "HEALTH_PATH"]

HEALTH_PATH = "/v1/health"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status", help="show the running daemon's health (uptime, gateway, devices, open items)",
        description="Ask the running daemon (GET /v1/health on [ecr] listen) for its uptime, gateway "
                    "latency, the last error of each device, open items and journal size. If the daemon "
                    "is not running, say so and show what the journal file holds. Exit status 0 ok, "
                    "1 degraded, 3 not running.")
    p.add_argument("--config", required=True, metavar="PATH", help="the terminal's config, e.g. /etc/pos/terminal.toml")
    p.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="how long to wait for the daemon")
    p.set_defaults(func=run)


def fetch_health(cfg: Config, *, timeout: float = 3.0) -> dict[str, Any] | None:
    """The daemon's health document, or None when nothing answers on [ecr] listen."""
    import requests
    token = ""
    with contextlib.suppress(OSError):  # no token file: ask without one, the answer says 401
        token = Path(cfg.ecr.token_file).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.get(f"http://{cfg.ecr.listen}{HEALTH_PATH}", headers=headers, timeout=timeout)
    except requests.RequestException:
        return None
    if answer.status_code != 200:
        return {"status": "degraded", "error": f"HTTP {answer.status_code} from {HEALTH_PATH}"
                + (" (check [ecr] token_file)" if answer.status_code in (401, 403) else "")}
    try:
        data = answer.json()
    except ValueError:
        return {"status": "degraded", "error": f"{HEALTH_PATH} answered with something that is not JSON"}
    return data if isinstance(data, dict) else {"status": "degraded", "error": "unexpected health document"}


def _fmt_bytes(n: Any) -> str:
    return f"{n / 1024:.0f} KiB" if isinstance(n, (int, float)) else "unknown"


def format_health(h: dict[str, Any]) -> list[str]:
    lines = [f"status: {h.get('status', 'unknown')}"]
    if h.get("error"):
        lines.append(f"error: {h['error']}")
        return lines
    uptime = h.get("uptime_s")
    if isinstance(uptime, (int, float)):
        hours, rest = divmod(int(uptime), 3600)
        lines.append(f"uptime: {hours}h{rest // 60:02d}m{rest % 60:02d}s")
    gw = h.get("gateway") or {}
    latency = gw.get("latency_ms")
    lines.append("gateway: " + (f"{latency:.0f} ms" if isinstance(latency, (int, float)) else "latency unknown")
                 + (f", last error: {gw['last_error']}" if gw.get("last_error") else ""))
    for name, dev in (h.get("devices") or {}).items():
        dev = dev or {}
        state = "ok" if dev.get("ok") else "NOT OK"
        lines.append(f"{name}: {state}" + (f", last error: {dev['last_error']}" if dev.get("last_error") else ""))
    lines.append(f"open items: {h.get('open_items', 'unknown')}")
    lines.append(f"journal: {_fmt_bytes(h.get('journal_bytes'))}")
    return lines


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config).config
    health = fetch_health(cfg, timeout=args.timeout)
    if health is not None:
        print("\n".join(format_health(health)))
        return EXIT_OK if health.get("status") == "ok" else EXIT_FAIL
    from pos.journal.journal import JournalError, journal_path
    from pos.ops.doctor import count_open_items, open_items_needing_manager
    print(f"pos-terminal is not running: nothing answers on {cfg.ecr.listen} "
          "(systemctl status pos-terminal; journalctl -u pos-terminal)")
    journal = journal_path(cfg.terminal.state_dir)
    if not journal.exists():
        print(f"journal: {journal} does not exist yet")
        return EXIT_UNAVAILABLE
    print(f"journal: {journal}, {_fmt_bytes(journal.stat().st_size)}")
    try:
        count = count_open_items(cfg)
        waiting = open_items_needing_manager(cfg) or []
    except JournalError as exc:
        print(f"open items: unknown ({exc}; run pos doctor)")
        return EXIT_UNAVAILABLE
    print(f"open items: {count}")
    for ident, state in waiting:
        print(f"  {ident} {state} (needs a manager)")
    return EXIT_UNAVAILABLE
