"""The sale and refund machines drawn from their transition tables (mermaid).

README.md shows `mermaid()`'s output; a test fails when the two differ, so
the picture cannot drift from the tables the engine runs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pos.core.items import RetryLeft, Row, StateRow
from pos.core.records import REFUND_FINAL, SALE_FINAL
from pos.core.refund import REFUND_STATES, REFUND_TRANSITIONS
from pos.core.sale import SALE_STATES, SALE_TRANSITIONS

__all__ = ["mermaid"]


def _label(row: Row) -> str:
    """The trigger, which retry it repeats while retries are left, and any other condition."""
    conditions = [f"{c.retried.value} retry left" if isinstance(c, RetryLeft) else c.__name__
                  for c in row.get("conditions", [])]
    return row["trigger"] + "".join(f" ({text})" for text in conditions)


def _machine(name: str, states: Sequence[StateRow], rows: Sequence[Row], final: Collection[str]) -> list[str]:
    lines = [f"    state {name} {{", f"        [*] --> {states[0]['name']}"]
    edges: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        sources = [row["source"]] if isinstance(row["source"], str) else row["source"]
        for source in sources:
            dest = row["dest"] if row["dest"] is not None else source   # internal: drawn as a loop
            labels = edges.setdefault((source, dest), [])
            if _label(row) not in labels:
                labels.append(_label(row))
    for (source, dest), labels in edges.items():
        lines.append(f"        {source} --> {dest}: {', '.join(labels)}")
    lines += [f"        {state['name']} --> [*]" for state in states if state["name"] in final]
    lines.append("    }")
    return lines


def mermaid() -> str:
    """Both machines as one mermaid state diagram (without the ``` fence)."""
    lines = ["stateDiagram-v2"]
    lines += _machine("Sale", SALE_STATES, SALE_TRANSITIONS, {s.value for s in SALE_FINAL})
    lines += _machine("Refund", REFUND_STATES, REFUND_TRANSITIONS, {s.value for s in REFUND_FINAL})
    return "\n".join(lines) + "\n"
