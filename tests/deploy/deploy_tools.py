"""Helpers for the deployment tests: the repo root, and tools that CI installs but a laptop may lack."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def require_tool(name: str, how: str) -> str:
    """The tool's path; skip where it is missing, except in CI, where a missing tool is a failure."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found (install: {how})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must install it (scripts/test.sh)")
    pytest.skip(message)


def require_module(name: str, how: str):
    """The imported module; skip where it is missing, except in CI (as `require_tool`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python package {name} not installed (install: {how})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must install it (pyproject dev extra)")
    pytest.skip(message)


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose(
    args: list[str], project: Path, env_file: Path, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run Debian's docker-compose (v1.29, needs no engine for `config`) on the project's compose file.

    A clean environment, so that a COMPOSE_* or model variable in the caller's shell cannot change
    the result; everything comes from `env_file`.
    """
    exe = require_tool("docker-compose", "apt-get install docker-compose")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    return subprocess.run(
        [exe, "--project-directory", str(project), "-f", str(project / "docker-compose.yml"),
         "--env-file", str(env_file), *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=project,
    )  # fmt: skip


def write_env(path: Path, **overrides: str) -> Path:
    """The repo's .env.example with some values replaced (as a user edits their .env)."""
    lines = []
    for line in (REPO / ".env.example").read_text().splitlines():
        key = line.partition("=")[0]
        if not line.startswith("#") and key in overrides:
            line = f"{key}={overrides.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def joulebench_server(args: list[str], health_path: str, port: int, timeout_s: float = 60):
    """A `joulebench` server command (mock-server, sidecar) in a subprocess on `port`; yields its URL."""
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"joulebench {' '.join(args)} exited: {proc.stderr.read()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + health_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"joulebench {' '.join(args)} not up after {timeout_s} s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mock_server(port: int | None = None):
    port = port or free_port()
    return joulebench_server(["mock-server", "--port", str(port), "--seed", "1"], "/health", port)


def simulated_sidecar(mock_url: str, port: int | None = None):
    port = port or free_port()
    args = ["sidecar", "--backend", "simulated", "--simulate-from", mock_url, "--port", str(port)]
    return joulebench_server([*args, "--interval", "0.05"], "/metrics", port)
