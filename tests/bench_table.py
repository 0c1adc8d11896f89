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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "percentile", "median", "fmt", "render_table", "machine", "read_json", "write_json"]


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


def read_json(path: Path) -> list[Figure]:
    """The figures of a run, as write_json left them."""
    doc = json.loads(path.read_text())
    return [Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in doc["figures"]]


def write_json(path: Path, figures: Sequence[Figure], **context: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), **context, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    print(render_table(read_json(Path(sys.argv[1] if len(sys.argv) > 1 else ".pos-state/bench.json")),
                       markdown=True))
