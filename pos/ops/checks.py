"""One line of `pos doctor`: a check's name, its level and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Level", "CheckResult", "ok", "warn", "fail"]


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: Level
    detail: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.level is not Level.FAIL

    def line(self) -> str:
        return f"{self.level.value:<4} {self.name}: {self.detail}"


def ok(name: str, detail: str, **data: Any) -> CheckResult:
    return CheckResult(name, Level.OK, detail, data)


def warn(name: str, detail: str, **data: Any) -> CheckResult:
    return CheckResult(name, Level.WARN, detail, data)


def fail(name: str, what: str, todo: str, **data: Any) -> CheckResult:
    return CheckResult(name, Level.FAIL, f"{what} — {todo}", data)
