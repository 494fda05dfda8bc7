"""The commands of docs/deploy.md that can run here, run as a user would type them.

Each command is looked up verbatim in the document first, so the document cannot drift from what is
tested. Commands that need a Docker engine, a GPU or a cluster are covered by the other tests of
this folder through the tools that need none (see the document's last section).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from joulebench_testkit import REPO, free_port, require_module, require_tool

DOC = REPO / "docs" / "deploy.md"
FAKE_VLLM = REPO / "tests" / "harness" / "deploy" / "fake_vllm"
SETUP = [
    "cp .env.example .env && chmod 600 .env",
    "sed -i \"s/^GRAFANA_ADMIN_PASSWORD=.*/GRAFANA_ADMIN_PASSWORD=$(python3 -c 'import secrets; "
    "print(secrets.token_hex(16))')/\" .env",
]
CONFIG_CHECKS = [f"docker-compose --profile {profile} config --quiet" for profile in ("mock", "vllm", "tgi")]
SERVE = (
    "joulebench serve vllm --model /models/Llama-3.2-1B-Instruct --port 8000 --out runs/vllm-server "
    "--dtype bfloat16 --max-model-len 4096"
)
SERVE_GPU_MACHINE = (
    "PYTHONPATH=$TMPDIR/site:$PWD python3 -m harness serve vllm --model $TMPDIR/model --python python3 \\\n"
    "  --env VLLM_USE_FLASHINFER_SAMPLER=0 --out runs/vllm-native \\\n"
    "  --served-model-name llama-3.2-1b-random --dtype bfloat16 --max-model-len 4096"
)
K8S_VALIDATE = (
    "kubernetes-validate --strict -k 1.29.0 deploy/k8s/namespace.yaml deploy/k8s/serving/*.yaml "
    "deploy/k8s/loadgen/*.yaml"
)


def documented(command: str) -> str:
    assert command in DOC.read_text(), f"docs/deploy.md no longer shows: {command}"
    return command


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: the venv's tools (joulebench, python3) first on PATH, nothing compose-specific."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", **extra}


def test_compose_setup_and_config_check_as_documented(tmp_path):
    require_tool("docker-compose", "apt-get install docker-compose")
    project = (
        tmp_path / "checkout"
    )  # a copy of the files the compose setup uses, so .env stays out of the repo
    project.mkdir()
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "deploy", project / "deploy")
    script = "set -e\n" + "\n".join(documented(c) for c in SETUP + CONFIG_CHECKS)
    result = subprocess.run(
        ["bash", "-c", script], cwd=project, env=user_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    env = (project / ".env").read_text()
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=[0-9a-f]{32}$", env, re.MULTILINE)
    assert (project / ".env").stat().st_mode & 0o777 == 0o600


def _serve_until_healthy_then_interrupt(command: str, cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    # Its own process group, so that Ctrl-C can be sent as a terminal sends it: to the whole group.
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready = proc.stdout.readline()
        assert "healthy at" in ready, ready + proc.stderr.read()
        port = re.search(r"healthy at http://127\.0\.0\.1:(\d+)", ready).group(1)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    return ready + stdout, stderr


@pytest.mark.slow
def test_native_serve_example_with_a_stand_in_vllm(tmp_path):
    """The document's `joulebench serve vllm` line, with the stand-in vLLM on PYTHONPATH and a free port."""
    command = documented(SERVE).replace("--port 8000", f"--port {free_port()}")
    stdout, _ = _serve_until_healthy_then_interrupt(command, tmp_path, user_env(PYTHONPATH=str(FAKE_VLLM)))
    assert "vllm stopped" in stdout
    info = (tmp_path / "runs" / "vllm-server" / "server.json").read_text()
    assert '"--max-model-len": "4096"' in info and '"--model": "/models/Llama-3.2-1B-Instruct"' in info


@pytest.mark.slow
def test_gpu_machine_recipe_with_a_stand_in_vllm(tmp_path):
    """The lent GPU machine's command: vLLM unpacked in $TMPDIR/site, joulebench from the checkout."""
    shutil.copytree(FAKE_VLLM / "vllm", tmp_path / "site" / "vllm")
    (tmp_path / "model").mkdir()
    command = documented(SERVE_GPU_MACHINE) + f" --port {free_port()}"  # port 8000 may be taken here
    work = tmp_path / "work"
    work.mkdir()
    stdout, _ = _serve_until_healthy_then_interrupt(command, work, user_env(TMPDIR=str(tmp_path)))
    assert "vllm stopped" in stdout
    log = (work / "runs" / "vllm-native" / "server.log").read_text()
    assert f"model={tmp_path / 'model'}" in log and "sampler=0" in log
    assert "--served-model-name', 'llama-3.2-1b-random'" in log


def test_k8s_validation_command():
    require_module("kubernetes_validate", "pip install kubernetes-validate")
    result = subprocess.run(
        ["bash", "-c", documented(K8S_VALIDATE)], cwd=REPO, env=user_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") >= 14
    assert "ERROR" not in result.stdout and "WARN" not in result.stdout
