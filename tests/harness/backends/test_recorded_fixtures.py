"""One shared suite: every recorded response, replayed over real loopback HTTP through its backend.

Each fixture is replayed through every transport (httpx's own, aiohttp's, the sender's), three ways: in its
recorded (or per-event) pieces, one byte at a time, and in 7-byte slices that cut lines, `\\r\\n`
pairs and UTF-8 characters apart. The client must measure the same thing every time: the fixture's
`expect` block.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fixture_replay import Fixture, check_measured, load_fixtures, replay

from harness.backends import APIS
from harness.backends.client import TRANSPORTS

FIXTURES = load_fixtures()


def test_fixture_set_covers_every_server_and_api() -> None:
    names = {f.name for f in FIXTURES}
    assert {"vllm/chat_stream", "vllm/completion_stream", "tgi/generate_stream", "vllm/error_400"} <= names
    assert {f.api for f in FIXTURES} == set(APIS)
    assert all("source" in f.meta and f.expect.get("status") for f in FIXTURES)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("split", [None, 1, 7], ids=["as-recorded", "1-byte", "7-byte"])
@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_recorded_response(fixture: Fixture, split: int | None, transport: str) -> None:
    rec, received = asyncio.run(replay(fixture, split, transport))
    check_measured(rec, received, fixture)


def test_chunk_times_are_arrival_times() -> None:
    """With a pause between events, each content chunk is stamped when it arrived."""
    fixture = next(f for f in FIXTURES if f.name == "tgi/generate_stream")
    rec, _ = asyncio.run(replay(fixture, delay_s=0.02))
    gaps = [b - a for a, b in zip(rec.chunk_ns, rec.chunk_ns[1:], strict=False)]
    assert len(gaps) == 9 and min(gaps) >= 15_000_000


def test_line_separator_fixture_breaks_a_splitlines_client() -> None:
    """The fixture has teeth: reading it the way httpx's aiter_lines() does loses chunks to JSON errors."""
    fixture = next(f for f in FIXTURES if f.name == "vllm/chat_stream_line_separators")
    broken = 0
    for line in fixture.body.decode().splitlines():
        if line.startswith("data: {"):
            try:
                json.loads(line[len("data: ") :], strict=False)
            except ValueError:
                broken += 1
    # U+2028, U+2029 and U+0085 (sent raw, as pydantic and json.dumps do) and the unescaped controls.
    assert broken == 4
