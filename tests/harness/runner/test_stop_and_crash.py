"""A real `joulebench run` process stopped by Ctrl-C/SIGTERM (graceful), two Ctrl-C (at once), or
SIGKILL (crash): the run folder always ends with exactly one row per planned request."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_helpers import plan_of

from harness.runfolder import RunFolder
from traffic.plan import save_plan

REPO = Path(__file__).resolve().parents[3]


def start_run(url: str, tmp_path: Path, plan, *extra: str) -> subprocess.Popen:
    save_plan(plan, tmp_path / "plan.parquet")
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--target", url, "--plan", "plan.parquet", "--out", "runs",
         "--no-progress", "--warmup", "0", *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_log(tmp_path: Path, lines: int, timeout_s: float = 60) -> Path:
    """Wait until the run's request log has at least `lines` lines; return the run folder."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = list((tmp_path / "runs").glob("*/requests.jsonl"))
        if logs and logs[0].read_bytes().count(b"\n") >= lines:
            return logs[0].parent
        time.sleep(0.05)
    raise AssertionError(f"the run did not log {lines} lines within {timeout_s} s")


def log_kinds(folder: Path) -> dict[str, set[int]]:
    kinds: dict[str, set[int]] = {"sent": set(), "row": set()}
    for line in (folder / "requests.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if obj["k"] == "sent":
            kinds["sent"].add(obj["id"])
        elif obj["k"] == "row":
            kinds["row"].add(obj["request_id"])
    return kinds


@pytest.mark.slow
def test_sigkill_leaves_a_recoverable_folder(mock_server, tmp_path) -> None:
    server = mock_server("--profile", "synthetic-fast")
    plan = plan_of("fixed:interval=0.02", n=200, max_tokens=300)
    process = start_run(server.url, tmp_path, plan)
    folder_path = wait_for_log(tmp_path, 40)
    process.kill()
    process.wait(timeout=30)
    assert not (folder_path / "requests.parquet").exists()
    logged = log_kinds(folder_path)
    assert logged["sent"] - logged["row"], "the kill should catch requests in flight"

    folder = RunFolder.open(folder_path)
    rows = folder.requests()  # recovered automatically on read
    measured = rows[~rows["warmup"]].set_index("request_id")
    assert sorted(measured.index) == list(range(200))
    sent_ids = sorted(logged["sent"])
    assert measured.loc[sent_ids, "sent_ns"].notna().all()  # every request that was sent is accounted for
    in_flight = sorted(logged["sent"] - logged["row"])
    assert (measured.loc[in_flight, "status"] == "cancelled").all()
    assert (measured.loc[in_flight, "done_ns"] >= measured.loc[in_flight, "sent_ns"]).all()
    unsent = measured.index.difference(sent_ids)
    assert (measured.loc[unsent, "status"] == "not_sent").all()
    assert folder.manifest()["records"]["recovered"] is True

    recovered = subprocess.run(
        [sys.executable, "-m", "harness", "recover", str(folder_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert "200 requests" in recovered.stdout and "recovered after an unfinished run" in recovered.stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_interrupt_stops_gracefully(mock_server, tmp_path, sig: signal.Signals) -> None:
    server = mock_server("--profile", "synthetic-fast")
    plan = plan_of("fixed:interval=0.02", n=200, max_tokens=100)
    process = start_run(server.url, tmp_path, plan, "--grace", "20")
    folder_path = wait_for_log(tmp_path, 30)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "stopping" in err and "Traceback" not in err

    rows = RunFolder.open(folder_path).requests()
    measured = rows[~rows["warmup"]]
    assert sorted(measured["request_id"]) == list(range(200))
    counts = measured["status"].value_counts()
    assert counts.get("ok", 0) >= 10 and counts.get("not_sent", 0) >= 50
    assert set(counts.index) <= {"ok", "not_sent"}  # in-flight requests finished within the grace period
    assert RunFolder.open(folder_path).manifest()["run"]["stop_reason"] == "interrupted"


@pytest.mark.slow
def test_second_interrupt_cancels_at_once(mock_server, tmp_path) -> None:
    stalled = mock_server("--profile", "synthetic-fast", "--stall-rate", "1", "--stall-s", "60")
    plan = plan_of("fixed:interval=0.02", n=100, max_tokens=8)
    process = start_run(stalled.url, tmp_path, plan, "--grace", "60")
    folder_path = wait_for_log(tmp_path, 15)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 15  # not the 60 s grace period
    rows = RunFolder.open(folder_path).requests()
    measured = rows[~rows["warmup"]]
    assert sorted(measured["request_id"]) == list(range(100))
    cancelled = measured[measured["status"] == "cancelled"]
    assert len(cancelled) >= 5 and cancelled["error"].str.contains("second interrupt").all()
    assert set(measured["status"]) <= {"cancelled", "not_sent"}
    assert RunFolder.open(folder_path).manifest()["run"]["stop_reason"] == "aborted"
