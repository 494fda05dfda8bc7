"""Which worker of `--workers K` sends which request, and the log a worker appends to.

Open-loop arms are dealt round-robin by their order in the arm: worker k sends the arm's requests
k, k+K, k+2K, ... at the plan's own deadlines, a sparser schedule on the same clock. Closed-loop arms
(users who each wait for their last response) and shaped arms (a policy must see every request of
its arm) are not split: worker 0 runs them whole, and the warm-up too. The parent derives the same
owners to account for the requests of a worker that died.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.records import RequestRecord
from harness.runfolder.request_log import RecordLog
from traffic.plan import Plan


@dataclass(frozen=True)
class WorkerShare:
    index: int
    count: int

    def owners(self, plan: Plan, records: list[RequestRecord]) -> list[int]:
        """The worker of each of `records` (in their order)."""
        return owners(plan, records, self.count)


def owners(plan: Plan, records: list[RequestRecord], count: int) -> list[int]:
    split = {a.name for a in plan.header.arms if not a.closed_loop and a.policy is None}
    position: dict[str, int] = {}
    out = []
    for rec in records:
        if rec.warmup or rec.arm not in split:
            out.append(0)
            continue
        i = position.get(rec.arm, 0)
        position[rec.arm] = i + 1
        out.append(i % count)
    return out


class SharedLog(RecordLog):
    """The run's request log, opened by a worker to append to: its parent wrote the header. Every line is
    still one `os.write` on an O_APPEND descriptor, so lines of several processes never interleave."""

    def __init__(self, path: Path) -> None:  # no super().__init__: that one writes the header
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
