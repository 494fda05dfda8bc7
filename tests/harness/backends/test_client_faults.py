"""Network faults over real loopback sockets end in exactly one terminal status, and the
backend checks before a run turn a wrong target into a one-line error."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time

import pytest
from fixture_replay import Fixture, ReplayServer, load_fixtures
from joulebench_testkit import free_port

from foundation.errors import InputError
from harness.backends import APIS, OpenAIChat, Prompt, make_client, perform, resolve_target
from harness.backends.client import TRANSPORTS
from harness.records import RequestRecord

FIXTURES = {f.name: f for f in load_fixtures()}
PROMPT = Prompt(prompt="hi", messages=None, max_tokens=8, ignore_eos=False, temperature=None)


async def send(
    url: str, transport: str, api_name: str = "openai-chat", stream: bool = True, timeout_s: float = 5.0
):
    api = APIS[api_name]("m")
    rec = RequestRecord(0, "a", 0, "p", warmup=False, api=api_name, stream=stream)
    async with make_client(url, pool=2, timeout_s=timeout_s, transport=transport) as client:
        rec.sent_ns = time.monotonic_ns()
        await perform(client, api, api.encode(PROMPT, stream), rec, timeout_s)
    return rec


async def via(fixture: Fixture, transport: str, **kw) -> RequestRecord:
    async with ReplayServer(fixture, **kw) as server:
        return await send(server.url, transport, fixture.api, fixture.stream)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused(transport: str) -> None:
    rec = asyncio.run(send(f"http://127.0.0.1:{free_port()}", transport))
    assert rec.status == "connect_error" and rec.http_status is None
    assert rec.done_ns >= rec.sent_ns and rec.first_byte_ns is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_closes_mid_stream(transport: str) -> None:
    rec = asyncio.run(via(FIXTURES["vllm/chat_stream"], transport, cut_after=700))
    assert rec.status == "stream_error" and rec.http_status == 200
    assert "during the response" in rec.error
    assert 1 <= len(rec.chunk_ns) < 3 and rec.last_token_ns == rec.chunk_ns[-1]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_reset_mid_stream(transport: str) -> None:
    rec = asyncio.run(via(FIXTURES["tgi/generate_stream"], transport, reset_after=400))
    assert rec.status == "stream_error"
    assert 1 <= len(rec.chunk_ns) < 10


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stalled_stream_times_out(transport: str) -> None:
    async def run() -> RequestRecord:
        async with ReplayServer(FIXTURES["vllm/chat_stream"], delay_s=0.5) as server:
            return await send(server.url, transport, timeout_s=0.8)

    rec = asyncio.run(run())
    assert rec.status == "timeout"
    assert 0.7e9 <= rec.done_ns - rec.sent_ns < 3e9
    assert 1 <= len(rec.chunk_ns) < 3


@pytest.mark.parametrize("mode", ["close", "garbage"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_that_closes_before_responding(mode: str, transport: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if mode == "garbage":
            writer.write(b"this is not http\r\n\r\n")
            await writer.drain()
        writer.close()

    async def run() -> RequestRecord:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            return await send(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", transport)

    rec = asyncio.run(run())
    assert rec.status == "stream_error"
    assert "before the response" in rec.error


def _json_fixture(body: dict | None, status: int = 200) -> Fixture:
    meta = {
        "api": "openai-chat",
        "stream": False,
        "response": {"status": status, "headers": [["content-type", "application/json"]]},
    }
    return Fixture("inline", meta, json.dumps(body).encode() if body is not None else b"not found")


MODELS = {"object": "list", "data": [{"id": "served-model", "object": "model", "owned_by": "vllm"}]}
INFO = {"model_id": "bigscience/bloom-560m", "version": "3.3.4", "max_input_tokens": 1024}


def detect(fixture: Fixture, backend: str = "auto", model: str | None = None):
    async def run():
        async with ReplayServer(fixture) as server:
            return await resolve_target(server.url, backend, model)

    return asyncio.run(run())


def test_auto_detects_openai_and_tgi() -> None:
    target = detect(_json_fixture(MODELS))
    assert isinstance(target.api, OpenAIChat) and target.api.model == "served-model" and target.detected
    assert target.server == {"models": ["served-model"]}
    tgi = detect(_json_fixture(INFO))
    assert tgi.api.name == "tgi-generate" and tgi.server["info"]["version"] == "3.3.4"


def test_wrong_backend_and_unreachable_target_are_one_line_errors() -> None:
    with pytest.raises(
        InputError, match=r"--backend tgi: .* does not answer GET /info like TGI .*try --backend openai"
    ):
        detect(_json_fixture(MODELS), "tgi")
    with pytest.raises(InputError, match=r"--backend openai-chat: .*GET /v1/models.*try --backend tgi"):
        detect(_json_fixture(INFO), "openai-chat")
    with pytest.raises(
        InputError, match=r"does not answer like an OpenAI-compatible server \(GET /v1/models: HTTP 404\)"
    ):
        detect(_json_fixture(None, status=404))
    with pytest.raises(InputError, match="cannot connect"):
        asyncio.run(resolve_target(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(InputError, match="not an http"):
        asyncio.run(resolve_target("localhost:8000"))
    for malformed in ("http://[::1", "http://127.0.0.1:port"):
        with pytest.raises(InputError, match=rf"--target '{re.escape(malformed)}': not a valid URL"):
            asyncio.run(resolve_target(malformed))
    with pytest.raises(InputError, match="refused \\(HTTP 401\\)"):
        detect(_json_fixture({"error": "no key"}, status=401))


def test_a_named_openai_backend_and_model_need_no_model_list() -> None:
    # transformers serve answers GET /v1/models with 500 where no Hugging Face cache folder exists.
    failing = _json_fixture({"detail": "cache not found"}, status=500)
    target = detect(failing, "openai-chat", "/models/x")
    assert target.api.model == "/models/x" and target.server == {"models_error": "HTTP 500"}
    with pytest.raises(InputError, match=r"--backend openai-chat: .*GET /v1/models .*\(HTTP 500\)"):
        detect(failing, "openai-chat")  # without a model there is nothing to send
    with pytest.raises(InputError, match="does not answer like an OpenAI-compatible server"):
        detect(failing, "auto", "/models/x")  # auto still needs to recognise the protocol


def test_api_key_is_sent_as_a_bearer_token() -> None:
    async def run():
        async with ReplayServer(FIXTURES["vllm/chat"]) as server:
            async with make_client(server.url, pool=1, timeout_s=5, api_key="sk-test-123") as client:
                await client.post("/v1/chat/completions", content=b"{}")
            return server.received

    (request,) = asyncio.run(run())
    assert request.headers["authorization"] == "Bearer sk-test-123"


@pytest.mark.parametrize("case", ["stream", "json", "http_error"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_exchange_leaves_no_reference_cycle(case: str, transport: str, mock_server) -> None:
    """Garbage in reference cycles waits for the cyclic collector, whose pauses delay the sends due
    meanwhile: a finished exchange on a kept-alive connection must be freed by reference counting."""
    errors = ("--error-rate", "1", "--error-status", "503") if case == "http_error" else ()
    server = mock_server("--profile", "synthetic-fast", *errors)
    stream = case == "stream"
    api = asyncio.run(resolve_target(server.url)).api

    async def run() -> list[int]:
        found = []
        async with make_client(server.url, pool=2, timeout_s=5, transport=transport) as client:
            for _ in range(4):  # the first exchange also opens the connection and fills caches
                rec = RequestRecord(0, "a", 0, "p", warmup=False, api=api.name, stream=stream)
                rec.sent_ns = time.monotonic_ns()
                await perform(client, api, api.encode(PROMPT, stream), rec, 5.0)
                assert rec.status == ("http_error" if errors else "ok"), rec.error
                del rec
                found.append(gc.collect())
        return found

    gc.collect()
    gc.disable()
    try:
        found = asyncio.run(run())
    finally:
        gc.enable()
    assert found[1:] == [0, 0, 0], found
