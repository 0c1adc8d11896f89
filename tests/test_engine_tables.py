"""The engine's tables agree with each other, with the state groups and with README's diagram."""

from __future__ import annotations

import re
from pathlib import Path

from pos.config import PaymentSection
from pos.core.diagram import mermaid
from pos.core.items import Repeat, RetryLeft, Row, Start
from pos.core.records import (
    REFUND_FINAL,
    SALE_ABORTABLE,
    SALE_ACTIVE,
    SALE_FINAL,
    SALE_SETTLED_FOR_CASHIER,
    RefundState,
    SaleState,
)
from pos.core.refund import REFUND_ANSWERS, REFUND_STATES, REFUND_TRANSITIONS
from pos.core.sale import SALE_ANSWERS, SALE_STATES, SALE_TRANSITIONS
from pos.core.schedule import Retried, retry_table

README = Path(__file__).resolve().parent.parent / "README.md"
RETRIES = retry_table(PaymentSection().schedule())
ROWS = [*SALE_TRANSITIONS, *REFUND_TRANSITIONS]


def sources(row: Row) -> list[str]:
    return [row["source"]] if isinstance(row["source"], str) else list(row["source"])


def test_readme_diagram_is_generated_from_the_tables() -> None:
    block = re.search(r"```mermaid\n(.*?)```", README.read_text("utf-8"), re.S)
    assert block is not None, "README.md has no mermaid block"
    assert block.group(1) == mermaid(), (
        "README's state diagram differs from the transition tables: replace the block with the output of "
        "python -c 'from pos.core.diagram import mermaid; print(mermaid(), end=\"\")'")


def test_a_repeated_request_falls_through_to_where_its_retries_end() -> None:
    for i, row in enumerate(ROWS):
        for condition in row.get("conditions", []):
            if not isinstance(condition, RetryLeft):
                continue   # a policy condition (late_success), not a retry
            retry = RETRIES[condition.retried]
            fallback = [r for r in ROWS[i + 1:] if r["trigger"] == row["trigger"] and sources(r) == sources(row)]
            if retry.exhausted is None:
                # No count limit, or a series the background corrector continues in the same state.
                assert all(r["dest"] is None for r in fallback), row["trigger"]
            else:
                assert fallback and fallback[0]["dest"] == retry.exhausted.value, row["trigger"]


def test_every_retry_of_the_table_is_used_by_a_transition() -> None:
    used: set[Retried] = set()
    for row in ROWS:
        for callback in [*row.get("conditions", []), *row.get("after", [])]:
            if isinstance(callback, (RetryLeft, Repeat, Start)):
                used.add(callback.retried)
    for state in [*SALE_STATES, *REFUND_STATES]:
        used |= {cb.retried for cb in state.get("on_enter", []) if isinstance(cb, Start)}
    assert used == set(Retried)


def test_every_answer_fires_a_trigger_valid_in_its_state() -> None:
    answers: dict[tuple[str, str, object], str] = {
        **{(r, s.value, v): t for (r, s, v), t in SALE_ANSWERS.items()},
        **{(r, s.value, v): t for (r, s, v), t in REFUND_ANSWERS.items()},
    }
    for (_, state, _), trigger in answers.items():
        assert any(row["trigger"] == trigger and state in sources(row) for row in ROWS), (state, trigger)


def test_state_groups_match_the_tables() -> None:
    assert {SaleState(s) for row in SALE_TRANSITIONS if row["trigger"] == "abort" for s in sources(row)} \
        == SALE_ABORTABLE
    for row in SALE_TRANSITIONS:
        assert not {SaleState(s) for s in sources(row)} & SALE_FINAL, row
    for row in REFUND_TRANSITIONS:
        assert not {RefundState(s) for s in sources(row)} & REFUND_FINAL, row
    assert set(SaleState) - SALE_SETTLED_FOR_CASHIER == SALE_ACTIVE
    assert {SaleState(s["name"]) for s in SALE_STATES} == set(SaleState)
    assert {RefundState(s["name"]) for s in REFUND_STATES} == set(RefundState)
