"""Fault injection: each request draws its faults from a seeded generator, in arrival order.

What each fault does (the HTTP layer carries it out):

- `error_rate`: answer at once with one of `error_statuses` (500/502/503/504), in the API's error body.
- `rate_limit_rate`: answer at once with 429 and a `Retry-After: retry_after_s` header.
- `spike_rate`: hold the request `spike_s` (simulated seconds) before it reaches the server.
- `stall_rate`: streaming — pause `stall_s` at a random point of the stream (tokens keep coming and
  arrive together afterwards); non-streaming — delay the response by `stall_s`.
- `disconnect_rate`: drop the connection — mid-stream after a random number of tokens, or, when not
  streaming, right after the status line and headers (200, with the whole body's Content-Length) and
  before any body byte. So the client sees success first and must notice the cut itself: the harder
  case for a client, and the one a server crashing mid-response produces (a hang-up before any byte
  looks like a refused connection, which a stopped server already shows).
- `malformed_rate`: streaming — one event at a random point carries truncated JSON; non-streaming — the
  body is truncated JSON (with status 200).
- `no_usage_rate`: the response has no usage (no usage chunk although requested; no `usage` field;
  TGI: no `details`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.mock.profile import Faults


@dataclass(frozen=True)
class FaultPlan:
    error_status: int | None = None
    rate_limited: bool = False
    spike: bool = False
    # Where in the output (0..1, a fraction of its tokens) a stall, disconnect or malformed event falls.
    stall_at: float | None = None
    disconnect_at: float | None = None
    malformed_at: float | None = None
    no_usage: bool = False

    def positions(self, tokens: int) -> tuple[int | None, int | None, int | None]:
        """Token counts (1..tokens) after which the stall, the hang-up and the malformed event happen."""

        def at(fraction: float | None) -> int | None:
            return None if fraction is None else 1 + int(fraction * max(tokens - 1, 0))

        return at(self.stall_at), at(self.disconnect_at), at(self.malformed_at)


NO_FAULTS = FaultPlan()


class FaultDrawer:
    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.enabled = any(
            getattr(faults, name) > 0
            for name in (
                "error_rate",
                "rate_limit_rate",
                "spike_rate",
                "stall_rate",
                "disconnect_rate",
                "malformed_rate",
                "no_usage_rate",
            )
        )
        self._rng = random.Random(f"faults-{seed}")

    def draw(self) -> FaultPlan:
        if not self.enabled:
            return NO_FAULTS
        f, rng = self.faults, self._rng
        # Draw every decision for every request, so one rate's setting never shifts another's dice.
        u = [rng.random() for _ in range(11)]
        if u[0] < f.rate_limit_rate:
            return FaultPlan(rate_limited=True)
        if u[1] < f.error_rate:
            return FaultPlan(error_status=f.error_statuses[int(u[2] * len(f.error_statuses))])
        return FaultPlan(
            spike=u[3] < f.spike_rate,
            stall_at=u[5] if u[4] < f.stall_rate else None,
            disconnect_at=u[7] if u[6] < f.disconnect_rate else None,
            malformed_at=u[9] if u[8] < f.malformed_rate else None,
            no_usage=u[10] < f.no_usage_rate,
        )
