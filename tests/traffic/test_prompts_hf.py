"""Hugging Face datasets by name with --offline: a real local cache entry loads; anything else fails fast.

Each case runs `joulebench` in a subprocess with its own HF_HOME, because `datasets` reads its cache
location when it is imported. The hub endpoint points at a loopback socket that never answers, so a
build that tried the network would hang there (and the socket would see the connection). Online
downloads, the split rule and the `ultrachat` shortcut: test_prompts_hub.py.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from traffic.plan import load_plan

pytest.importorskip("datasets")

REPO = Path(__file__).resolve().parents[2]

# Builds the cache entry that `datasets.load_dataset("joulebench/tiny_prompts")` leaves after a download:
# <HF_HOME>/datasets/joulebench___tiny_prompts/default/0.0.0/<revision>/{dataset_info.json, *.arrow}.
_MAKE_CACHE = """
import os, sys
from datasets.packaged_modules.json.json import Json
builder = Json(dataset_name="tiny_prompts", config_id="default", hash="0123456789abcdef",
               data_files={"train": sys.argv[1]})
builder.download_and_prepare()
root = os.path.join(os.environ["HF_HOME"], "datasets")
os.rename(os.path.join(root, "tiny_prompts"), os.path.join(root, "joulebench___tiny_prompts"))
"""


@pytest.fixture
def silent_hub():
    """A loopback 'hub' that accepts nothing: any network attempt would hang on it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield f"http://127.0.0.1:{server.getsockname()[1]}", server
    server.close()


def hf_env(home: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint)  # no HF_*_OFFLINE: --offline must force it
    return env


def no_connection_arrived(server: socket.socket) -> bool:
    try:
        server.accept()
    except BlockingIOError:
        return True
    return False


@pytest.mark.slow
def test_cached_dataset_loads_offline(tmp_path, silent_hub):
    endpoint, server = silent_hub
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"cached prompt {i}"}) + "\n" for i in range(5)))
    env = hf_env(tmp_path / "hf", endpoint)
    subprocess.run(
        [sys.executable, "-c", _MAKE_CACHE, str(source)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    out = tmp_path / "plan.parquet"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "plan",
            "build",
            "--prompts",
            "hf:joulebench/tiny_prompts",
            "--offline",
            "--n",
            "5",
            "--seed",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    plan = load_plan(out)
    assert sorted(plan.rows["prompt"]) == [f"cached prompt {i}" for i in range(5)]
    assert plan.header.prompt_source["kind"] == "hf"
    assert plan.header.prompt_source["split"] is None  # none given: the only split, train, is taken
    assert plan.header.prompt_source["provenance"] == {
        "dataset": "joulebench/tiny_prompts",
        "config": "default",
        "split": "train",
        "revision": "0123456789abcdef",
    }
    arrow = next((tmp_path / "hf" / "datasets" / "joulebench___tiny_prompts").rglob("*.arrow"))
    expected = hashlib.sha256(arrow.read_bytes()).hexdigest()
    assert plan.header.prompt_source["content_hash"] == f"sha256:{expected}"
    assert no_connection_arrived(server)


@pytest.mark.slow
def test_uncached_dataset_fails_fast_with_one_line(tmp_path, silent_hub):
    endpoint, server = silent_hub
    out = tmp_path / "plan.parquet"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "plan",
            "build",
            "--prompts",
            "hf:joulebench/not_cached",
            "--offline",
            "--n",
            "5",
            "--out",
            str(out),
        ],
        env=hf_env(tmp_path / "hf", endpoint),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "joulebench: error: hf:joulebench/not_cached: cannot load it from the local Hugging Face cache"
    )
    assert "(OfflineModeIsEnabled)" in lines[0]  # why, in the library's own words
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert no_connection_arrived(server)
    assert elapsed < 120  # loose: the point is that it does not wait on the network
