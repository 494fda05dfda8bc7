"""Shaped arms against the real mock server: users arrive on time, the policy's holds are what it
promises, a stop or a crash leaves every held request recorded (cancelled, never sent), and a shaped
arm that cannot run as planned is refused before anything is written."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import numpy as np
import pytest
from runner_helpers import max_in_flight, one_row_each, plan_of, run_plan
from test_stop_and_crash import start_run, wait_for_log

from foundation.errors import InputError
from harness.backends import resolve_target
from harness.records import Shard
from harness.runfolder import RunFolder
from harness.runfolder.request_log import HELD_CANCELLED
from harness.runner import RunOptions, check_run

MS = 1_000_000


def test_policies_hold_as_they_promise(fast_mock, tmp_path) -> None:
    policies = ["passthrough", "window:period=0.2", "batch:k=4,max_wait=0.15", "concurrency-cap:c=1"]
    plan = plan_of("poisson:rate=40", n=30, max_tokens=8, policies=policies)
    result = run_plan(fast_mock.url, plan, tmp_path)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all(), rows["error"].dropna().head()
    arms = {name: part for name, part in rows.groupby("arm")}
    late_ms = rows["lateness_ns"].to_numpy(dtype=float) / 1e6
    assert late_ms.min() >= 0 and np.median(late_ms) < 5  # users arrive on time, whatever the policy holds
    hold_ms = {name: part["hold_ns"].to_numpy(dtype=float) / 1e6 for name, part in arms.items()}
    assert np.median(hold_ms["poisson+passthrough"]) < 5
    window = hold_ms["poisson+window-0.2s"]
    assert np.median(window) > 20 and window.max() < 200 + 30  # at most one period (plus the loop's delay)
    assert hold_ms["poisson+batch-k4-0.15s"].max() < 150 + 30
    for part in arms.values():  # the user waits the hold, then the server's time
        user_e2e = part["done_ns"] - part["arrived_ns"]
        assert (user_e2e == part["done_ns"] - part["sent_ns"] + part["hold_ns"]).all()
    assert max_in_flight(arms["poisson+concurrency-cap-1"]) == 1
    window_sends = arms["poisson+window-0.2s"]["sent_ns"].to_numpy(dtype=np.int64)
    assert len(np.unique(np.round(window_sends / (20 * MS)))) < 0.7 * len(window_sends)  # sent in groups
    assert all(a.get("policy") for a in result.folder.manifest()["arms"])


def test_a_stop_records_the_held_requests_as_cancelled_and_never_sends_them(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.05", n=40, policies=["window:period=30"])
    result = run_plan(fast_mock.url, plan, tmp_path, time_limit_s=1.0, grace_s=2.0)
    rows = one_row_each(result, plan).set_index("request_id")
    assert result.stop_reason == "time_limit"
    held = rows[rows["status"] == "cancelled"]
    assert 10 <= len(held) <= 25  # the users who arrived in the first second, all held by the window
    assert (held["error"] == HELD_CANCELLED).all() and held["sent_ns"].isna().all()
    assert held["arrived_ns"].notna().all() and (held["lateness_ns"] < 50 * MS).all()
    rest = rows.drop(index=held.index)
    ok = rest[rest["status"] == "ok"]
    assert len(ok) == 1 and ok.index[0] == 0  # the one on the window's first boundary
    unsent = rest[rest["status"] == "not_sent"]
    assert unsent["arrived_ns"].isna().all() and len(ok) + len(held) + len(unsent) == 40
    log = [json.loads(line) for line in result.folder.log_path.read_text().splitlines()]
    assert {obj["id"] for obj in log if obj["k"] == "sent"} == {0}  # nothing held went to the server


def test_a_broken_policy_ends_its_arm_and_the_next_one_runs(fast_mock, tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_policy.py").write_text(
        "from traffic.shaping import QueuePolicy\n\n\n"
        "class Breaks(QueuePolicy):\n"
        "    def __init__(self, params, rng):\n"
        "        super().__init__()\n\n"
        "    def decide(self, now_ns):\n"
        "        if len(self.held) > 2:\n"
        "            raise RuntimeError('three is too many')\n"
        "        return [], now_ns + 10**9\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = plan_of("fixed:interval=0.02", n=6, policies=["custom:class=broken_policy:Breaks", "passthrough"])
    rows = one_row_each(run_plan(fast_mock.url, plan, tmp_path / "runs"), plan)
    broken = rows[rows["arm"] == "fixed+custom-Breaks"]
    assert list(broken["status"]) == ["cancelled"] * 3 + ["not_sent"] * 3
    assert broken["error"].str.contains("policy custom-Breaks failed: RuntimeError: three is too many").all()
    assert (rows[rows["arm"] == "fixed+passthrough"]["status"] == "ok").all()


def test_shaped_arms_that_cannot_run_as_planned_are_refused(fast_mock, tmp_path, monkeypatch) -> None:
    target = asyncio.run(resolve_target(fast_mock.url, "auto"))
    plan = plan_of("fixed:interval=0.1", n=4, policies=["window:period=1"])
    with pytest.raises(InputError, match=r"--shard 0/2: arm 'fixed\+window-1s' is shaped"):
        check_run(plan, target, RunOptions(shard=Shard(0, 2)))
    (tmp_path / "moving_policy.py").write_text(
        "from traffic.shaping import QueuePolicy\n\n\n"
        "class Here(QueuePolicy):\n"
        "    def __init__(self, params, rng):\n"
        "        super().__init__()\n\n"
        "    def decide(self, now_ns):\n"
        "        return list(self.held), None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = plan_of("fixed:interval=0.1", n=4, policies=["custom:class=moving_policy:Here"])
    del sys.modules["moving_policy"]
    (tmp_path / "moving_policy.py").unlink()  # the plan was built where the class was; the run is not
    with pytest.raises(
        InputError, match=r"plan arm 'fixed\+custom-Here': policy .*no module named 'moving_policy'"
    ):
        check_run(plan, target, RunOptions())


@pytest.mark.parametrize("options", [RunOptions(max_concurrency=4), RunOptions(max_rate=10.0)])
def test_a_client_cap_or_rate_guard_is_refused_with_a_shaped_arm(fast_mock, options) -> None:
    """Their wait would count in the policy's hold (sent - arrived), a wait the policy did not cause."""
    target = asyncio.run(resolve_target(fast_mock.url, "auto"))
    flag = "--max-concurrency" if options.max_concurrency else "--max-rate"
    plan = plan_of("fixed:interval=0.1", n=4, policies=["window:period=1"])
    with pytest.raises(InputError, match=rf"^{flag}: not with --policy arms \(arm 'fixed\+window-1s'"):
        check_run(plan, target, options)
    check_run(plan_of("fixed:interval=0.1", n=4), target, options)  # an unshaped arm takes either


@pytest.mark.slow
def test_a_killed_shaped_run_recovers_what_was_held(mock_server, tmp_path) -> None:
    server = mock_server("--profile", "synthetic-fast")
    plan = plan_of("fixed:interval=0.02", n=200, policies=["window:period=60"])
    process = start_run(server.url, tmp_path, plan)
    folder_path = wait_for_log(tmp_path, 40)  # header, arm, the first release, and held arrivals
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    arrived = {
        obj["id"] for obj in map(json.loads, (folder_path / "requests.jsonl").read_text().splitlines())
        if obj["k"] == "arrived"
    }  # fmt: skip
    rows = RunFolder.open(folder_path).requests().set_index("request_id")
    assert sorted(rows.index) == list(range(200))
    held = rows.loc[sorted(arrived - {0})]
    assert len(held) >= 30 and (held["status"] == "cancelled").all() and held["sent_ns"].isna().all()
    assert held["error"].str.startswith(HELD_CANCELLED).all()
    assert (rows.drop(index=sorted(arrived))["status"] == "not_sent").all()
