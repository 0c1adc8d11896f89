"""Loaded into `pos run` by `make timeline` only (this folder on its PYTHONPATH): times the sale's steps.

Each function in STEPS is wrapped, when its module is imported, so every call records
(step, thread name, start, end) with time.monotonic_ns(), the clock the benchmark reads in
its own process; so does each garbage collection (gc.callbacks). The records are written to
$POS_TIMELINE_OUT when the daemon exits. A wrapped call costs about a microsecond; nothing else
in the daemon changes.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time
from typing import Any

# module -> (owner class or "" for a module function, attribute, step name)
STEPS: dict[str, list[tuple[str, str, str]]] = {
    "devices.scanner": [("Scanner", "_emit", "scan handed to the terminal")],
    "pos.payments.runner": [("PaymentRunner", "start_sale", "runner: sale started"),
                            ("PaymentRunner", "_deliver", "runner: screens delivered")],
    "pos.journal.journal": [("Journal", "create_sale", "journal: sale created"),
                            ("Journal", "record", "journal: step recorded")],
    "pos.journal.db": [("JournalDB", "_commit", "COMMIT")],
    "pos.core.engine": [("Engine", "handle", "engine step")],
    "pos.gateway.offline.client": [("OfflineGateway", "_call", "gateway call"),
                                   ("OfflineGateway", "_read_answer", "answer read and checked"),
                                   ("OfflineGateway", "_log", "gateway call logged")],
    "pos.gateway.signing": [("", "sign_text", "RSA2 sign"), ("", "verify", "RSA2 verify")],
    "pos.gateway.transport": [("Transport", "post", "HTTP round trip")],
    "pos.terminal.receipts": [("Receipts", "_queue_job", "receipt's print job")],
    "devices.print_queue": [("PrintQueue", "_build_record", "receipt built by the print queue"),
                            ("PrintQueue", "_render_stored", "receipt rendered by the print queue"),
                            ("PrintQueue", "print_pending", "print queue at work")],
    "devices.display": [("SerialDisplay", "show_at_once", "display written")],
    "logging": [("Logger", "handle", "log line")],
}

_records: list[tuple[str, str, int, int]] = []
_collecting: dict[int, int] = {}


def _collector(phase: str, info: dict[str, Any]) -> None:
    """gc.callbacks: each garbage collection as a step of its own, on the thread it stopped."""
    if phase == "start":
        _collecting[threading.get_ident()] = time.monotonic_ns()
        return
    start = _collecting.pop(threading.get_ident(), None)
    if start is not None:
        _records.append((f"garbage collection (generation {info['generation']})", threading.current_thread().name,
                         start, time.monotonic_ns()))


def _wrap(fn: Any, step: str) -> Any:
    now = time.monotonic_ns

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return fn(*args, **kwargs)
        finally:
            _records.append((step, threading.current_thread().name, start, now()))
    return timed


def _patch(module: Any) -> None:
    for owner_name, attr, step in STEPS[module.__name__]:
        owner = getattr(module, owner_name) if owner_name else module
        setattr(owner, attr, _wrap(getattr(owner, attr), step))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the modules of STEPS as the normal path finder does, and patches each once executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in STEPS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _patch(module)
        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _dump(path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for step, thread, start, end in _records:
            out.write(f"{start}\t{end}\t{thread}\t{step}\n")


_OUT = os.environ.get("POS_TIMELINE_OUT")
if _OUT:
    for _loaded in [name for name in STEPS if name in sys.modules]:   # imported before this hook ran
        _patch(sys.modules[_loaded])
    sys.meta_path.insert(0, _Finder())
    atexit.register(_dump, _OUT)
    import gc

    gc.callbacks.append(_collector)
