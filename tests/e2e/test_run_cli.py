"""`joulebench run` as a user types it, against the real mock server: the acceptance commands and
one-line errors for bad input."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import run_dirs, side_by_side

from harness.runfolder import RunFolder

REPO = Path(__file__).resolve().parents[2]


def joulebench(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def only_run(out: Path) -> RunFolder:
    (folder,) = run_dirs(out)
    return RunFolder.open(folder)


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    from joulebench_testkit import run_mock_server

    with run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


@pytest.mark.slow
def test_acceptance_run_from_plan_flags(mock_server, tmp_path: Path) -> None:
    # The exact command, against the default (H100-calibrated) mock on a 20x virtual clock.
    server = mock_server("--speed", "20")
    command = "run --target URL --prompts synthetic --schedule fixed:interval=0.01 --n 300 --out runs/"
    result = joulebench(*command.replace("URL", server.url).split(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = only_run(tmp_path / "runs")
    requests = pd.read_parquet(folder.requests_path)
    measured = requests[~requests["warmup"]]
    assert sorted(measured["request_id"]) == list(range(300))
    assert (measured["status"] == "ok").all()
    assert (folder.path / "plan.parquet").is_file()
    manifest = json.loads((folder.path / "manifest.json").read_text())
    assert manifest["target"]["backend"] == "openai-chat" and manifest["target"]["detected"]
    assert manifest["plan"]["hash"] == folder.plan().header.plan_hash
    assert manifest["run"]["stop_reason"] == "completed"
    assert manifest["host"]["cpu_model"] and manifest["versions"]["joulebench"]
    assert str(folder.path.relative_to(tmp_path)) in result.stdout


@pytest.mark.slow
def test_acceptance_tgi_backend_with_a_multi_arm_plan_file(mock, tmp_path: Path) -> None:
    # The shape of issue 2's arms.parquet (three load-matched arms), at a rate a test can afford.
    built = joulebench(
        "plan", "build", "--prompts", "synthetic", "--schedule", "fixed:interval=0.5",
        "--schedule", "uniform:low=0.1,high=0.5", "--schedule", "bursty:size=8,intra=0.01,gap=2.4",
        "--rate", "40", "--n", "40", "--seed", "1", "--max-tokens", "8", "--ignore-eos",
        "--out", "arms.parquet", cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    result = joulebench(
        "run",
        "--target",
        mock.url,
        "--backend",
        "tgi",
        "--plan",
        "arms.parquet",
        "--out",
        "runs/",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = only_run(tmp_path / "runs")
    requests = pd.read_parquet(folder.requests_path)
    measured = requests[~requests["warmup"]]
    assert sorted(measured["request_id"]) == list(range(120))
    assert (measured["status"] == "ok").all()
    assert set(measured["api"]) == {"tgi-generate"}
    assert "ignore_eos" in folder.manifest()["target"]["notes"][0]  # TGI cannot honour it: said, not hidden
    assert measured["server_timing"].notna().all()  # TGI's x-* headers are kept
    manifest = folder.manifest()
    assert [a["name"] for a in manifest["arms"]] == ["fixed", "uniform", "bursty"]
    windows = [(a["start_ns"], a["end_ns"]) for a in manifest["arms"]]
    assert all(end_a <= start_b for (_, end_a), (start_b, _) in itertools.pairwise(windows))


BAD_INPUT = [
    (("--target", "http://127.0.0.1:1", "--prompts", "synthetic", "--n", "3"), "cannot connect"),
    (
        ("--target", "MOCK", "--backend", "tgi", "--plan", "missing.parquet"),
        "missing.parquet: plan file not found",
    ),
    (("--target", "MOCK", "--plan", "corrupt.parquet"), "corrupt.parquet: not a readable Parquet file"),
    (("--target", "MOCK", "--backend", "vllm", "--prompts", "synthetic", "--n", "3"), "--backend 'vllm'"),
    (("--target", "MOCK", "--prompts", "synthetic", "--n", "3", "--shard", "2/2"), "--shard 2/2"),
    (("--target", "MOCK", "--plan", "x.parquet", "--n", "3"), "not both"),
    (("--target", "localhost:8000", "--prompts", "synthetic", "--n", "3"), "not an http(s) URL"),
]


@pytest.fixture(scope="module")
def bad_input_runs(mock, tmp_path_factory) -> dict[tuple[str, ...], tuple[Path, subprocess.CompletedProcess]]:
    """Each BAD_INPUT case's folder and result, by its arguments: all run once, side by side."""
    folders = {args: tmp_path_factory.mktemp("bad-input") for args, _ in BAD_INPUT}
    for folder in folders.values():
        (folder / "corrupt.parquet").write_bytes(b"PAR1 not really")

    def run(args: tuple[str, ...]) -> tuple[Path, subprocess.CompletedProcess]:
        argv = [mock.url if a == "MOCK" else a for a in args]
        return folders[args], joulebench("run", *argv, "--out", "runs", cwd=folders[args], timeout=60)

    return dict(zip(folders, side_by_side(run, folders), strict=True))


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT, ids=[f"args{i}-{m}" for i, (_, m) in enumerate(BAD_INPUT)]
)
def test_bad_input_is_one_line(bad_input_runs, args: tuple[str, ...], message: str) -> None:
    tmp_path, result = bad_input_runs[args]
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("joulebench: error: ") and message in lines[0], (
        result.stderr
    )
    assert not (tmp_path / "runs").exists()  # nothing written for bad input


def test_target_that_does_not_speak_the_backend(mock, tmp_path: Path) -> None:
    # A base URL under which nothing answers: neither TGI's /info nor OpenAI's /v1/models.
    result = joulebench(
        "run", "--target", mock.url + "/nothing-here", "--backend", "tgi", "--prompts", "synthetic",
        "--n", "2", cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not answer GET /info like TGI" in result.stderr


def test_api_key_never_lands_in_the_run_folder(mock, tmp_path: Path) -> None:
    secret = "sk-joulebench-test-5e3c7"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--target", mock.url, "--prompts", "synthetic", "--n", "5",
         "--schedule", "fixed:interval=0.01", "--max-tokens", "4", "--out", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "JOULEBENCH_API_KEY": secret},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = only_run(tmp_path / "runs")
    for path in folder.path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name
    assert folder.manifest()["target"]["api_key"] == {"env": "JOULEBENCH_API_KEY", "set": True}
