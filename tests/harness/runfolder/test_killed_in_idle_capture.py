"""A real `joulebench run` SIGKILLed in its idle capture, before the plan: the run folder already holds
the request log (its header), so `joulebench recover` accounts for every planned request (`not_sent`)
and rebuilds power from the samples polled during the capture."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from joulebench_testkit import joulebench_argv, run_joulebench, run_mock_server, simulated_sidecar

pytestmark = pytest.mark.slow

N = 12


def energy_after_anchor(log: Path, samples: Path) -> bool:
    """power_samples.jsonl holds an energy reading taken after the run's clock anchor (one host: one
    monotonic clock): there is power of the run to rebuild."""
    anchor = json.loads(log.read_bytes().split(b"\n", 1)[0])["anchor"]["mono_ns"]
    for line in samples.read_text().splitlines()[1:] if samples.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line being written
        if isinstance(row, list) and row[3] == "e" and row[1] > anchor:
            return True
    return False


def wait_for_idle_capture(process: subprocess.Popen, out: Path, timeout_s: float = 60) -> Path:
    """The run folder once its log holds only the header and the power stage has polled power of the
    run into power_samples.jsonl: the runner is in its idle capture (manifest without an idle window)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        for log in out.glob("*/requests.jsonl"):
            manifest = json.loads((log.parent / "manifest.json").read_text())
            if "idle" not in manifest and energy_after_anchor(log, log.parent / "power_samples.jsonl"):
                assert log.read_bytes().count(b"\n") == 1, "the log should hold only its header"
                return log.parent
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach its idle capture with samples (exit {process.poll()})")


def test_sigkill_in_the_idle_capture_is_recovered(tmp_path: Path) -> None:
    with ExitStack() as stack:
        mock = stack.enter_context(run_mock_server(log_dir=tmp_path))
        car = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path))
        process = subprocess.Popen(
            joulebench_argv("run", "--target", mock.url, "--sidecar", car.url, "--prompts", "synthetic",
                            "--n", str(N), "--schedule", "fixed:interval=0.1", "--idle", "30",
                            "--no-progress", "--out", "runs"),
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            run = wait_for_idle_capture(process, tmp_path / "runs")
        finally:
            process.kill()  # SIGKILL: the runner gets no chance to clean up
            process.wait(timeout=30)
    assert not (run / "requests.parquet").exists() and not (run / "power.parquet").exists()

    recovered = run_joulebench("recover", str(run), cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert f"{N} requests (not_sent {N}); recovered after an unfinished run" in recovered.stdout
    assert "power: rebuilt power.parquet from power_samples.jsonl" in recovered.stdout
    rows = pq.read_table(run / "requests.parquet").to_pandas()
    measured = rows[~rows["warmup"]]
    assert sorted(measured["request_id"]) == list(range(N))  # every planned request exactly once
    assert set(rows["status"]) == {"not_sent"}
    assert pq.read_table(run / "power.parquet").num_rows > 0
