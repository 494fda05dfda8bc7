"""What `execute_plan` hands to the stages after it (power fetch, energy join, report)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.clock import ClockAnchor
from harness.energy.figures import DispatchLateness
from harness.runfolder import RunFolder


@dataclass(frozen=True)
class ArmRun:
    """One arm's measured window on the harness monotonic clock: from its start (the first request's
    due time) to its last response."""

    name: str
    start_ns: int
    end_ns: int
    planned: int  # requests of this arm in this run (its shard's slice)
    sent: int
    cpu_s: float | None = None  # the runner's CPU time during the arm (None: not measured, e.g. merged)
    loop_lag_ms: DispatchLateness | None = None  # the loop probe's wake-up lateness during the arm
    workers: int = 1  # processes that sent it (--workers): cpu_s is their sum, loop_lag_ms of all wake-ups
    busiest_cpu_s: float | None = None  # with workers > 1: the busiest worker's CPU time
    # The sender processes' CPU time during the arm (--transport sender): in `cpu_share_total`, not in
    # `cpu_share`, which is a loop's (a sender is a process of its own, on whatever core is free).
    sender_cpu_s: float | None = None

    def client(self) -> dict[str, object] | None:
        """The runner's own figures for the manifest's `arms[].client` (None when not measured).
        `cpu_share` is of the busiest loop process, one core saturated at 1.0 whatever the worker count;
        `cpu_share_total` (with workers or a sender) is of every process of the runner together."""
        if self.cpu_s is None:
            return None
        wall_s = (self.end_ns - self.start_ns) / 1e9
        if wall_s <= 0:
            return {"cpu_share": None, "loop_lag_ms": self.loop_lag_ms}
        busiest = self.cpu_s if self.busiest_cpu_s is None else self.busiest_cpu_s
        figures: dict[str, object] = {"cpu_share": busiest / wall_s, "loop_lag_ms": self.loop_lag_ms}
        if self.workers > 1:
            figures["workers"] = self.workers
        if self.workers > 1 or self.sender_cpu_s is not None:
            figures["cpu_share_total"] = (self.cpu_s + (self.sender_cpu_s or 0.0)) / wall_s
        return figures


@dataclass
class RunResult:
    folder: RunFolder
    anchor: ClockAnchor  # maps every *_ns time of the run to epoch time
    start_ns: int  # measured start: the first arm's start (after warm-up)
    end_ns: int  # the last arm's end (or when a stop finished)
    arms: list[ArmRun]
    stop_reason: str  # completed | interrupted | aborted | time_limit
    requests: pd.DataFrame  # requests.parquet as written (warm-up rows included, flagged)
    client_cpu_s: float  # CPU time this process spent executing (warm-up, sending, draining)

    @property
    def measured(self) -> pd.DataFrame:
        """The request rows results are computed from (warm-up rows excluded)."""
        return self.requests[~self.requests["warmup"]]

    def status_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.measured["status"].value_counts().items()}
