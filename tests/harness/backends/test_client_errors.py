"""Failures of the client's own are `client_error`, never blamed on the server: a real EMFILE from a
process out of descriptors (both transports), the client's own pool running dry, and, the other way
round, a server's misshapen data stays the server's `stream_error`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fixture_replay import Fixture, ReplayServer, load_fixtures
from joulebench_testkit import REPO, run_mock_server

from harness.backends import APIS, Prompt, make_client, perform
from harness.backends.client import TRANSPORTS
from harness.records import RequestRecord

STARVED = Path(__file__).with_name("starved_client.py")
PROMPT = Prompt(prompt="hi", messages=None, max_tokens=8, ignore_eos=False, temperature=None)
N, SPARE = 24, 4


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_out_of_descriptors_is_the_clients_error(mock, transport: str) -> None:
    done = subprocess.run(
        [sys.executable, str(STARVED), mock.url, transport, str(N), str(SPARE)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    statuses = Counter(row["status"] for row in rows)
    assert len(rows) == N and set(statuses) <= {"ok", "client_error"}, statuses  # never connect_error
    assert 1 <= statuses["ok"] <= SPARE and statuses["client_error"] >= N - SPARE, statuses
    errors = [row["error"] for row in rows if row["status"] == "client_error"]
    assert all(e.startswith("EMFILE: the process's open-files limit is reached") for e in errors), errors[0]
    assert all("(in the client, not the server)" in e for e in errors)


async def _send(client, api, stream: bool, timeout_s: float) -> RequestRecord:
    rec = RequestRecord(0, "a", 0, "p", warmup=False, api=api.name, stream=stream)
    rec.sent_ns = time.monotonic_ns()
    await perform(client, api, api.encode(PROMPT, stream), rec, timeout_s)
    return rec


def test_waiting_for_the_clients_own_pool_is_the_clients_error() -> None:
    """httpx's pool (one connection here) gives up after its pool timeout: the wait was ours."""
    fixture = next(f for f in load_fixtures() if f.name == "vllm/chat_stream")

    async def run() -> list[RequestRecord]:
        # 0.3 s between events: the first request holds the only connection for about 2 s, well
        # within the 1 s read timeout per event, while the second waits for it beyond 1 s.
        async with (
            ReplayServer(fixture, delay_s=0.3) as server,
            make_client(server.url, pool=1, timeout_s=1.0, transport="httpx") as client,
        ):
            api = APIS["openai-chat"]("m")
            return list(await asyncio.gather(*(_send(client, api, True, 10.0) for _ in range(2))))

    first, second = sorted(asyncio.run(run()), key=lambda r: r.status != "ok")
    assert first.status == "ok", first.error
    assert second.status == "client_error" and second.http_status is None
    assert second.error.startswith("no free connection in the client's own pool: PoolTimeout")


def _inline(body: bytes, stream: bool) -> Fixture:
    kind = "text/event-stream" if stream else "application/json"
    meta = {
        "api": "openai-chat",
        "stream": stream,
        "response": {"status": 200, "headers": [["content-type", kind]]},
    }
    return Fixture("inline", meta, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_misshapen_server_data_stays_the_servers_error(transport: str, stream: bool) -> None:
    """Valid JSON of the wrong shape trips the protocol's reader (AttributeError): still the server's."""
    body = b'data: {"choices":[1]}\n\ndata: [DONE]\n\n' if stream else b'{"choices":[1]}'

    async def run() -> RequestRecord:
        async with (
            ReplayServer(_inline(body, stream)) as server,
            make_client(server.url, pool=1, timeout_s=5, transport=transport) as client,
        ):
            return await _send(client, APIS["openai-chat"]("m"), stream, 5.0)

    rec = asyncio.run(run())
    assert rec.status == "stream_error", rec.error
    what = "SSE data" if stream else "response body"
    assert rec.error.startswith(f"unexpected {what}: AttributeError"), rec.error
