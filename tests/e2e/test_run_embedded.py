"""`joulebench run` with no target: the embedded default (mock server + simulated sidecar as subprocesses),
as the README's first command runs it — and its subprocesses are stopped however the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from e2e_stack import flag_codes, manifest, output, report_summary, run_folder, summary
from joulebench_testkit import joulebench_argv, run_dirs, run_joulebench

pytestmark = pytest.mark.slow

SUMMARY_FIELDS = (
    "energy_j_total", "energy_j_attributed", "energy_j_unattributed", "requests", "j_per_request",
    "wh_per_request", "j_per_output_token", "latency_s", "rate",
)  # fmt: skip


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _children_stopped(folder: Path) -> None:
    processes = manifest(folder)["embedded"]["processes"]
    assert set(processes) == {"mock-server", "sidecar"}
    for name, proc in processes.items():
        assert _gone(proc["pid"]), f"{name} (pid {proc['pid']}) still runs"
        assert proc["exit_code"] == 0, (name, proc)  # stopped with SIGTERM, cleanly
        assert (folder / "embedded" / f"{name}.log").is_file()


def test_embedded_default(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_joulebench("run", cwd=tmp_path, timeout=300)
    took = time.monotonic() - started
    assert result.returncode == 0, output(result)
    folder = run_folder(result, tmp_path)
    assert folder.parent == tmp_path / "runs"
    assert took < 150, f"the embedded default took {took:.0f} s (about a minute expected)"
    doc = summary(folder)
    assert report_summary(folder) == doc
    assert [a["name"] for a in doc["arms"]] == ["fixed", "uniform", "bursty"]
    for block in [*doc["arms"], doc["run"]]:
        for key in SUMMARY_FIELDS:
            assert block[key] is not None, (block["name"], key)
        for key in ("mean", "p50", "p90", "p99", "ci95"):
            assert block["j_per_request"][key] is not None, (block["name"], key)
        assert block["energy_j_attributed"] + block["energy_j_unattributed"] == pytest.approx(
            block["energy_j_total"], rel=1e-9
        )
        assert block["requests"]["ok"] == block["requests"]["total"]
    # Same offered load, same prompts: only the arrival pattern differs, and the simulated GPU batches
    # the bursts, so bursty is the cheapest per request.
    rates = {a["name"]: a["rate"]["target"] for a in doc["arms"]}
    assert set(rates.values()) == {4.0}
    line = next(
        li for li in result.stdout.splitlines() if li.startswith("Least energy per successful request")
    )
    assert line.startswith("Least energy per successful request: bursty at ") and "less than fixed" in line
    # The README's first command runs clean: no error, and no warning but what a loaded machine can cause
    # (a sampler thread held up for a moment leaves a gap in the samples).
    problems = {f["code"] for f in doc["flags"] if f["severity"] in ("error", "warning")}
    assert problems <= {"power_gaps", "low_coverage"}, doc["flags"]
    m = manifest(folder)
    assert m["plan"]["origin"] == "built-in" and m["idle"]["seconds"] == 3.0
    # An open-loop plan to the http:// mock: auto takes the sender, and says so before the run.
    reason = m["options"]["transport_reason"]
    assert m["options"]["transport"] == "sender" and reason.startswith("auto: sender, "), reason
    assert f"transport: {reason}" in " ".join(result.stderr.split())
    assert m["power"]["sources"][0]["backend"] == "simulated"
    assert (folder / "server_metrics.parquet").is_file()
    _children_stopped(folder)


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        joulebench_argv("run", *args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def _wait_for(proc: subprocess.Popen, predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"joulebench run exited with {proc.returncode}: {out[-2000:]}{err[-2000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ctrl_c_stops_the_run_and_the_embedded_servers(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--schedule", "fixed:interval=0.05", "--n", "400", "--max-tokens", "16",
                  "--idle", "1")  # fmt: skip
    try:

        def sending() -> bool:
            logs = list((tmp_path / "runs").glob("*/requests.jsonl"))
            return bool(logs) and logs[0].read_text().count('"sent"') >= 40

        _wait_for(proc, sending)
        proc.send_signal(
            signal.SIGINT
        )  # what a terminal sends joulebench (its servers run in their own session)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "stopping" in stderr
    (folder,) = run_dirs(tmp_path / "runs")
    _children_stopped(folder)
    doc = summary(folder)  # the report is written from what was measured
    requests = doc["run"]["requests"]
    assert requests["total"] == 400 and 0 < requests["ok"] < 400
    assert requests["by_status"].get("not_sent", 0) > 0
    assert manifest(folder)["idle"]["post"] is None and "no_power_data" not in flag_codes(doc)


def test_sigterm_during_idle_capture_stops_everything(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--schedule", "fixed:interval=0.05", "--n", "20", "--idle", "20")
    try:
        _wait_for(proc, lambda: any((tmp_path / "runs").glob("*/manifest.json")))
        time.sleep(1.0)  # inside the 20 s idle capture before the run
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "joulebench: interrupted" in stderr
    (folder,) = run_dirs(tmp_path / "runs")
    _children_stopped(folder)
