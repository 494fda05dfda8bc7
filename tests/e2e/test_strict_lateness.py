"""`joulebench run` starved of CPU mid-run (issue 18, item 6): the real run process is stopped (SIGSTOP,
by its PID) for a second while its arm is being sent, as a host that takes the CPU away would. Sends due
meanwhile leave late; the arm's p99 lateness exceeds its bound, which is an error flag: --strict exits 1,
the summary records the bound, the page marks it. The same run with a bound that allows it passes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from e2e_stack import flag_codes, output, run_folder, summary
from joulebench_testkit import (
    joulebench_argv,
    one_line_error,
    run_joulebench,
    run_mock_server,
    side_by_side,
    simulated_sidecar,
)

pytestmark = pytest.mark.slow

STOP_S = 1.0


def _run_with_a_stall(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`joulebench run ARGS`, stopped for STOP_S once it has sent 10 requests."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        joulebench_argv("run", *args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list((cwd / "runs").glob("*/requests.jsonl"))
            if logs and logs[0].read_text().count('"k":"sent"') >= 10:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(STOP_S)
        os.kill(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_a_stalled_client_is_flagged_late_and_strict_fails(tmp_path) -> None:
    with (
        run_mock_server("--seed", "1", log_dir=tmp_path) as mock,
        simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path) as side,
    ):
        args = ["--target", mock.url, "--sidecar", side.url, "--schedule", "fixed:interval=0.1",
                "--n", "60", "--max-tokens", "16", "--warmup", "0", "--idle", "1", "--strict",
                "--out", "runs"]  # fmt: skip
        result = _run_with_a_stall(args, tmp_path)
    assert result.returncode == 1, output(result)
    folder = run_folder(result, tmp_path)
    doc = summary(folder)
    (arm,) = doc["arms"]
    lateness = arm["lateness_ms"]
    # A quarter of the 100 ms gap; the stall left the sends due in it up to a second late.
    assert (lateness["bound"], lateness["bound_basis"]) == (25, "planned_gaps")
    assert lateness["p99"] > 0.5 * STOP_S * 1e3 and "lateness_over_bound" in arm["flags"]
    (flag,) = [f for f in doc["flags"] if f["code"] == "lateness_over_bound"]
    assert flag["severity"] == "error" and "exceeds the bound of 25.0 ms" in flag["message"]
    assert "exceeds the bound of 25.0 ms" in result.stdout
    assert "<td>25.0 (from the planned gaps): EXCEEDED</td>" in (folder / "report.html").read_text()

    # The same folder held to a bound the stall stays under: nothing to fail on. The stall also held
    # back the client's view of which requests were in flight, which an estimate of the power lag would
    # read as an unstable lag; the simulated sensor declares that it has none, so none is estimated.
    report = run_joulebench(
        "report", str(folder), "--quiet", "--strict", "--max-lateness-ms", "5000", cwd=tmp_path
    )
    assert report.returncode == 0, summary(folder)["flags"]
    assert "lateness_over_bound" not in flag_codes(summary(folder))
    assert summary(folder)["arms"][0]["lateness_ms"]["bound"] == 5000.0


def test_without_a_power_source_the_table_marks_it_and_strict_fails(tmp_path) -> None:
    with run_mock_server("--seed", "1", log_dir=tmp_path) as mock:
        args = ["--target", mock.url, "--schedule", "fixed:interval=0.1", "--n", "60", "--max-tokens", "16",
                "--warmup", "0", "--strict", "--out", "runs"]  # fmt: skip
        result = _run_with_a_stall(args, tmp_path)
    assert result.returncode == 1, output(result)
    assert "25.0 EXCEEDED" in result.stdout
    assert "error: [fixed] p99 lateness exceeds its bound" in result.stdout


BAD_BOUNDS = ["0", "-1", "nan", "inf", "late"]


@pytest.fixture(scope="module")
def bad_bound_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each bad bound's folder and result: all run once, side by side."""

    def run(value: str) -> tuple[Path, subprocess.CompletedProcess]:
        folder = folders[value]
        return folder, run_joulebench(
            "run", "--schedule", "fixed:interval=0.5", "--n", "2", "--max-lateness-ms", value,
            "--out", "runs", cwd=folder, timeout=60,
        )  # fmt: skip

    folders = {value: tmp_path_factory.mktemp("bad-bound") for value in BAD_BOUNDS}
    return dict(zip(BAD_BOUNDS, side_by_side(run, BAD_BOUNDS), strict=True))


@pytest.mark.parametrize("value", BAD_BOUNDS)
def test_a_bad_bound_on_the_run_is_one_line_and_writes_nothing(bad_bound_runs, value) -> None:
    tmp_path, result = bad_bound_runs[value]
    message = one_line_error(result.stderr, result.returncode)
    assert message == f"--max-lateness-ms: expected milliseconds above 0, got {value!r}"
    assert not (tmp_path / "runs").exists()
