"""`joulebench run` and the server side: the server's container (restart, description, log) through the
docker SDK against the Docker Engine API stand-in, `--server-info` from `joulebench serve`, and server
metrics that cannot be scraped (recorded, never fatal)."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_stack import manifest, output, run_folder
from joulebench_testkit import REPO, run_joulebench, run_mock_server

pytestmark = pytest.mark.slow


def _standin():
    # tests/harness/deploy is not a package: load the stand-in by path, under the name its tests use.
    if "engine_standin" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "engine_standin", REPO / "tests" / "harness" / "deploy" / "engine_standin.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["engine_standin"] = module
        spec.loader.exec_module(module)
    return sys.modules["engine_standin"]


@contextmanager
def engine(containers: list) -> Iterator:
    """The Docker Engine API stand-in on a unix socket (in a short path: socket paths are limited)."""
    with (
        tempfile.TemporaryDirectory(prefix="jb-") as short,
        _standin().EngineStandIn(str(Path(short) / "docker.sock"), containers) as standin,
    ):
        yield standin


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


PLAN = ["--schedule", "fixed:interval=0.02", "--n", "20", "--max-tokens", "8"]


def test_server_container_is_restarted_described_and_its_log_kept(mock, tmp_path) -> None:
    standin = _standin()
    container = standin.FakeContainer(
        name="joulebench-vllm-1", image="vllm/vllm-openai:v0.26.0", entrypoint=["vllm", "serve"],
        cmd=["--model", "meta-llama/Llama-3.2-1B-Instruct", "--api-key", "sk-secret", "--port", "8000"],
        env=["HF_TOKEN=hf_secret", "NVIDIA_VISIBLE_DEVICES=0"], device_requests=[],
    )  # fmt: skip
    with engine([container]) as docker:
        result = run_joulebench(
            "run", "--target", mock.url, *PLAN, "--server-container", "joulebench-vllm-1",
            "--docker-host", docker.url, "--restart-server", "--out", "runs", cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, output(result)
    assert container.restart_count == 1 and len(container.restarts) == 1
    folder = run_folder(result, tmp_path)
    server = manifest(folder)["server"]
    assert server["image"] == "vllm/vllm-openai:v0.26.0" and server["kind"] == "vllm"
    assert server["flags"]["--model"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert server["restart"]["seconds_to_healthy"] >= 0.3  # the stand-in's start-up delay
    assert server["server"]["version"]  # what the server itself said (/version of the mock)
    assert server["log"] == "server.log"
    log = (folder / "server.log").read_text()
    assert "instance 1 loading model" in log and "instance 0" not in log  # this instance's lines only
    text = (folder / "manifest.json").read_text()
    assert "sk-secret" not in text and "hf_secret" not in text


def test_missing_container_is_a_one_line_error(mock, tmp_path) -> None:
    with engine([]) as docker:
        result = run_joulebench(
            "run", "--target", mock.url, *PLAN, "--server-container", "nope", "--docker-host", docker.url,
            "--out", "runs", cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 2, output(result)
    assert (
        result.stderr.strip()
        == "joulebench: error: container 'nope': no such container on this Docker engine"
    )
    assert not (tmp_path / "runs").exists()


def test_server_info_and_unscrapable_metrics(mock, tmp_path) -> None:
    info = {
        "kind": "vllm",
        "argv": ["python", "-m", "vllm.entrypoints.openai.api_server"],
        "version": "0.26.0",
    }
    (tmp_path / "server.json").write_text(json.dumps(info))
    (tmp_path / "server.log").write_text("INFO started\n")
    result = run_joulebench(
        "run", "--target", mock.url, *PLAN, "--server-info", "server.json",
        "--server-metrics", "http://127.0.0.1:1/metrics", "--server-metrics-interval", "0.2",
        "--out", "runs", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    folder = run_folder(result, tmp_path)
    m = manifest(folder)
    assert m["server"]["version"] == "0.26.0" and m["server"]["log"] == str(tmp_path / "server.log")
    metrics = m["server_metrics"]
    assert metrics["scrapes"] >= 2 and metrics["failures"] == metrics["scrapes"] and metrics["file"] is None
    assert any("ConnectError" in e for e in metrics["errors"])
    assert "scrapes failed" in result.stderr
    assert not (folder / "server_metrics.parquet").exists()
    assert "no power source" in result.stderr  # requests only: said, not silently skipped
