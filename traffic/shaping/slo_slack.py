"""`slo-slack`: hold requests while the SLO leaves room, then release the whole group together.

With an estimate (`service_estimate`: predicted server-side TTFT `ttft^`, time per output token
`tpot^`), a held request i that arrived at a_i and were released at t would be predicted to see
  TTFT_i(t) = (t - a_i) + ttft^                              (as its user sees it, from arrival)
  E2E_i(t)  = (t - a_i) + ttft^ + (max_tokens_i - 1) * tpot^
Each SLO given sets a latest release time, SLO - margin - the prediction after a_i; the group is
released at the earliest latest time over what is held (for TTFT, the oldest request's). Holding longer
cannot help once that time has come or passed (the SLO would be missed, or already is): everything
held goes at once. With no estimate yet (no first token seen; for `e2e`, no finished request with 2
or more tokens, or a request without max_tokens) it releases at once, like passthrough.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from traffic.shaping.policy_api import Policy, QueuePolicy
from traffic.shaping.policy_params import MAX_SECONDS, PolicySpec, seconds_ns
from traffic.shaping.service_estimate import ServiceEstimate


class _SloSlack(QueuePolicy):
    def __init__(self, spec: SloSlackSpec) -> None:
        super().__init__()
        self.ttft_slo_ns = None if spec.ttft is None else seconds_ns(spec.ttft)
        self.e2e_slo_ns = None if spec.e2e is None else seconds_ns(spec.e2e)
        self.margin_ns = round(spec.margin * 1e9)
        self.estimate = ServiceEstimate(spec.alpha, spec.spread)

    def first_token(self, now_ns: int, request_id: int) -> None:
        super().first_token(now_ns, request_id)
        self.estimate.first_token(request_id, self.sent_ns[request_id], now_ns)

    def finished(self, now_ns: int, request_id: int, ok: bool, output_tokens: int | None) -> None:
        super().finished(now_ns, request_id, ok, output_tokens)
        self.estimate.finished(request_id, now_ns, ok, output_tokens)

    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        if not self.held:
            return [], None
        latest_ns = self._latest_release_ns()
        if latest_ns is None or now_ns >= latest_ns:
            return list(self.held), None
        return [], latest_ns

    def _latest_release_ns(self) -> int | None:
        """The last time the group can go with every SLO predicted met; None without an estimate."""
        ttft = self.estimate.ttft_ns()
        if ttft is None:
            return None
        latest: list[float] = []
        if self.ttft_slo_ns is not None:  # the oldest request is the tightest: one ttft^ for all
            oldest = next(iter(self.held.values()))
            latest.append(oldest.arrived_ns + self.ttft_slo_ns - self.margin_ns - ttft)
        if self.e2e_slo_ns is not None:
            per_token = self.estimate.per_token_ns()
            for held in self.held.values():
                if per_token is None or held.request.max_tokens is None:
                    return None
                decode = (held.request.max_tokens - 1) * per_token
                latest.append(held.arrived_ns + self.e2e_slo_ns - self.margin_ns - ttft - decode)
        return math.floor(min(latest))  # rounded early: never later than the prediction allows


class SloSlackSpec(PolicySpec):
    kind: ClassVar[str] = "slo-slack"
    summary: ClassVar[str] = (
        "holds requests while their predicted user-side TTFT (and E2E) stay within the SLO, then "
        "releases the held group together; releases at once while it has no estimate (see the rule below)"
    )

    ttft: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        description="SLO on time to first token from the user's arrival, seconds (give ttft, e2e or both)",
        json_schema_extra={"label": "ttft", "unit": "s"},
    )
    e2e: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        description="SLO on end-to-end latency from the user's arrival, "
        "seconds, predicted with each request's max_tokens",
        json_schema_extra={"label": "e2e", "unit": "s"},
    )
    margin: float = Field(
        0.1,
        ge=0,
        le=MAX_SECONDS,
        description="seconds kept in reserve below each SLO, for the "
        "executor's poll latency and the estimate's error",
        json_schema_extra={"label": "margin", "unit": "s"},
    )
    alpha: float = Field(
        0.125,
        gt=0,
        le=1,
        description="weight of the newest sample in the running estimates (0 < alpha <= 1)",
        json_schema_extra={"label": "alpha"},
    )
    spread: float = Field(
        2.0,
        ge=0,
        le=100,
        description="mean absolute deviations added to each estimate's mean, so a "
        "prediction errs long (0 to 100)",
        json_schema_extra={"label": "spread"},
    )

    @model_validator(mode="after")
    def _needs_an_slo(self) -> SloSlackSpec:
        if self.ttft is None and self.e2e is None:
            raise ValueError("give ttft, e2e or both (the SLO in seconds)")
        return self

    def create(self, rng: np.random.Generator) -> Policy:
        return _SloSlack(self)
