"""The engine's Machine (pos/core/machine.py) runs a trigger as transitions' own Machine does: the same
callbacks in the same order, the same state, the same result, the same refusal of a trigger with no row."""

from __future__ import annotations

from typing import Any

import pytest
from transitions import EventData, Machine, MachineError

from pos.core.items import Row, StateRow
from pos.core.machine import TableMachine


class Model:
    def __init__(self) -> None:
        self.state = "A"


def table(calls: list[str]) -> tuple[list[StateRow], list[Row]]:
    def note(name: str) -> Any:
        def callback(ev: EventData) -> None:
            calls.append(f"{name} now={ev.kwargs['now']}")
        return callback

    def holds(answer: bool) -> Any:
        def condition(ev: EventData) -> bool:
            calls.append(f"condition {answer}")
            return answer
        return condition

    states: list[StateRow] = [{"name": "A", "on_enter": [note("enter A")]},
                              {"name": "B", "on_enter": [note("enter B")]}]
    rows: list[Row] = [
        # Tried in order: the first row's condition fails (its prepare ran), the second row runs.
        {"trigger": "go", "source": "A", "dest": "A", "prepare": [note("prepare 1")], "conditions": [holds(False)]},
        {"trigger": "go", "source": "A", "dest": "B", "prepare": [note("prepare 2")], "conditions": [holds(True)],
         "after": [note("after 2")]},
        # Internal: the state stays and no state is entered.
        {"trigger": "stay", "source": "B", "dest": None, "prepare": [note("prepare stay")],
         "after": [note("after stay")]},
        # No row's conditions hold: nothing changes and the trigger answers False.
        {"trigger": "never", "source": "B", "dest": "A", "conditions": [holds(False)]},
        {"trigger": "back", "source": ["A", "B"], "dest": "A"},
    ]
    return states, rows


def run(fire: Any, model: Model) -> list[object]:
    return [(fire(model, trigger), model.state) for trigger in ("go", "stay", "never", "back", "go")]


def test_a_trigger_runs_as_in_transitions_own_machine() -> None:
    ours: list[str] = []
    states, rows = table(ours)
    machine = TableMachine(states, rows)
    model = Model()
    machine.set_state("A", model=model)
    got = run(lambda m, trigger: machine.fire(m, trigger, now=1.0), model)

    theirs: list[str] = []
    states, rows = table(theirs)
    stock_model = Model()
    Machine(model=stock_model, states=[dict(s) for s in states], transitions=[dict(t) for t in rows], initial="A",
            auto_transitions=False, send_event=True)
    expected = run(lambda m, trigger: m.trigger(trigger, now=1.0), stock_model)

    assert got == expected and ours == theirs
    assert ours[:6] == ["prepare 1 now=1.0", "condition False", "prepare 2 now=1.0", "condition True",
                        "enter B now=1.0", "after 2 now=1.0"]


def test_a_trigger_with_no_row_for_the_state_is_refused() -> None:
    states, rows = table([])
    machine = TableMachine(states, rows)
    model = Model()
    machine.set_state("A", model=model)
    with pytest.raises(MachineError, match="stay"):
        machine.fire(model, "stay", now=1.0)
    assert model.state == "A"
