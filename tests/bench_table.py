"""`make bench`'s figures: percentiles, one row per figure beside its floor, the table and the JSON.

Each figure of README's "Performance" table is a `Figure`: what was measured,
the floor or reference measured in the same run, their ratio and the target.
A figure that could not be measured keeps its row with a note saying why.
Nothing here measures anything; tests/test_bench_table.py checks the
formatting. `python -m tests.bench_table [.pos-state/bench.json]` prints a
run's table again as Markdown (for README's "Performance").
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "percentile", "median", "fmt", "render_table", "render_header", "machine", "LoadWatch",
           "read_json", "read_context", "write_json"]


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100): a value that was measured, never interpolated."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def fmt(value: float | None, unit: str) -> str:
    """A figure as people read it: ms and s with 3 significant digits, MB with one decimal, rates whole."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3g} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.3g} s" if value < 100 else f"{value:,.0f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.3g} {unit}".strip()


@dataclass
class Figure:
    """One row: `value` beside `reference` (the floor or the reference, measured in the same run)."""

    name: str
    value: float | None
    unit: str
    reference: float | None = None
    reference_label: str = ""
    target: str = ""
    note: str = ""                       # how it was measured, or why it was not
    extra: dict[str, Any] = field(default_factory=dict)   # the raw numbers behind the row

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        return out


def _cells(f: Figure) -> list[str]:
    ref = fmt(f.reference, f.unit)
    if f.reference_label:
        ref = f"{ref} ({f.reference_label})" if f.reference is not None else f.reference_label
    ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
    value = fmt(f.value, f.unit) if f.value is not None else f"not measured: {f.note}" if f.note else "-"
    return [f.name, value, ref, ratio, f.target or "-"]


HEADERS = ["figure", "measured", "floor or reference (same run)", "ratio", "target"]


def render_table(figures: Sequence[Figure], *, markdown: bool = False) -> str:
    """The figures as a Markdown table (README) or as aligned text (the terminal)."""
    rows = [_cells(f) for f in figures]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join("---" for _ in HEADERS) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, the CPU model and Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "cpu": model or platform.machine(), "python": sys.version.split()[0],
            "platform": f"{os.uname().sysname} {os.uname().release}"}


class LoadWatch:
    """The machine's load average (1 minute) at the start, every `every` seconds, and at the end of a run:
    the figures of a shared machine are read beside it."""

    def __init__(self, every: float = 10.0) -> None:
        self.start = list(os.getloadavg())
        self.samples: list[float] = [self.start[0]]
        self.end: list[float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), name="loadavg", daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        self.end = list(os.getloadavg())
        self.samples.append(self.end[0])
        return self.as_json()

    def as_json(self) -> dict[str, Any]:
        return {"start": [round(x, 2) for x in self.start],
                "end": None if self.end is None else [round(x, 2) for x in self.end],
                "during_1min": {"min": round(min(self.samples), 2), "median": round(median(self.samples), 2),
                                "max": round(max(self.samples), 2), "samples": len(self.samples)}}


def render_header(context: dict[str, Any]) -> str:
    """What a run's figures depend on, printed above its table: the machine, its load, the seed and sizes."""
    m = context.get("machine") or machine()
    lines = [f"machine: nproc {m.get('nproc')}, {m.get('cpu')}, Python {m.get('python')}, {m.get('platform')}"]
    load = context.get("load_average")
    if load:
        def three(v: list[float] | None) -> str:
            return " ".join(f"{x:.2f}" for x in v) if v else "-"
        during = load.get("during_1min") or {}
        lines.append(f"load average (1, 5, 15 min): {three(load.get('start'))} at the start, "
                     f"{three(load.get('end'))} at the end; 1-minute load during the run "
                     f"{during.get('min', '-')}..{during.get('max', '-')} (median {during.get('median', '-')})")
    options = context.get("options") or {}
    sizes = {k: v for k, v in options.items() if k not in ("json", "only", "parts", "markdown", "seed")}
    if options:
        lines.append(f"seed {options.get('seed', '-')}; sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                     + f"; parts: {options.get('only', '-')}")
    if context.get("journal"):
        j = context["journal"]
        lines.append(f"large journal: {j.get('sales', 0):,} sales ({j.get('day_sales', 0):,} in the open day, "
                     f"{j.get('open_sales', 0)} open, {j.get('refunds', 0):,} refunds, {j.get('print_jobs', 0):,} "
                     f"print jobs), seed {j.get('seed')}, {j.get('bytes', 0) / 1e6:,.0f} MB, "
                     f"{'cached' if j.get('cached') else 'built in ' + str(j.get('build_seconds')) + ' s'}")
    if "seconds" in context:
        lines.append(f"run: {context['seconds']:.0f} s in all")
    return "\n".join(lines)


def read_context(path: Path) -> dict[str, Any]:
    """Everything but the figures of a run, as write_json left it."""
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "figures"}


def read_json(path: Path) -> list[Figure]:
    """The figures of a run, as write_json left them."""
    doc = json.loads(path.read_text())
    return [Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in doc["figures"]]


def write_json(path: Path, figures: Sequence[Figure], **context: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), **context, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    _path = Path(sys.argv[1] if len(sys.argv) > 1 else ".pos-state/bench.json")
    print(render_header(read_context(_path)))
    print()
    print(render_table(read_json(_path), markdown=True))
