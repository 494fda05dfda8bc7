"""`ServerContainer` through the real docker SDK, against an Engine API stand-in on a real unix socket."""

from __future__ import annotations

import contextlib
import http.server
import json
import tempfile
import threading
import time
from pathlib import Path

import pytest
from engine_standin import EngineStandIn, FakeContainer, rfc3339_nano

from foundation.errors import InputError
from harness.cli import main
from harness.deploy.cmdline import REDACTED
from harness.deploy.container import ServerContainer, _parse_docker_time
from harness.deploy.health import ServerError

VLLM_CMD = [
    "--model", "meta-llama/Llama-3.2-1B-Instruct", "--dtype", "bfloat16", "--tensor-parallel-size", "1",
    "--max-num-seqs", "256", "--port", "8000", "--api-key", "sk-very-secret", "--enforce-eager",
]  # fmt: skip


def vllm_container(**overrides) -> FakeContainer:
    fields = dict(
        name="joulebench-vllm-1",
        image="vllm/vllm-openai:v0.26.0",
        entrypoint=["vllm", "serve"],
        cmd=list(VLLM_CMD),
        env=[
            "HF_TOKEN=hf_secret",
            "VLLM_USE_FLASHINFER_SAMPLER=0",
            "NVIDIA_VISIBLE_DEVICES=0,1",
            "PATH=/usr/bin",
        ],
        device_requests=[
            {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0,1"], "Capabilities": [["gpu"]], "Options": {}}
        ],
        labels={
            "com.docker.compose.service": "vllm",
            "com.docker.compose.project": "joulebench",
            "other": "x",
        },
    )
    fields.update(overrides)
    return FakeContainer(**fields)


@pytest.fixture
def socket_path():
    # A short path: unix socket paths are limited to ~107 bytes, pytest's tmp_path can exceed that.
    with tempfile.TemporaryDirectory(prefix="jb-engine-") as folder:
        yield str(Path(folder) / "docker.sock")


@pytest.fixture
def engine(socket_path):
    with EngineStandIn(socket_path, [vllm_container()]) as engine:
        yield engine


def test_describe_records_image_flags_gpus_without_secrets(engine):
    container = ServerContainer.connect("joulebench-vllm-1", docker_host=engine.url)
    info = container.describe()
    assert info["launcher"] == "docker"
    assert info["kind"] == "vllm"
    assert info["image"] == "vllm/vllm-openai:v0.26.0"
    assert info["image_version"] == info["version"] == "v0.26.0"
    assert info["image_id"].startswith("sha256:")
    assert info["argv"][:2] == ["vllm", "serve"]
    flags = info["flags"]
    assert flags["--model"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert flags["--dtype"] == "bfloat16"
    assert flags["--max-num-seqs"] == "256"
    assert flags["--enforce-eager"] is True
    assert flags["--api-key"] == REDACTED
    assert info["env"] == {"NVIDIA_VISIBLE_DEVICES": "0,1", "VLLM_USE_FLASHINFER_SAMPLER": "0"}
    assert info["gpus"]["device_requests"] == [
        {"driver": "nvidia", "count": 0, "device_ids": ["0,1"], "capabilities": [["gpu"]]}
    ]
    assert info["gpus"]["visible_devices"] == "0,1"
    assert info["container"]["name"] == "joulebench-vllm-1"
    assert info["container"]["health"] == "starting" or info["container"]["health"] == "healthy"
    assert info["container"]["labels"] == {
        "com.docker.compose.service": "vllm",
        "com.docker.compose.project": "joulebench",
    }
    text = json.dumps(info)
    assert "sk-very-secret" not in text and "hf_secret" not in text
    # The SDK spoke the versioned API it negotiated from /version.
    assert ("GET", "/version") in engine.requests
    assert any(path.startswith("/v1.47/containers/joulebench-vllm-1/json") for _, path in engine.requests)


def test_wait_healthy_waits_through_starting(engine):
    container = ServerContainer.connect("joulebench-vllm-1", docker_host=engine.url)
    engine.containers[0].start()  # a fresh start: `starting` for 0.3 s
    seen: list[float] = []
    waited = container.wait_healthy(timeout_s=10, poll_s=0.05, on_wait=seen.append)
    assert seen, "it should have waited while the health check said `starting`"
    assert 0.1 < waited < 5
    assert container.inspect()["State"]["Health"]["Status"] == "healthy"


def test_restart_gives_a_new_healthy_instance_and_its_own_log(engine, tmp_path):
    fake = engine.containers[0]
    container = ServerContainer.connect(
        fake.id[:12], docker_host=engine.url
    )  # by id prefix, as docker allows
    container.wait_healthy(timeout_s=10, poll_s=0.05)
    first_start = container.inspect()["State"]["StartedAt"]

    took = container.restart(stop_timeout_s=7, health_timeout_s=10)

    assert fake.restarts == [{"t": "7"}]
    state = container.inspect()["State"]
    assert state["StartedAt"] != first_start
    assert state["Health"]["Status"] == "healthy"
    assert took >= fake.start_delay_s * 0.9  # it did wait for the new instance's health check
    assert container.describe()["container"]["restart_count"] == 1

    log = container.save_log(tmp_path / "run" / "server.log").read_text()
    assert "instance 1 loading model" in log and "INFO starting vllm/vllm-openai:v0.26.0" in log
    assert "instance 0" not in log and "SIGTERM" not in log  # the previous instance's lines stay out
    first = log.splitlines()[0]
    assert _parse_docker_time(first.split(" ", 1)[0]) >= _parse_docker_time(state["StartedAt"])

    everything = container.save_log(tmp_path / "all.log", since_start=False).read_text()
    assert "instance 0 loading model" in everything and "SIGTERM" in everything
    # stdout and stderr frames were both demultiplexed, in order
    assert everything.index("INFO starting") < everything.index("instance 0 loading")


def test_unhealthy_container_fails_fast_with_the_health_check_output(socket_path):
    with EngineStandIn(socket_path, [vllm_container(outcome="unhealthy", start_delay_s=0.1)]) as engine:
        container = ServerContainer.connect("joulebench-vllm-1", docker_host=engine.url)
        start = time.monotonic()
        with pytest.raises(ServerError, match="unhealthy: curl: \\(7\\) Failed to connect"):
            container.wait_healthy(timeout_s=30, poll_s=0.05)
        assert time.monotonic() - start < 10


def test_exited_container_fails_fast(socket_path):
    with EngineStandIn(socket_path, [vllm_container(outcome="exited", start_delay_s=0.1)]) as engine:
        container = ServerContainer.connect("joulebench-vllm-1", docker_host=engine.url)
        with pytest.raises(ServerError, match="is exited \\(exit code 1\\)"):
            container.wait_healthy(timeout_s=30, poll_s=0.05)


def test_container_without_healthcheck_is_ready_when_running(socket_path):
    fake = vllm_container(healthcheck=False, name="plain")
    with EngineStandIn(socket_path, [fake]) as engine:
        container = ServerContainer.connect("plain", docker_host=engine.url)
        assert container.wait_healthy(timeout_s=5) < 1
        assert container.describe()["container"]["health"] is None
        # ready once its health URL answers 200
        with _health_endpoint() as health_url:
            assert container.wait_healthy(timeout_s=5, health_url=health_url) < 5
        # with a URL nobody answers on, it is not ready
        with pytest.raises(ServerError, match="not healthy after"):
            container.wait_healthy(timeout_s=0.5, health_url="http://127.0.0.1:9/health", poll_s=0.1)


@contextlib.contextmanager
def _health_endpoint():
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_container_and_unreachable_engine_are_one_line_errors(engine, socket_path, tmp_path):
    with pytest.raises(InputError, match="'nope': no such container"):
        ServerContainer.connect("nope", docker_host=engine.url)
    with pytest.raises(InputError, match="cannot reach the Docker engine at unix://"):
        ServerContainer.connect("x", docker_host=f"unix://{tmp_path}/absent.sock", timeout_s=5)


def test_cli_restart_describe_and_save_log(engine, tmp_path, capsys):
    out = tmp_path / "run"
    main(["serve", "container", "joulebench-vllm-1", "--docker-host", engine.url, "--restart",
          "--stop-timeout", "3", "--out", str(out), "--save-log"])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "server.json").read_text())
    assert printed == saved
    assert saved["container"]["restart_count"] == 1
    assert "instance 1 loading model" in (out / "server.log").read_text()
    assert engine.containers[0].restarts == [{"t": "3"}]


def test_cli_errors_are_one_line(engine, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "container", "missing", "--docker-host", engine.url])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "joulebench: error: container 'missing': no such container on this Docker engine"
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "container", "joulebench-vllm-1", "--docker-host", engine.url, "--save-log"])
    assert exit_info.value.code == 2
    assert "--save-log: needs --out" in capsys.readouterr().err


def test_docker_time_parsing_matches_the_engine_format():
    ns = 1_763_777_777_123_456_789
    assert _parse_docker_time(rfc3339_nano(ns)) == ns
    assert _parse_docker_time(rfc3339_nano(1_763_777_777_000_000_000)) == 1_763_777_777_000_000_000
    assert _parse_docker_time("2025-11-22T01:02:03.5+01:00") == _parse_docker_time("2025-11-22T00:02:03.5Z")
    assert _parse_docker_time("0001-01-01T00:00:00Z") is None
    assert _parse_docker_time("not a time") is None
