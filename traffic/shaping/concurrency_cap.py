"""`concurrency-cap`: at most `c` requests at the server, the rest held in arrival order.

A request counts from its release until the executor reports it finished (ok or not), so a request
released but not yet sent already takes its place: the cap holds even when sending lags.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import ClassVar

import numpy as np
from pydantic import Field

from traffic.shaping.policy_api import Policy, QueuePolicy
from traffic.shaping.policy_params import PolicySpec


class _Cap(QueuePolicy):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        # Only a finish frees a place, and the executor polls after every event: no timer needed.
        return list(islice(self.held, max(0, self.c - len(self.in_flight)))), None


class ConcurrencyCapSpec(PolicySpec):
    kind: ClassVar[str] = "concurrency-cap"
    summary: ClassVar[str] = (
        "releases a request as soon as fewer than `c` are in flight at the server (released and not "
        "finished); the others wait in arrival order"
    )

    c: int = Field(ge=1, description="the most requests in flight at the server (>= 1)")

    def create(self, rng: np.random.Generator) -> Policy:
        return _Cap(self.c)
