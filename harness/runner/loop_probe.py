"""The runner's event-loop lag: a probe that wakes on an absolute grid and records how late it woke.

Every send, response read and log write of the run shares one event loop. When the loop is busy (a
burst of responses, a slow callback, a CPU taken away) a timer due now runs later, and so does every
send due meanwhile: lateness the schedule cannot show by itself in a closed-loop arm, or in an arm
whose sends happen to fall between the stalls. The probe is a timer like the sends' own, on a grid of
absolute deadlines (`PERIOD_NS` apart from its start; a wake-up that overslept skips the deadlines it
missed, so a stall counts once, at its full length).
"""

from __future__ import annotations

import time

import numpy as np

from harness.energy.figures import DispatchLateness
from harness.energy.stats import percentiles
from harness.runner.timing import sleep_until

_now = time.monotonic_ns
PERIOD_NS = 10_000_000  # 100 wake-ups a second: a negligible load, and stalls of 10 ms resolved


class LoopProbe:
    def __init__(self, period_ns: int = PERIOD_NS) -> None:
        self.period_ns = period_ns
        self._lags: list[int] = []

    async def run(self) -> None:
        """Wake on the grid until cancelled, recording each wake-up's lateness (ns)."""
        period = self.period_ns
        due = _now() + period
        while True:
            await sleep_until(due)
            now = _now()
            self._lags.append(now - due)
            due += period * ((now - due) // period + 1)  # the next deadline after now: none owed

    def take(self) -> list[int]:
        """The lags recorded since the last call (an arm's, when called at its start and end)."""
        lags, self._lags = self._lags, []
        return lags


def lag_figures(lags_ns: list[int]) -> DispatchLateness | None:
    """Percentiles and the max of the lags, in ms; None without any."""
    if not lags_ns:
        return None
    ms = np.asarray(lags_ns, dtype=float) / 1e6
    return {**percentiles(ms), "max": float(ms.max())}
