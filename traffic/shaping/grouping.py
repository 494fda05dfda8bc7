"""Policies that release held requests together: `window` (on a clock) and `batch` (on a count or a wait).

Both release everything they hold at once, in arrival order: a group reaches the server together,
which is what lets a continuous-batching server serve it in fewer, fuller steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from traffic.shaping.policy_api import Policy, QueuePolicy
from traffic.shaping.policy_params import MAX_SECONDS, PolicySpec, seconds_ns


class _Window(QueuePolicy):
    def __init__(self, period: float) -> None:
        super().__init__()
        self.period_ns = seconds_ns(period)

    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        if not self.held:
            return [], None
        assert self.start_ns is not None  # poll refuses to run before start
        boundary = now_ns - (now_ns - self.start_ns) % self.period_ns  # the latest one <= now
        if boundary >= next(iter(self.held.values())).arrived_ns:  # one passed since the oldest came
            return list(self.held), None
        return [], boundary + self.period_ns


class _Batch(QueuePolicy):
    def __init__(self, k: int, max_wait: float) -> None:
        super().__init__()
        self.k = k
        self.max_wait_ns = seconds_ns(max_wait)

    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        if not self.held:
            return [], None
        due_ns = next(iter(self.held.values())).arrived_ns + self.max_wait_ns
        if len(self.held) >= self.k or now_ns >= due_ns:
            return list(self.held), None
        return [], due_ns


class WindowSpec(PolicySpec):
    kind: ClassVar[str] = "window"
    summary: ClassVar[str] = (
        "holds every request and releases all of them together at each multiple of `period` after "
        "the start (a request arriving exactly on a boundary goes at once)"
    )

    period: float = Field(
        gt=0, le=MAX_SECONDS, description="seconds between releases (> 0)", json_schema_extra={"unit": "s"}
    )

    def create(self, rng: np.random.Generator) -> Policy:
        return _Window(self.period)


class BatchSpec(PolicySpec):
    kind: ClassVar[str] = "batch"
    summary: ClassVar[str] = (
        "holds requests and releases all of them together as soon as `k` wait or the oldest has "
        "waited `max_wait` seconds"
    )

    k: int = Field(
        ge=1, description="release when this many requests wait (>= 1)", json_schema_extra={"label": "k"}
    )
    max_wait: float = Field(
        gt=0,
        le=MAX_SECONDS,
        description="release when the oldest has waited this many seconds (> 0)",
        json_schema_extra={"unit": "s"},
    )

    def create(self, rng: np.random.Generator) -> Policy:
        return _Batch(self.k, self.max_wait)
