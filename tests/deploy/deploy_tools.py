"""Helpers for the deployment tests: Debian's docker-compose on the repo's compose file and .env files.

Ports, servers and tool checks are in tests/joulebench_testkit.py, shared with the other test folders.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from joulebench_testkit import REPO, require_tool


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
