"""The README's Deploy commands, run as written in a fresh clone: its `.env` lines and every
`docker-compose ... config` (Debian's docker-compose 1.29, no engine needed); `up` needs Docker Engine
and `joulebench` lines are not compose, so those are left out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from joulebench_testkit import REPO, require_tool

SECTION = (REPO / "README.md").read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]
COMMANDS = [
    line.strip()
    for block in re.findall(r"```bash\n(.*?)```", SECTION, flags=re.S)
    for line in block.splitlines()
    if line.strip()
]
ENV_LINES = [c for c in COMMANDS if c.startswith(("cp .env", "sed -i")) and ".env" in c]
CONFIG_LINES = [c for c in COMMANDS if c.startswith("docker-compose ") and " config" in c]


def _fresh_clone(path: Path) -> Path:
    """What `git clone` gives: the tracked compose file, .env.example and deploy/; no .env."""
    path.mkdir()
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy(REPO / name, path / name)
    shutil.copytree(REPO / "deploy", path / "deploy")
    return path


def _sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = require_tool("docker-compose", "apt-get install docker-compose")
    # A clean environment: no GRAFANA_ADMIN_PASSWORD or COMPOSE_* from the caller's shell.
    path = os.pathsep.join([str(Path(exe).parent), "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": str(cwd)}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _password(clone: Path) -> str:
    match = re.search(r"^GRAFANA_ADMIN_PASSWORD=(.*)$", (clone / ".env").read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_the_readme_runs_compose_config_for_the_mock_profile():
    assert ENV_LINES and "docker-compose --profile mock config --quiet" in CONFIG_LINES


def test_compose_config_as_written_works_in_a_fresh_clone(tmp_path):
    clones = [_fresh_clone(tmp_path / "a"), _fresh_clone(tmp_path / "b")]
    for clone in clones:
        for command in ENV_LINES + CONFIG_LINES:
            result = _sh(command, clone)
            assert result.returncode == 0, f"{command}: {result.stderr}"
        assert (clone / ".env").stat().st_mode & 0o077 == 0  # the password is the user's alone
    # A password of each clone's own, not a default that the repository ships.
    first, second = (_password(c) for c in clones)
    assert len(first) >= 32 and first != second
    assert first not in (REPO / "docker-compose.yml").read_text() + (REPO / ".env.example").read_text()


def test_without_the_env_lines_config_still_refuses(tmp_path):
    clone = _fresh_clone(tmp_path / "c")
    result = _sh(CONFIG_LINES[0], clone)
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr
