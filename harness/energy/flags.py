"""Flags: problems with a result are reported next to it, never hidden in a number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

SEVERITIES = ("info", "warning", "error")


class FlagRecord(TypedDict):
    """A flag as summary.json lists it."""

    code: str
    severity: str
    message: str
    scope: str


@dataclass(frozen=True)
class Flag:
    code: str  # stable, machine-readable (e.g. "low_coverage")
    severity: str  # info | warning | error
    message: str  # one line for humans, with the numbers that triggered it
    scope: str = "run"  # "run", an arm name, or "gpu <index>"

    def as_dict(self) -> FlagRecord:
        return {"code": self.code, "severity": self.severity, "message": self.message, "scope": self.scope}


class FlagList(list[Flag]):
    def add(self, code: str, severity: str, message: str, scope: str = "run") -> None:
        assert severity in SEVERITIES, severity
        self.append(Flag(code, severity, message, scope))

    def codes(self, scope: str | None = None) -> list[str]:
        return sorted({f.code for f in self if scope is None or f.scope in (scope, "run")})
