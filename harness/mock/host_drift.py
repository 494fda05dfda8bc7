"""Host drift: a slowly varying multiplier on every engine step's duration, in simulated time.

On a real host, repeats of one arm minutes apart differ: on our H100 host the decode step time
varied by about ±20% between repeats, and the order the arms ran in moved their energy per request
by up to ~20%. With `step_time.drift_cv` > 0 the mock varies the same way, so that experiment
designs (random arm order, paired statistics) can be tried on it. It models the effect, not its
causes (clocks, host CPU load, neighbours).

The multiplier is m = exp(x), x an Ornstein-Uhlenbeck process in simulated time, stationary:

- log space for the process, so m stays positive and a change is relative (a slower host slows
  every step by the same share);
- mean 1 in linear space (x has variance s² = log(1 + cv²) and mean -s²/2), so a long run keeps the
  step times the profile was fitted to, measurements that already averaged over the host's drift;
  and `drift_cv` is exactly m's coefficient of variation (m is lognormal);
- x's autocorrelation at lag τ is exp(-τ / drift_time_s); m's is (exp(s²·ρ) - 1) / (exp(s²) - 1)
  with ρ that value, within 0.01 of it for cv ≤ 0.25.

It is sampled at each step's start with the exact transition over the time since the last sample,
so its law does not depend on how often steps happen, or on idle gaps between them. The first
sample comes from the stationary law (the host has been up a while). Draws come from their own
stream, seeded from the simulator's seed: output lengths and faults draw exactly as without drift.
"""

from __future__ import annotations

import math
import random

from harness.mock.profile import StepTime


class HostDrift:
    def __init__(self, step_time: StepTime, seed: int, t0: float = 0.0) -> None:
        var = math.log1p(step_time.drift_cv**2)
        self._sd = math.sqrt(var)
        self._mean = -var / 2.0
        self._time_s = step_time.drift_time_s
        self._rng = random.Random(f"host-drift-{seed}")
        self._t = t0
        self._x = self._rng.gauss(self._mean, self._sd)

    def at(self, t: float) -> float:
        """The multiplier at simulated time `t` (times never go back; a repeated time, the same value)."""
        dt = t - self._t
        if dt > 0.0:
            keep = math.exp(-dt / self._time_s)
            noise = self._sd * math.sqrt(1.0 - keep * keep) * self._rng.gauss(0.0, 1.0)
            self._x = self._mean + (self._x - self._mean) * keep + noise
            self._t = t
        return math.exp(self._x)
