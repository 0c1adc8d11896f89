"""`make timeline`'s hook and reading (tests/timeline_hook, tests/bench_timeline.py): behaviour only, no speed."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_timeline import HOOK, _read, split, tail, timeline


def _hook_steps() -> dict[str, list[tuple[str, str, str]]]:
    """The hook's STEPS, read without installing it (it installs itself only with POS_TIMELINE_OUT set)."""
    spec = importlib.util.spec_from_file_location("timeline_hook_steps", HOOK / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.STEPS)


HOOK_STEPS = _hook_steps()


def test_each_sales_steps_are_numbered_in_order_and_taken_from_the_code_written():
    ms = 1_000_000
    windows = [(0, 10 * ms), (100 * ms, 112 * ms)]
    records = [
        (-5 * ms, -4 * ms, "scanner", "COMMIT"),          # before the first window: not counted
        (1 * ms, 2 * ms, "scanner", "COMMIT"),
        (3 * ms, 4 * ms, "pos-notify", "display written"),
        (6 * ms, 8 * ms, "scanner", "COMMIT"),
        (101 * ms, 103 * ms, "scanner", "COMMIT"),
        (104 * ms, 105 * ms, "pos-notify", "display written"),
        (107 * ms, 111 * ms, "scanner", "COMMIT"),
        (50 * ms, 51 * ms, "scanner", "engine step"),     # between the windows: not counted
    ]
    rows, took = timeline(sorted(records), windows)
    assert took == [10.0, 12.0]
    assert [(step, thread) for step, thread, *_ in rows] == [
        ("COMMIT #1", "scanner"), ("display written #1", "pos-notify"), ("COMMIT #2", "scanner")]
    first, _, second = rows
    assert first[2:] == (1.0, 2.5, 2)     # starts 1 and 1 ms, ends 2 and 3 ms after the code: medians
    assert second[2:] == (6.5, 9.5, 2)


def test_a_sales_floor_kinds_of_step_are_summed_over_its_threads_and_the_rest_left_out():
    ms = 1_000_000
    records = sorted([
        (1 * ms, 2 * ms, "scanner", "COMMIT"),
        (2 * ms, 4 * ms, "scanner", "RSA2 sign"),
        (4 * ms, 7 * ms, "scanner", "HTTP round trip"),
        (7 * ms, 8 * ms, "pos-gateway_0", "COMMIT"),
        (3 * ms, 5 * ms, "pos-notify", "display written"),   # not one of the floor's kinds
        (20 * ms, 21 * ms, "scanner", "COMMIT"),             # after the window
    ])
    (spent,) = split(records, [(0, 10 * ms)])
    assert spent == {"window": 10.0, "COMMIT": 2.0, "RSA2 sign": 2.0, "RSA2 verify": 0.0, "HTTP round trip": 3.0}


def test_the_hook_times_a_named_step_in_a_fresh_interpreter_and_writes_it_at_exit(tmp_path: Path):
    out = tmp_path / "timeline.tsv"
    code = ("import gc\n"
            "from pos.gateway.signing import compact_json, sign_text, generate_keypair\n"
            "key, _ = generate_keypair()\n"
            "sign_text(compact_json({'a': 1}), key)\n"
            "gc.collect()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOK), str(Path.cwd())]), "POS_TIMELINE_OUT": str(out)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    rows = _read(out)
    steps = [(thread, step) for _, _, thread, step in rows if not step.startswith("garbage collection")]
    assert steps == [("MainThread", "RSA2 sign")]
    start, end, _, _ = next(row for row in rows if row[3] == "RSA2 sign")
    assert 0 < start <= end
    # Garbage collections are steps too: the one asked for last is there, after the sign.
    assert rows[-1][2:] == ("MainThread", "garbage collection (generation 2)") and rows[-1][0] >= end


def test_the_tail_shows_where_the_slowest_sales_fell_behind_and_what_ran_beside_them():
    ms = 1_000_000
    windows, records = [], []
    for i in range(100):
        slow = i in (30, 70)               # 2 in 100: the slowest 1 in 50
        written = i * 20 * ms
        seen = written + (6 if slow else 3) * ms
        windows.append((written, seen))
        commit = written + (3 if slow else 1) * ms
        records.append((commit, commit + ms // 2, "scanner", "COMMIT"))
        shown = seen - (ms if slow else ms // 10)
        records.append((shown - ms // 10, shown, "scanner", "display written"))
        if slow:   # the last receipt's work inside the window
            records.append((written + ms // 2, written + 3 * ms // 2, "print-queue", "print queue at work"))
        records.append((seen + ms, seen + 2 * ms, "print-queue", "print queue at work"))   # after it: not counted
    lines = tail(sorted(records), windows)
    assert lines[0].startswith("The slowest 2 sales (1 in 50) against the middle half (50)")
    assert "     3.000    1.000  +2.000  scanner          COMMIT #1" in lines
    assert any(line.startswith("     1.000    0.100  +0.900") and line.endswith("to the benchmark's read")
               for line in lines)
    beside = next(line for line in lines if "print queue at work" in line)
    assert beside.split() == ["print", "queue", "at", "work", "100.0%", "1.000", "ms", "/", "0.0%", "0.000", "ms"]


@pytest.mark.parametrize("module", sorted(HOOK_STEPS))
def test_every_step_the_hook_names_is_a_function_of_the_product(module: str):
    """A step renamed or moved in the product would leave the timeline without it, silently."""
    loaded = importlib.import_module(module)
    for owner, attr, _ in HOOK_STEPS[module]:
        assert callable(getattr(getattr(loaded, owner) if owner else loaded, attr)), (module, owner, attr)
