"""`joulebench run --target <proxy>`: the measured run goes through `joulebench shape` in front of the
mock server, end to end, and each request's time to first token carries the hold the proxy logged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from e2e_stack import manifest, output, run_folder
from joulebench_testkit import REPO, run_joulebench, run_mock_server

from harness.runfolder import RunFolder

pytestmark = pytest.mark.slow


def shape_process() -> ModuleType:
    # tests/harness/shaping_proxy is not a package: load its helper by path, under the name it has there.
    if "shape_process" not in sys.modules:
        path = REPO / "tests" / "harness" / "shaping_proxy" / "shape_process.py"
        spec = importlib.util.spec_from_file_location("shape_process", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["shape_process"] = module
        spec.loader.exec_module(module)
    return sys.modules["shape_process"]


def test_a_run_through_the_proxy_sees_the_hold_in_its_ttft(tmp_path: Path) -> None:
    with (
        run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path) as mock,
        shape_process().run_shape_proxy(mock.url, "--policy", "window:period=1", log_dir=tmp_path) as proxy,
    ):
        result = run_joulebench(
            "run", "--target", proxy.url, "--prompts", "synthetic", "--schedule", "fixed:interval=0.25",
            "--n", "12", "--max-tokens", "4", "--warmup", "0", "--no-progress", "--out", "runs", cwd=tmp_path,
        )  # fmt: skip
        lines = proxy.requests()
    assert result.returncode == 0, output(result)
    folder = run_folder(result, tmp_path)
    target = manifest(folder)["target"]
    assert target["url"] == proxy.url and target["backend"] == "openai-chat"  # detected through the proxy
    requests = pd.read_parquet(RunFolder.open(folder).requests_path).sort_values("sent_ns")
    assert (requests["status"] == "ok").all() and len(requests) == 12
    ttft_ms = ((requests["first_token_ns"] - requests["sent_ns"]) / 1e6).to_numpy()

    shaped = sorted((r for r in lines.values() if r["shaped"]), key=lambda r: r["arrived_ns"])
    assert len(shaped) == 12 and all(r["outcome"] == "ok" and r["stream"] for r in shaped)
    hold_ms = [r["hold_ns"] / 1e6 for r in shaped]
    # Arrivals 250 ms apart against a 1 s window: holds of up to 750 ms, and what the runner measured
    # from its send to the first token is that hold plus the (millisecond) service time.
    assert max(hold_ms) > 500 and min(hold_ms) < 300
    for hold, ttft in zip(hold_ms, ttft_ms, strict=True):
        assert hold <= ttft < hold + 100, (hold, ttft)
    # Detection and the server-metrics scrape went through too, unshaped.
    passed = {(r["method"], r["path"]) for r in lines.values() if not r["shaped"]}
    assert {("GET", "/v1/models"), ("GET", "/metrics")} <= passed
