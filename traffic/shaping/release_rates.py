"""Policies that bound the release rate: `passthrough` (no bound), `pace` and `token-bucket`.

`pace` and `token-bucket` are one algorithm, the generic cell rate algorithm (GCRA, the virtual
scheduling form of a token bucket): a theoretical time `tat` advances by one interval per release,
and a request may go once `now >= tat - (burst - 1) * interval`. In integer nanoseconds, with the
interval rounded up, so no interval [t0, t1] ever holds more than burst + rate * (t1 - t0) releases;
requests wait in arrival order and none is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from traffic.shaping.policy_api import Policy, QueuePolicy
from traffic.shaping.policy_params import MAX_SECONDS, PolicySpec, interval_ns

_RATE = "requests per second (at least 1e-9)"


class _Passthrough(QueuePolicy):
    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        return list(self.held), None


class _Gcra(QueuePolicy):
    def __init__(self, rate: float, burst: int) -> None:
        super().__init__()
        self.interval_ns = interval_ns(rate)
        self.tolerance_ns = (burst - 1) * self.interval_ns
        self.tat_ns = 0

    def start(self, now_ns: int) -> None:
        super().start(now_ns)
        self.tat_ns = now_ns  # the bucket starts full

    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        out: list[int] = []
        for request_id in self.held:
            if now_ns < self.tat_ns - self.tolerance_ns:
                return out, self.tat_ns - self.tolerance_ns
            out.append(request_id)
            # An idle bucket refills only up to burst: tat never falls behind now.
            self.tat_ns = max(self.tat_ns, now_ns) + self.interval_ns
        return out, None


class PassthroughSpec(PolicySpec):
    kind: ClassVar[str] = "passthrough"
    summary: ClassVar[str] = (
        "releases every request the moment it arrives: the unshaped baseline, so every arm has both an "
        "arrival and a release time"
    )

    def create(self, rng: np.random.Generator) -> Policy:
        return _Passthrough()


class PaceSpec(PolicySpec):
    kind: ClassVar[str] = "pace"
    summary: ClassVar[str] = (
        "smoothing: releases in arrival order, consecutive releases at least 1/rate apart (a "
        "token bucket of burst 1); a request that finds the pace idle goes at once"
    )

    rate: float = Field(
        ge=1 / MAX_SECONDS, description=f"release rate: {_RATE}", json_schema_extra={"unit": "rps"}
    )

    def create(self, rng: np.random.Generator) -> Policy:
        return _Gcra(self.rate, 1)


class TokenBucketSpec(PolicySpec):
    kind: ClassVar[str] = "token-bucket"
    summary: ClassVar[str] = (
        "a bucket of `burst` tokens refilled at `rate` per second, full at the start; a request "
        "takes a token to be released and otherwise waits in arrival order (queued, never dropped)"
    )

    rate: float = Field(
        ge=1 / MAX_SECONDS, description=f"token refill rate: {_RATE}", json_schema_extra={"unit": "rps"}
    )
    burst: int = Field(
        ge=1,
        description="bucket size: the most releases at one instant (>= 1)",
        json_schema_extra={"label": "b"},
    )

    def create(self, rng: np.random.Generator) -> Policy:
        return _Gcra(self.rate, self.burst)
