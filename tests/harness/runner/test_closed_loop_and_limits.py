"""Closed loop, arm order, the concurrency cap, the rate guard, the time limit and the per-request
timeout, against the real mock server."""

from __future__ import annotations

import numpy as np
import pytest
from runner_helpers import max_in_flight, one_row_each, plan_of, run_plan

from foundation.errors import InputError
from harness.runner import RunOptions


def test_closed_loop_keeps_n_users_busy(fast_mock, tmp_path) -> None:
    plan = plan_of("concurrency:n=3", n=30, max_tokens=8)
    result = run_plan(fast_mock.url, plan, tmp_path)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all()
    assert max_in_flight(rows) == 3
    (window,) = result.arms
    # Each user's first request is due at the arm start; every later one when a response ended.
    planned = np.sort(rows["planned_ns"].to_numpy(dtype=np.int64))
    assert (planned[:3] == window.start_ns).all()
    done = set(rows["done_ns"].to_numpy(dtype=np.int64))
    assert all(min(abs(p - d) for d in done) < 5_000_000 for p in planned[3:])
    assert np.median(rows["lateness_ns"].to_numpy(dtype=float)) < 5e6


def test_arms_run_in_plan_order_with_a_gap(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.01", "concurrency:n=2", "bursty:size=4,intra=0.001,gap=0.05", n=12)
    result = run_plan(fast_mock.url, plan, tmp_path, arm_gap_s=0.2)
    rows = one_row_each(result, plan)
    assert [w.name for w in result.arms] == ["fixed", "concurrency", "bursty"]
    for before, after in zip(result.arms, result.arms[1:], strict=False):
        assert after.start_ns >= before.end_ns + 200_000_000
        arm_rows = rows[rows["arm"] == before.name]
        assert (arm_rows["done_ns"] <= before.end_ns).all() and (arm_rows["sent_ns"] >= before.start_ns).all()
    manifest = result.folder.manifest()
    assert [a["name"] for a in manifest["arms"]] == ["fixed", "concurrency", "bursty"]
    assert all(a["planned"] == a["sent"] == 12 for a in manifest["arms"])


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_without_a_cap_the_pool_never_queues_past_100(fast_mock, tmp_path, transport) -> None:
    """150 requests at once, each generating for ~0.8 s: with httpx's default pool of 100 connections,
    50 would get their response headers only after others finished. Sized for the plan, none waits."""
    plan = plan_of("bursty:size=150,intra=0,gap=1", n=150, max_tokens=800)
    result = run_plan(fast_mock.url, plan, tmp_path, transport=transport)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all(), rows["error"].dropna().head()
    assert result.folder.manifest()["connections"]["pool"] == 150
    assert rows["first_byte_ns"].max() < rows["done_ns"].min()  # all 150 were on the wire at once


def test_concurrency_cap_queues_on_the_client(fast_mock, tmp_path) -> None:
    plan = plan_of("bursty:size=20,intra=0.0001,gap=1", n=20, max_tokens=16)
    result = run_plan(fast_mock.url, plan, tmp_path, max_concurrency=4)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all()
    assert max_in_flight(rows) <= 4
    queued = rows["queued_ns"].to_numpy(dtype=np.int64)
    assert (queued > 0).sum() >= 10
    assert (rows["lateness_ns"].to_numpy(dtype=np.int64) >= queued).all()  # the wait is part of lateness
    assert result.folder.manifest()["connections"]["pool"] == 4


def test_rate_guard(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.001", n=12)
    result = run_plan(fast_mock.url, plan, tmp_path, max_rate=5)
    rows = one_row_each(result, plan)
    sent = np.sort(rows["sent_ns"].to_numpy(dtype=np.int64))
    assert (sent[5:] - sent[:-5] >= 0.95e9).all()  # never more than 5 in any second
    assert rows["queued_ns"].max() > 1e9


def test_time_limit_leaves_the_rest_not_sent(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.05", n=40)
    result = run_plan(fast_mock.url, plan, tmp_path, time_limit_s=0.5)
    rows = one_row_each(result, plan)
    assert result.stop_reason == "time_limit"
    sent = rows[rows["sent_ns"].notna()]
    assert 8 <= len(sent) <= 12 and (sent["status"] == "ok").all()
    not_sent = rows[rows["status"] == "not_sent"]
    assert len(sent) + len(not_sent) == 40
    assert (not_sent["planned_ns"] >= result.start_ns + 0.5e9).all()
    assert not_sent["done_ns"].isna().all()
    assert result.folder.manifest()["run"]["stop_reason"] == "time_limit"


@pytest.mark.parametrize(("transport", "since"), [("aiohttp", "sent_ns"), ("sender", "planned_ns")])
def test_per_request_timeout(mock_server, tmp_path, transport, since) -> None:
    """The timeout counts from the send, or with the sender process from the request's planned time
    (its deadline is set when the loop hands it over, before the thread writes it)."""
    stalled = mock_server("--profile", "synthetic-fast", "--stall-rate", "1", "--stall-s", "30")
    plan = plan_of("fixed:interval=0.01", n=5)
    result = run_plan(stalled.url, plan, tmp_path, timeout_s=0.5, transport=transport)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "timeout").all()
    elapsed = (rows["done_ns"] - rows[since]).to_numpy(dtype=float) / 1e9
    assert ((elapsed >= 0.5) & (elapsed < 3)).all()


def test_closed_loop_shards_need_enough_users(fast_mock, tmp_path) -> None:
    from harness.records import Shard

    plan = plan_of("concurrency:n=2", n=6)
    with pytest.raises(InputError, match="fewer than the 3 shards"):
        run_plan(fast_mock.url, plan, tmp_path, shard=Shard(2, 3))


def test_the_open_loop_pool_covers_what_can_overlap_within_a_timeout() -> None:
    from harness.runner.dispatcher import pool_size

    # 400 requests 0.1 s apart: within a 2 s timeout (+1 s of lateness) at most 31 can be in flight.
    plan = plan_of("fixed:interval=0.1", n=400)
    assert pool_size(plan, RunOptions(timeout_s=2.0)) == 31
    assert pool_size(plan, RunOptions(timeout_s=100.0)) == 400  # the whole arm fits in one timeout
    assert pool_size(plan, RunOptions(timeout_s=2.0, max_concurrency=7)) == 7
    burst = plan_of("bursty:size=50,intra=0,gap=10", n=400)  # 50 at once, 10 s apart
    assert pool_size(burst, RunOptions(timeout_s=2.0)) == 50
    assert pool_size(plan_of("concurrency:n=6", n=400), RunOptions(timeout_s=2.0)) == 6
