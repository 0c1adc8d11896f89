"""Test layers: every test is `unit`, `integration` or `e2e`, and the unit layer is held by a guard.

- unit: pure code. No sockets, no subprocesses, no sleeping, no ptys, no SQLite
  files. `make unit` (pytest -m unit) runs it in seconds.
- integration: real HTTP on 127.0.0.1, ptys, SQLite files, short-lived helper processes.
- e2e: the product as processes (`pos run`, the crash driver); the same tests as the `slow` marker.

The layer of a test comes from the tables below: LAYER_OF_FILE names the layer of
every test file, and LAYER_OF_TEST moves single tests of a mostly-pure file to the
layer they need. A test file missing from LAYER_OF_FILE stops the run at collection,
so a new file must be classified. A `slow` test is always e2e.

The unit layer is not a promise: for a unit test, opening a socket connection or
binding one, sleeping, starting a process, opening a pty or an SQLite file raises
UnitLayerViolation, and the test fails even when the code under test swallowed it.
Threads the test did not start (leftovers of earlier tests) are left alone.
"""

from __future__ import annotations

import os
import pty
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

LAYERS = ("unit", "integration", "e2e")

LAYER_OF_FILE = {
    "test_campaigns.py": "integration",
    "test_config.py": "unit",
    "test_crash.py": "e2e",
    "test_display.py": "integration",
    "test_doctor.py": "integration",
    "test_e2e.py": "e2e",
    "test_hq.py": "integration",
    "test_hq_chain.py": "integration",
    "test_hq_e2e.py": "e2e",
    "test_engine.py": "unit",
    "test_engine_tables.py": "unit",
    "test_engine_items.py": "unit",
    "test_engine_machine.py": "unit",
    "test_outcome_fields.py": "unit",
    "test_engine_property.py": "integration",
    "test_install.py": "integration",
    "test_hardening.py": "integration",
    "test_web.py": "integration",
    "test_journal.py": "integration",
    "test_journal_scale.py": "integration",
    "test_keypad.py": "integration",
    "test_logs.py": "unit",
    "test_messages.py": "unit",
    "test_money.py": "unit",
    "test_notify.py": "unit",
    "test_offline_client.py": "integration",
    "test_transport.py": "integration",
    "test_ams_client.py": "integration",
    "test_ams_qr.py": "integration",
    "test_qr_sale.py": "unit",
    "test_qr_e2e.py": "e2e",
    "test_ams_protocol.py": "unit",
    "test_ams_sdk.py": "integration",
    "test_backoffice.py": "integration",
    "test_bench_table.py": "unit",
    "test_bench_journal.py": "integration",
    "test_bench_timeline.py": "integration",
    "test_bench_straight.py": "integration",
    "test_notifications.py": "unit",
    "test_notify_e2e.py": "e2e",
    "test_notify_listener.py": "integration",
    "test_pin.py": "unit",
    "test_print_queue.py": "integration",
    "test_reconcile.py": "unit",
    "test_reconcile_day.py": "e2e",
    "test_reconcile_sftp.py": "integration",
    "test_receipt_image.py": "integration",
    "test_receipt_layout.py": "integration",
    "test_printer.py": "integration",
    "test_review_regressions.py": "integration",
    "test_runner.py": "integration",
    "test_sandbox.py": "integration",
    "test_scanner.py": "unit",
    "test_service_notify.py": "integration",
    "test_signing.py": "unit",
    "test_systemd_unit.py": "integration",
    "test_terminal.py": "integration",
}

# "file::test" (without parameters) -> layer, where one test needs more than its file's layer.
LAYER_OF_TEST = {
    "test_campaigns.py::test_short_daemon_soak_with_kills": "e2e",
    "test_config.py::test_cli_subprocess_has_real_exit_status_and_no_traceback": "integration",
    "test_scanner.py::test_reader_delivers_scans_and_keeps_reading_after_junk": "integration",
    "test_scanner.py::test_unplug_and_replug_reports_lost_and_back_and_reads_the_next_scan": "integration",
    "test_scanner.py::test_missing_device_at_start_is_lost_then_back": "integration",
    "test_scanner.py::test_socket_url_scanner": "integration",
    "test_scanner.py::test_stop_ends_the_thread_while_waiting_to_reconnect": "integration",
    "test_signing.py::test_openssl_verifies_our_signature_on_the_exact_bytes": "integration",
    "test_signing.py::test_we_verify_a_signature_made_by_openssl": "integration",
}


def _check_tables() -> None:
    here = Path(__file__).parent
    files = {p.name for p in here.glob("test_*.py")}
    stale = sorted(set(LAYER_OF_FILE) - files)
    if stale:
        raise pytest.UsageError(f"tests/conftest.py LAYER_OF_FILE names files that do not exist: {', '.join(stale)}")
    bad = sorted(f"{name}: {layer}" for name, layer in [*LAYER_OF_FILE.items(), *LAYER_OF_TEST.items()]
                 if layer not in LAYERS)
    if bad:
        raise pytest.UsageError(f"tests/conftest.py: unknown layers ({', '.join(bad)}); use one of {LAYERS}")


def layer_of(item: pytest.Item) -> str:
    if item.get_closest_marker("slow"):
        return "e2e"
    file = item.path.name
    test = f"{file}::{getattr(item, 'originalname', item.name)}"
    return LAYER_OF_TEST.get(test) or LAYER_OF_FILE[file]


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_tables()
    unclassified = sorted({item.path.name for item in items if item.path.name not in LAYER_OF_FILE})
    if unclassified:
        raise pytest.UsageError(
            f"test files in no layer: {', '.join(unclassified)}; add each to LAYER_OF_FILE in tests/conftest.py "
            f"as one of {', '.join(LAYERS)}")
    for item in items:
        layer = layer_of(item)
        item.add_marker(getattr(pytest.mark, layer))
        if layer == "e2e":
            item.add_marker(pytest.mark.slow)


# ---------------------------------------------------------------- the unit layer's guard

class UnitLayerViolation(AssertionError):
    """A unit test reached for a socket, a process, a pty, an SQLite file or the real clock."""


class _Guard:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        me = threading.current_thread()
        # Threads alive before the test belong to earlier tests; they are not this test's doing.
        self.foreign = {t for t in threading.enumerate() if t is not me}
        self.violations: list[str] = []

    def refuse(self, what: str) -> None:
        if threading.current_thread() in self.foreign:
            return
        self.violations.append(what)
        raise UnitLayerViolation(f"{self.nodeid} is in the unit layer but {what}: make it pure (a fake clock, "
                                 "an in-memory double) or move it to `integration` in tests/conftest.py")

    def wrap(self, real: Callable[..., Any], what: str, allowed: Callable[..., bool] | None = None) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if allowed is None or not allowed(*args, **kwargs):
                self.refuse(what)
            return real(*args, **kwargs)
        return guarded


def _in_memory_database(database: object = "", *args: Any, **kwargs: Any) -> bool:
    name = os.fspath(database) if isinstance(database, (str, bytes, os.PathLike)) else ""
    name = name.decode() if isinstance(name, bytes) else name
    return name == ":memory:" or (bool(kwargs.get("uri")) and "mode=memory" in name) or name == "file::memory:"


def _zero_sleep(seconds: float = 0.0, *args: Any, **kwargs: Any) -> bool:
    return seconds == 0  # a yield to other threads, not a wait


@pytest.fixture(autouse=True)
def _unit_layer_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    guard = _Guard(request.node.nodeid)
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, guard.wrap(getattr(socket.socket, name), f"calls socket.{name}"))
    monkeypatch.setattr(time, "sleep", guard.wrap(time.sleep, "sleeps (time.sleep)", _zero_sleep))
    monkeypatch.setattr(subprocess.Popen, "__init__", guard.wrap(subprocess.Popen.__init__, "starts a process"))
    monkeypatch.setattr(os, "openpty", guard.wrap(os.openpty, "opens a pty"))
    monkeypatch.setattr(pty, "openpty", guard.wrap(pty.openpty, "opens a pty"))
    monkeypatch.setattr(sqlite3, "connect", guard.wrap(sqlite3.connect, "opens an SQLite file",
                                                        _in_memory_database))
    yield
    if guard.violations:
        pytest.fail(f"{guard.nodeid} broke the unit layer: {'; '.join(dict.fromkeys(guard.violations))}",
                    pytrace=False)
