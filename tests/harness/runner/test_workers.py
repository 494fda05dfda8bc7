"""`--workers K`: the plan sent by K processes into one request log, against the real mock server.
Every planned request has exactly one row; a worker killed mid-run (SIGKILL to the PID the run
recorded) leaves its requests as `client_error` rows naming it, and `--strict` fails."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
from runner_helpers import one_row_each, plan_of, run_plan
from test_stop_and_crash import start_run

from foundation.errors import InputError
from harness.runfolder import RunFolder
from harness.runfolder.request_log import expected_records
from harness.runner import RunOptions
from harness.runner.worker_share import owners
from harness.session.measured_run import STRICT_EXIT


def test_open_loop_arms_are_dealt_round_robin_and_the_rest_stay_whole() -> None:
    plan = plan_of("fixed:interval=0.01", "concurrency:n=2", n=10)
    records = expected_records(plan, shard=RunOptions().shard, warmup=2, api="openai-chat", stream=True)
    owner = owners(plan, records, 3)
    by_kind: dict[str, list[int]] = {"warmup": [], "open": [], "closed": []}
    closed = {a.name for a in plan.header.arms if a.closed_loop}
    for rec, k in zip(records, owner, strict=True):
        by_kind["warmup" if rec.warmup else "closed" if rec.arm in closed else "open"].append(k)
    assert by_kind["warmup"] == [0, 0]
    assert by_kind["open"] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert set(by_kind["closed"]) == {0} and len(by_kind["closed"]) == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"workers": 0}, "--workers: must be >= 1"),
        ({"workers": 2, "max_in_flight": 8}, "--workers 2: not with --max-in-flight"),
        ({"workers": 2, "max_rate": 5.0}, "--workers 2: not with --max-rate"),
    ],
)
def test_bad_worker_options_are_one_line(extra: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        RunOptions(**extra).validate()


@pytest.mark.parametrize("workers", [2, 3])
def test_every_planned_request_once_from_k_workers(fast_mock, tmp_path, workers: int) -> None:
    plan = plan_of("fixed:interval=0.005", "concurrency:n=2", n=60)
    result = run_plan(fast_mock.url, plan, tmp_path, workers=workers, warmup=2)
    rows = one_row_each(result, plan)
    assert set(rows["status"]) == {"ok"}
    assert rows["wire_ns"].notna().all()
    assert (result.requests["warmup"]).sum() == 2
    log = [json.loads(line) for line in result.folder.log_path.read_text().splitlines()]
    assert Counter(o["request_id"] for o in log if o["k"] == "row") == Counter(
        result.requests["request_id"].tolist()
    )  # exactly one row line each, warm-up included
    assert [o["k"] for o in log].count("end") == 1
    manifest = result.folder.manifest()
    assert manifest["workers"]["count"] == workers and manifest["workers"]["lost"] == []
    assert manifest["run"]["stop_reason"] == "completed"
    open_arm, closed_arm = manifest["arms"]
    assert open_arm["client"]["workers"] == workers and "cpu_share_total" in open_arm["client"]
    assert open_arm["sent"] == open_arm["planned"] == 60 and closed_arm["sent"] == 60
    # the same arm figures as one process has, plus the workers'
    assert {"cpu_share", "loop_lag_ms"} <= set(open_arm["client"])


def test_a_killed_worker_leaves_its_requests_marked_and_strict_fails(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.01", n=400)  # 4 s of schedule
    run = start_run(fast_mock.url, tmp_path, plan, "--workers", "2", "--strict")
    try:
        pids, folder = _worker_pids(tmp_path)
        os.kill(pids[1], signal.SIGKILL)
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == STRICT_EXIT, stderr
    assert f"worker 1 (pid {pids[1]}) died (signal SIGKILL)" in stderr
    rows = RunFolder.open(folder).requests()
    measured = rows[~rows["warmup"]]
    assert sorted(measured["request_id"]) == list(range(400))
    lost = measured[measured["status"] == "client_error"]
    assert len(lost) > 0 and lost["error"].str.contains(f"worker 1 \\(pid {pids[1]}\\) died").all()
    assert set(lost["request_id"] % 2) == {1}  # worker 1's share only
    assert set(measured["status"]) <= {"ok", "client_error", "not_sent", "cancelled"}
    manifest = RunFolder.open(folder).manifest()
    assert manifest["run"]["stop_reason"] == "worker_lost"
    assert [d["pid"] for d in manifest["workers"]["lost"]] == [pids[1]]


def _worker_pids(tmp_path) -> tuple[list[int], object]:
    """The workers' PIDs as the run logged them, once both have sent requests."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for log in (tmp_path / "runs").glob("*/requests.jsonl"):
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
            pids = [o["pids"] for o in lines if o["k"] == "workers"]
            sent = {o["id"] % 2 for o in lines if o["k"] == "sent"}
            if pids and sent == {0, 1}:
                return pids[0], log.parent
        time.sleep(0.05)
    raise AssertionError("the run did not log its workers and their first requests within 60 s")


def test_a_shaped_arm_runs_whole_in_one_worker(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.01", n=30, policies=["window:period=0.1"])
    result = run_plan(fast_mock.url, plan, tmp_path, workers=2)
    rows = one_row_each(result, plan)
    assert set(rows["status"]) == {"ok"}
    assert (rows["hold_ns"] >= 0).all() and rows["hold_ns"].max() > 10_000_000  # the window held them
    kinds = Counter(json.loads(line)["k"] for line in result.folder.log_path.read_text().splitlines())
    assert kinds["arrived"] == kinds["sent"] == kinds["row"] == 30


def test_workers_ready_after_start_at_are_said(fast_mock, tmp_path, capfd) -> None:
    """Interpreters start in about a second each: a --start-at 0.2 s ahead cannot be met, the first
    requests go late at once, and the run says why (on the 16-core machine, cold bytecode caches made
    8 workers ready 10 s late: benchmarks/results/fidelity-16core)."""
    plan = plan_of("fixed:interval=0.01", n=10)
    rows = one_row_each(
        run_plan(fast_mock.url, plan, tmp_path, workers=2, start_at_epoch_s=time.time() + 0.2), plan
    )
    assert (rows["status"] == "ok").all()
    err = capfd.readouterr().err
    assert "joulebench: warning: the 2 workers were ready" in err and "after --start-at" in err
    assert rows["lateness_ns"].max() > 100_000_000  # the requests due meanwhile went late


def test_workers_ready_in_time_say_nothing(fast_mock, tmp_path, capfd) -> None:
    plan = plan_of("fixed:interval=0.01", n=10)
    run_plan(fast_mock.url, plan, tmp_path, workers=2, start_at_epoch_s=time.time() + 8)
    assert "were ready" not in capfd.readouterr().err
