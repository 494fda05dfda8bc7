"""The mock's ground truth (`GET /sim/requests`) against a real run: it adds up, and `steps` is closer to it.

Real processes: the mock server, the simulated sidecar reading it, `joulebench run` against both.
"""

from __future__ import annotations

import json
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from joulebench_testkit import run_dirs, run_joulebench, run_mock_server, simulated_sidecar

from harness.report.run_inputs import analyze_run


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        doc: dict = json.load(response)
        return doc


def dynamic_errors(folder: Path, method: str, truth: dict[int, float]) -> np.ndarray:
    """|dynamic_j / truth − 1| of the run's successful requests, matched by their x-request-id."""
    inputs, analysis = analyze_run(folder, method=method)
    timing = inputs.requests["server_timing"].map(lambda s: json.loads(s)["x-request-id"])
    rid = timing.map(lambda xid: int(xid[-16:], 16))
    req = analysis.requests
    ok = (req["status"] == "ok") & ~req["warmup"].astype(bool)
    got = req.loc[ok, "dynamic_j"].to_numpy(dtype=float)
    true = np.array([truth[r] for r in rid[ok]])
    return np.abs(got / true - 1)


@pytest.mark.slow
def test_truth_adds_up_to_the_gpu_and_steps_is_closer_to_it_than_time(tmp_path: Path) -> None:
    with ExitStack() as stack:
        mock = stack.enter_context(
            run_mock_server("--seed", "0", "--profile", "h100-vllm0.26-llama3.2-1b", log_dir=tmp_path)
        )
        sidecar = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path))
        result = run_joulebench(
            "run", "--target", mock.url, "--sidecar", sidecar.url, "--prompts", "synthetic",
            "--schedule", "uniform:low=0.1,high=0.5", "--n", "30", "--max-tokens", "128", "--ignore-eos",
            "--seed", "0", "--idle", "2", "--out", "runs", cwd=tmp_path,
        )  # fmt: skip
        truth = get(f"{mock.url}/sim/requests")
        gpu = get(f"{mock.url}/sim/gpu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Two sums kept apart: every request's share plus the idle time between steps is the GPU's counter,
    # and the counter read a moment later has only gained idle power since.
    assert not truth["step_in_flight"]
    shares = sum(r["energy_j"] for r in truth["requests"])
    assert shares + truth["idle_between_steps_j"] == pytest.approx(truth["gpu_energy_j"], rel=1e-9)
    later = truth["gpu_energy_j"] + truth["idle_w"] * (gpu["sim_time_s"] - truth["sim_time_s"])
    assert gpu["gpus"][0]["energy_j"] == pytest.approx(later, rel=1e-9)
    assert len(truth["requests"]) == 31  # the plan's 30 and the warm-up

    (folder,) = run_dirs(tmp_path / "runs")
    dynamic = {r["rid"]: r["dynamic_j"] for r in truth["requests"]}
    by_time = dynamic_errors(folder, "time", dynamic)
    by_steps = dynamic_errors(folder, "steps", dynamic)
    assert len(by_steps) == 30
    assert np.median(by_steps) < np.median(by_time), (np.median(by_steps), np.median(by_time))
