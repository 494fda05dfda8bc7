"""Helpers shared by the runner tests: plans, a run helper, and checks on request logs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.backends import resolve_target
from harness.runfolder import RunFolder
from harness.runner import RunOptions, RunResult, execute_plan
from traffic.builder import build_plan
from traffic.plan import Plan
from traffic.spec import PlanSpec


def plan_of(*schedules: str, n: int = 20, max_tokens: int | None = 4, **extra: Any) -> Plan:
    spec = {"prompts": "synthetic", "schedules": list(schedules), "n": n, "seed": 3, **extra}
    if max_tokens is not None:
        spec.update(max_tokens=max_tokens, ignore_eos=True)
    return build_plan(PlanSpec.parse(spec))


def run_plan(url: str, plan: Plan, out: Path, backend: str = "auto", **options: Any) -> RunResult:
    """Execute `plan` into a folder under `out`. The transport is aiohttp unless given: the runner's
    tests were written for it, and the CLI's tests run the default (`auto`, the sender where it
    applies), so both keep their coverage."""
    target = asyncio.run(resolve_target(url, backend))
    folder = RunFolder.create(out, plan)
    options.setdefault("transport", "aiohttp")
    return execute_plan(
        plan, target, folder, RunOptions(progress=False, warmup=options.pop("warmup", 0), **options)
    )


def max_in_flight(rows: pd.DataFrame) -> int:
    """The most requests that were in flight (sent, not done) at any one time."""
    sent = rows["sent_ns"].dropna().to_numpy(dtype=np.int64)
    done = rows["done_ns"].dropna().to_numpy(dtype=np.int64)
    events = np.concatenate(
        [np.stack([sent, np.ones_like(sent)], 1), np.stack([done, -np.ones_like(done)], 1)]
    )
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # an end before a start at the same ns
    return int(np.cumsum(events[:, 1]).max())


def one_row_each(result: RunResult, plan: Plan) -> pd.DataFrame:
    """Assert the contract (exactly one row per planned request) and return the measured rows."""
    rows = result.measured
    assert sorted(rows["request_id"]) == plan.rows["request_id"].tolist()
    assert result.folder.requests_path.is_file()
    return rows
