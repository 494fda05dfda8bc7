"""What the measurement stages of one run share: the idle windows, the primary power source, notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.energy import Window
from harness.runner import RunResult


@dataclass
class MeasureState:
    idle_pre: Window | None = None
    idle_post: Window | None = None
    primary_kind: str | None = None  # the power source the join used (after any fallback)
    counter_period_s: float | None = None  # how often the primary's energy counter steps (0: exact)
    sensor_delay_s: float | None = None  # how far the primary's readings trail the work, if it knows
    interrupted: bool = False  # Ctrl-C during the stages (the run itself reports its own stop)
    notes: list[str] = field(default_factory=list)

    def window(self, result: RunResult) -> tuple[int, int]:
        """The span power is needed for: the idle windows and the run between them."""
        start = self.idle_pre.start_ns if self.idle_pre else result.start_ns
        end = self.idle_post.end_ns if self.idle_post else result.end_ns
        return min(start, result.start_ns), max(end, result.end_ns)
