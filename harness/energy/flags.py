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


# Codes raised outside the modules that name them in their messages (appended; never renamed).
POWER_LAG_UNSTABLE = "power_lag_unstable"  # power_lag: `auto` could not pin down the sensor's delay
POWER_LAG_UNKNOWN = "power_lag_unknown"  # power_lag: activity changes, but too few for an estimate
POWER_LAG_CAPPED = "power_lag_capped"  # power_lag: the samples past the run were fewer than the lag
# client_load: the load generator could not carry its load (issue 19)
IN_FLIGHT_CAPPED = "in_flight_capped"  # requests waited at --max-in-flight
LOOP_LAG_OVER_BOUND = "loop_lag_over_bound"  # the runner's event loop lagged beyond its bound
CLIENT_CPU_SATURATED = "client_cpu_saturated"  # the runner used nearly a whole core
# telemetry: the GPU ran capped (issue 16)
GPU_THROTTLED = "gpu_throttled"  # an arm's GPU throttled (power cap, thermal or hardware slowdown)
POWER_LIMIT_CHANGED = "power_limit_changed"  # a GPU's enforced power limit changed during the run
# work_weights: the tokens or steps split could not use the run's work fit (issue 16)
TOKEN_FIT_UNUSABLE = "token_fit_unusable"
