"""The `transitions` Machine the engine runs its tables on (pos/core/sale.py, pos/core/refund.py).

Each table is a transitions Machine (its states, events, transitions and conditions), and a
trigger runs by transitions' rules: the rows of the trigger for the item's state are tried in
order; a row runs its prepare callbacks, then checks its conditions; the first row whose
conditions all hold runs its before callbacks, leaves the source state (on_exit), sets and
enters the destination (on_enter; an internal row, dest None, changes no state) and runs its
after callbacks. A trigger with no row for the state raises MachineError.
tests/test_engine_machine.py runs one table here and on transitions' own Machine and compares.

This Machine's events and transitions do that and no more. What transitions' own also do at
every trigger, and the engine never asks for, is left out: a queue of triggers, the machine-wide
callbacks (prepare_event, before/after_state_change, finalize_event, on_exception, on_final),
models bound to the machine with a method per trigger, and a debug or info log call at each
stage and per callback (about ten a trigger). A sale's two steps run in the daemon between a
commit and an HTTP call, with cold caches: there that work was about half of a trigger's time.
The constructor takes only the tables, so none of those options can be asked for and silently
not honoured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from transitions import EventData, Machine, MachineError
from transitions.core import Event, Transition

from pos.core.items import Row, StateRow

__all__ = ["TableMachine"]


class _Transition(Transition):
    def execute(self, event_data: EventData) -> bool:
        machine = event_data.machine
        machine.callbacks(self.prepare, event_data)
        for condition in self.conditions:
            if not condition.check(event_data):
                return False
        machine.callbacks(self.before, event_data)
        if self.dest is not None:
            machine.callbacks(machine.states[self.source].on_exit, event_data)
            dest = machine.states[self.dest]
            machine.set_state(dest, event_data.model)
            event_data.state = dest
            machine.callbacks(dest.on_enter, event_data)
        machine.callbacks(self.after, event_data)
        return True


class _Event(Event):
    def trigger(self, model: object, *args: Any, **kwargs: Any) -> bool:
        state = self.machine.get_model_state(model)
        rows = self.transitions.get(state.name)
        if not rows:
            raise MachineError(f"Can't trigger event {self.name} from state {state.name}!")
        event_data = EventData(state, self, self.machine, model, args, kwargs)
        for row in rows:
            event_data.transition = row
            if row.execute(event_data):
                event_data.result = True
                return True
        return False


class TableMachine(Machine):
    """One of the engine's tables as a transitions Machine. It holds no models: the engine sets an
    item's first state (`set_state(state, model=item)`) and fires its triggers (`fire`)."""

    transition_cls = _Transition
    event_cls = _Event

    def __init__(self, states: list[StateRow], transitions: list[Row]) -> None:
        super().__init__(model=None, states=[dict(s) for s in states], transitions=[dict(t) for t in transitions],
                         initial=states[0]["name"], auto_transitions=False, send_event=True,
                         ignore_invalid_triggers=False)

    def fire(self, item: object, trigger: str, **kwargs: object) -> bool:
        """Fire `trigger` on `item`: True when a row ran (False when no row's conditions held)."""
        return self.events[trigger].trigger(item, **kwargs)

    def callbacks(self, funcs: Iterable[str | Callable[..., bool | None]], event_data: EventData) -> None:
        """Call each callback; the tables hold callables only (a test holds it)."""
        for func in funcs:
            (self.resolve_callable(func, event_data) if isinstance(func, str) else func)(event_data)
