"""benchmarks/gpu/record_fixtures.py (what the lead runs against a live vLLM/TGI) writes fixtures the
shared suite loads and replays: checked here by recording the mock, which speaks both protocols."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_replay import check_measured, load_fixtures, replay

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "benchmarks" / "gpu" / "record_fixtures.py"


@pytest.mark.slow
def test_recorded_mock_fixtures_replay(mock_server, tmp_path: Path) -> None:
    server = mock_server("--profile", "synthetic-fast", "--linebreak-rate", "0.3")
    for flavour in ("vllm", "tgi"):
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--base-url", server.url, "--out", str(tmp_path / flavour),
             "--server", flavour],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    fixtures = load_fixtures(tmp_path)
    names = {f.name for f in fixtures}
    assert {
        "vllm/chat_stream",
        "vllm/chat_stream_linebreak",
        "vllm/error_400",
        "tgi/generate_stream",
    } <= names
    linebreak = next(f for f in fixtures if f.name == "vllm/chat_stream_linebreak")
    assert any(c.encode() in linebreak.body for c in ("\u2028", "\u2029", "\x85"))
    for fixture in fixtures:
        assert len(fixture.pieces(None)) == len(fixture.meta["chunks"])  # replayed in the recorded reads
        for transport in ("aiohttp", "httpx"):
            rec, received = asyncio.run(replay(fixture, None, transport))
            check_measured(rec, received, fixture)
