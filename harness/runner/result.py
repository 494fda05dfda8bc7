"""What `execute_plan` hands to the stages after it (power fetch, energy join, report)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.clock import ClockAnchor
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
