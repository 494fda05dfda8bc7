"""Ground truth for the energy split: each request's share of the simulated GPU's energy.

A debugging and benchmarking aid of the mock (`GET /sim/requests`), not a contract of real servers:
no real server knows what its requests cost, which is why joulebench estimates it.

The simulator knows where every joule went. A step of duration d at power P (`engine.py`) costs
E = P·d: idle power `idle_w·d` plus dynamic energy D = E − idle_w·d. Its requests share it by the
cost model the step was built from (profile: `step_time`, `power`):

- each request's *time* τ_r: the step's base time shared equally among its requests, plus its own
  marginal time (`per_decode_seq_s` for a decode token, `per_prefill_token_s` per prefill token);
- each request's *dynamic cost* v_r = (busy_w − idle_w)·τ_r + its marginal joules
  (`per_decode_token_j`, or `per_prefill_token_j` per prefill token);
- its idle share is idle_w·d·τ_r / Στ, its dynamic share D·v_r / Σv (a step stretched by the power
  limit or by host drift scales every share alike).

Between steps the GPU draws idle power that no request caused: `idle_between_steps_j`, idle power
times the simulated time outside steps. So Σ over requests (dynamic + idle) + idle between steps =
the simulated GPU's energy counter (`gpu_energy_j`, the engine's whole serving group), two sums kept
apart; exact when no step is in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.mock.engine import SimRequest, Step
from harness.mock.profile import Profile


@dataclass
class RequestTruth:
    dynamic_j: float = 0.0
    idle_j: float = 0.0
    prefill_dynamic_j: float = 0.0  # of its prefill steps (prompt tokens computed)
    steps: int = 0
    prompt_tokens: int = 0
    generated: int = 0
    finish_reason: str | None = None


class Truth:
    """A simulator listener that keeps every request's true energy (`step_done`, `request_done`)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.requests: dict[int, RequestTruth] = {}
        self.steps_j = 0.0  # energy of all steps
        self.busy_s = 0.0

    def step_done(self, step: Step) -> None:
        st, pw = self.profile.step_time, self.profile.power
        duration = step.end - step.start
        energy = step.power_w * duration
        idle = pw.idle_w * duration
        self.steps_j += energy
        self.busy_s += duration
        base = st.base_s / len(step.batch)
        taus, costs = [], []
        for (_, n), decode in zip(step.batch, step.decode, strict=True):
            if decode:
                tau, joules = base + st.per_decode_seq_s, pw.per_decode_token_j
            else:
                tau, joules = base + st.per_prefill_token_s * n, pw.per_prefill_token_j * n
            taus.append(tau)
            costs.append((pw.busy_w - pw.idle_w) * tau + joules)
        tau_sum, cost_sum = math.fsum(taus), math.fsum(costs)
        dynamic = energy - idle
        for (req, _), decode, tau, cost in zip(step.batch, step.decode, taus, costs, strict=True):
            truth = self._of(req)
            share = dynamic * cost / cost_sum if cost_sum > 0 else dynamic * tau / tau_sum
            truth.dynamic_j += share
            truth.idle_j += idle * tau / tau_sum
            truth.steps += 1
            if not decode:
                truth.prefill_dynamic_j += share
            truth.generated = req.generated
            truth.finish_reason = req.finish_reason

    def request_done(self, req: SimRequest) -> None:
        if req.rid in self.requests:
            self.requests[req.rid].finish_reason = req.finish_reason

    def _of(self, req: SimRequest) -> RequestTruth:
        truth = self.requests.get(req.rid)
        if truth is None:
            truth = self.requests[req.rid] = RequestTruth(prompt_tokens=req.prompt_tokens)
        return truth

    def document(self, gpu_energy_j: float, sim_time_s: float, step_in_flight: bool) -> dict:
        """`GET /sim/requests`: every request that took part in a step, and the account (exact when no
        step is in flight: the counter then holds whole steps and the idle time between them)."""
        requests = [
            {
                "rid": rid,
                "dynamic_j": t.dynamic_j,
                "idle_j": t.idle_j,
                "energy_j": t.dynamic_j + t.idle_j,
                "prefill_dynamic_j": t.prefill_dynamic_j,
                "steps": t.steps,
                "prompt_tokens": t.prompt_tokens,
                "generated": t.generated,
                "finish_reason": t.finish_reason,
            }
            for rid, t in sorted(self.requests.items())
        ]
        return {
            "sim_time_s": sim_time_s,
            "note": "the simulator's own account, for testing energy splits; not a contract of real servers",
            "idle_w": self.profile.power.idle_w,
            "steps_j": self.steps_j,
            "busy_s": self.busy_s,
            "idle_between_steps_j": self.profile.power.idle_w * (sim_time_s - self.busy_s),
            "gpu_energy_j": gpu_energy_j,
            "step_in_flight": step_in_flight,
            "requests": requests,
        }
