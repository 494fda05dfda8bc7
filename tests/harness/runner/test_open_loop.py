"""Open-loop plans against the real mock server: sent on time, every API, streaming and not.

Timing asserts are loose (the machine has 2 shared cores); the load-generator benchmark measures
lateness precisely.
"""

from __future__ import annotations

import numpy as np
import pytest
from runner_helpers import one_row_each, plan_of, run_plan

SCHEDULES = ["fixed:interval=0.02", "uniform:low=0.005,high=0.035", "bursty:size=5,intra=0.002,gap=0.1"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.split(":")[0])
def test_schedule_is_sent_on_time(fast_mock, tmp_path, schedule: str, stream: bool) -> None:
    plan = plan_of(schedule, n=40)
    result = run_plan(fast_mock.url, plan, tmp_path, stream=stream)
    rows = one_row_each(result, plan).sort_values("request_id")
    assert (rows["status"] == "ok").all(), rows["error"].dropna().head()

    lateness_ms = rows["lateness_ns"].to_numpy(dtype=float) / 1e6
    assert lateness_ms.min() >= 0  # never sent before its deadline
    assert np.median(lateness_ms) < 5 and np.percentile(lateness_ms, 99) < 50

    # Each request was due at the arm's start + its own offset, an absolute deadline.
    (window,) = result.arms
    offsets_ns = plan.rows["offset_s"].to_numpy() * 1e9
    assert np.allclose(rows["planned_ns"].to_numpy(dtype=float) - window.start_ns, offsets_ns, atol=1e3)
    sent_offsets = rows["sent_ns"].to_numpy(dtype=float) - window.start_ns
    assert np.median(np.abs(sent_offsets - offsets_ns)) < 5e6

    assert (rows["output_tokens"] == 4).all() and (rows["prompt_tokens"] > 0).all()
    if stream:
        # A busy server may put several tokens into one chunk: chunks are counted, never taken for tokens.
        assert rows["chunks"].between(1, 4).all()
        assert (rows["first_byte_ns"] <= rows["first_token_ns"]).all()
        assert (rows["first_token_ns"] <= rows["last_token_ns"]).all()
    else:
        assert (rows["chunks"] == 0).all()
        assert (rows["first_token_ns"] == rows["last_token_ns"]).all()
    assert (rows["last_token_ns"] <= rows["done_ns"]).all()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("backend", ["openai-chat", "openai-completions", "tgi"])
def test_every_api(fast_mock, tmp_path, backend: str, stream: bool) -> None:
    plan = plan_of("fixed:interval=0.01", n=10)
    result = run_plan(fast_mock.url, plan, tmp_path, backend=backend, stream=stream)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all(), rows["error"].dropna().head()
    assert (rows["output_tokens"] == 4).all() and (rows["finish_reason"] == "length").all()
    assert rows["chunks"].between(1, 4).all() if stream else (rows["chunks"] == 0).all()
    if backend == "tgi":
        assert set(rows["api"]) == {"tgi-generate"}
        assert (rows["prompt_tokens"] > 0).all()
        if not stream:
            assert rows["server_timing"].str.contains('"x-queue-time"').all()


def test_warmup_rows_are_extra_and_flagged(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.01", n=5)
    result = run_plan(fast_mock.url, plan, tmp_path, warmup=2)
    requests = result.requests
    warm = requests[requests["warmup"]]
    assert warm["request_id"].tolist() == [-1, -2]
    assert (warm["status"] == "ok").all()
    assert (warm["done_ns"] <= result.start_ns).all()  # before the measured plan started
    one_row_each(result, plan)
    assert result.folder.manifest()["records"] == {
        "rows": 5, "warmup_rows": 2, "status_counts": {"ok": 5}, "recovered": False, "issues": [],
    }  # fmt: skip
