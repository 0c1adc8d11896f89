"""pos/ops/systemd.py against a real AF_UNIX datagram socket the test owns (as systemd's would be)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos.ops.systemd import SystemdNotifier, WatchdogHeartbeat, watchdog_interval

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="posnotify")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive_as_sd_notify_datagrams(notify_socket):
    sock, path = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.status("recovering 2 open sales")
    n.ready("ready: 0 open items")
    n.watchdog()
    n.extend_timeout(30)
    n.stopping()
    assert _recv(sock) == "STATUS=recovering 2 open sales"
    assert _recv(sock) == "READY=1\nSTATUS=ready: 0 open items"
    assert _recv(sock) == "WATCHDOG=1"
    assert _recv(sock) == "EXTEND_TIMEOUT_USEC=30000000"
    assert _recv(sock) == "STOPPING=1"
    n.close()


def test_status_newlines_cannot_inject_assignments(notify_socket):
    sock, path = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    n.status("printer offline\nREADY=1")
    assert _recv(sock) == "STATUS=printer offline READY=1"
    n.close()


def test_reads_notify_socket_from_the_process_environment(notify_socket, monkeypatch):
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = SystemdNotifier()
    n.ready()
    assert _recv(sock) == "READY=1"
    n.close()


def test_abstract_namespace_socket():
    name = f"pos-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        n.watchdog()
        assert _recv(sock) == "WATCHDOG=1"
        n.close()
    finally:
        sock.close()


def test_no_socket_means_silent_no_ops(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    n.ready("x")
    n.watchdog()
    n.status("x")
    n.stopping()


def test_socket_that_is_not_there_is_a_no_op(tmp_path):
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert not n.enabled
    n.ready()  # must not raise


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),      # meant for another process
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "200000"}, 0.1),
])
def test_watchdog_interval_is_half_the_timeout(env, expected):
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_process_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


def test_heartbeat_sends_at_most_once_per_interval(notify_socket):
    sock, path = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    hb = WatchdogHeartbeat(n, 10.0)
    sent = [hb.beat(t) for t in (100.0, 101.0, 109.9, 110.0, 115.0, 120.5)]
    assert sent == [True, False, False, True, False, True]
    sock.settimeout(0.5)
    assert [_recv(sock) for _ in range(3)] == ["WATCHDOG=1"] * 3
    with pytest.raises(socket.timeout):
        sock.recv(4096)
    n.close()


def test_heartbeat_without_watchdog_never_sends(notify_socket):
    sock, path = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    hb = WatchdogHeartbeat(n, None)
    assert not any(hb.beat(t) for t in range(100))
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(4096)
    n.close()


# ---------------------------------------------------------------------------
# The daemon end to end (issue 7 builds `pos run`; this is the contract).

def _has_run_command() -> bool:
    from pos.cli.main import build_parser
    parser = build_parser()
    return any("run" in getattr(action, "choices", {}) for action in parser._subparsers._group_actions)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not _has_run_command(), reason="needs `pos run` (issue 7)")
def test_run_notifies_ready_then_watchdog(notify_socket, tmp_path):
    sock, path = notify_socket
    state = tmp_path / "state"
    cfg = tmp_path / "terminal.toml"
    # Sandbox-style: keys generated on first start; nothing listens on the
    # gateway port, which is fine with no open work to recover.
    cfg.write_text(f"""
[terminal]
terminal_id = "T1"
state_dir = "{state}"
currency = "SGD"
[gateway]
url = "http://127.0.0.1:{_free_port()}"
private_key = "{state}/keys/merchant_private.pem"
merchant_public_key = "{state}/keys/merchant_public.pem"
alipay_public_key = "{state}/keys/alipay_public.pem"
sandbox = true
connect_timeout = 0.5
read_timeout = 0.5
[scanner]
kind = "none"
[printer]
kind = "dummy"
[display]
kind = "none"
[keypad]
kind = "none"
[ecr]
listen = "127.0.0.1:{_free_port()}"
token_file = "{state}/ecr.token"
manager_token_file = "{state}/ecr-manager.token"
""")
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "pos", "run", "--config", str(cfg)],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sock.settimeout(20)
        seen: list[str] = []
        while not any("WATCHDOG=1" in m for m in seen):
            seen.append(_recv(sock))
        ready_at = next(i for i, m in enumerate(seen) if "READY=1" in m.split("\n"))
        first_beat_after_ready = next(i for i, m in enumerate(seen) if i > ready_at and m == "WATCHDOG=1")
        assert ready_at < first_beat_after_ready
        # keeps beating
        assert _recv(sock).startswith(("WATCHDOG=1", "STATUS="))
        proc.send_signal(signal.SIGTERM)
        sock.settimeout(10)
        rest = []
        while not any("STOPPING=1" in m for m in rest):
            rest.append(_recv(sock))
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_sub_command_loads_only_its_own_module_and_help_still_lists_every_command():
    """`pos run` does not import the other sub-commands (start-up time); `pos --help` and a typo see all."""
    from pos.cli.main import COMMAND_MODULES
    names = [m.rsplit(".", 1)[1].removesuffix("_cmd") for m in COMMAND_MODULES]
    code = ("import sys; from pos.cli.main import COMMAND_MODULES, build_parser; "
            "build_parser(['run', '--config', 'x.toml']); "
            "print(','.join(m for m in COMMAND_MODULES if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "pos.cli.commands.run_cmd", done.stderr
    helped = subprocess.run([sys.executable, "-m", "pos", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0
    listed = [line.split()[0] for line in helped.stdout.splitlines() if line[:4] == "    " and line[4:5].isalpha()]
    assert listed == names
    typo = subprocess.run([sys.executable, "-m", "pos", "rnu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "invalid choice: 'rnu'" in typo.stderr and "'hq'" in typo.stderr
    run_help = subprocess.run([sys.executable, "-m", "pos", "run", "--help"], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    assert run_help.returncode == 0 and "usage: pos run [-h] --config CONFIG" in run_help.stdout
