"""When each arm starts: after the previous arm's last response plus `arm_gap_s`, and with `--start-at`
also no earlier than its fixed time on the shared clock (see harness/runner/dispatcher.py). One
dispatcher's own arms and a worker pool's parent (harness/runner/workers.py) both follow it."""

from __future__ import annotations

from traffic.plan import ArmSpec


class ArmClock:
    def __init__(self, t0_ns: int, fixed: bool, gap_ns: int, last_offset_ns: dict[str, int]) -> None:
        self._scheduled: int | None = t0_ns if fixed else None
        self._previous_end: int | None = None
        self._gap = gap_ns
        self._last_offset = last_offset_ns

    def start(self, now_ns: int) -> int:
        """The next arm's start; `now_ns` when nothing fixes it (the first arm without --start-at)."""
        end = None if self._previous_end is None else self._previous_end + self._gap
        candidates = [t for t in (self._scheduled, end) if t is not None]
        return max(candidates) if candidates else now_ns

    @property
    def fixed(self) -> bool:
        """The next arm has a fixed start on the shared clock (kept even when it has passed)."""
        return self._scheduled is not None

    def ended(self, arm: ArmSpec, end_ns: int) -> None:
        self._previous_end = end_ns
        if self._scheduled is not None and not arm.closed_loop:
            self._scheduled += self._last_offset[arm.name] + self._gap
        else:
            self._scheduled = None  # a closed-loop arm has no planned end: later arms follow its drain
