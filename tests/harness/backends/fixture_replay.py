"""Recorded HTTP responses (fixtures/<server>/<name>.json + .body) and a tiny TCP server replaying them.

A fixture is the pair `<name>.json` (metadata: source, api, stream, response status and headers,
optional recorded read sizes `chunks`, and `expect`: what the client must measure) and `<name>.body`
(the response body, byte-exact). `benchmarks/gpu/record_fixtures.py` writes this same format from a
live server. The replay server speaks real HTTP/1.1 on loopback, sends the body in pieces (as
recorded, one per SSE event, or in fixed-size slices that cut events, lines and UTF-8 characters
apart) and can cut or reset the connection part-way.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import APIS, Prompt, make_client, perform
from harness.records import RequestRecord

FIXTURES = Path(__file__).parent / "fixtures"
# What the client sends while a fixture is replayed (the server answers with the recording anyway).
PROMPT = Prompt(
    prompt="The capital of France is", messages=None, max_tokens=30, ignore_eos=True, temperature=None
)


@dataclass
class Fixture:
    name: str  # "<server>/<name>"
    meta: dict[str, Any]
    body: bytes

    @property
    def api(self) -> str:
        return self.meta["api"]

    @property
    def stream(self) -> bool:
        return bool(self.meta["stream"])

    @property
    def status(self) -> int:
        return int(self.meta["response"]["status"])

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in self.meta["response"]["headers"]]

    @property
    def expect(self) -> dict[str, Any]:
        return self.meta.get("expect", {})

    def pieces(self, split: int | None) -> list[bytes]:
        """The body in the pieces the server writes: fixed slices, the recorded reads, or per SSE event."""
        body = self.body
        if split:
            return [body[i : i + split] for i in range(0, len(body), split)] or [b""]
        recorded = self.meta.get("chunks")
        if recorded:
            sizes = [int(size) for _, size in recorded]
            out, pos = [], 0
            for size in sizes:
                out.append(body[pos : pos + size])
                pos += size
            return out + ([body[pos:]] if pos < len(body) else [])
        parts = body.split(b"\n\n")
        return [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def load_fixtures(root: Path = FIXTURES) -> list[Fixture]:
    out = []
    for meta_path in sorted(root.glob("*/*.json")):
        body_path = meta_path.with_suffix(".body")
        if body_path.exists():
            name = f"{meta_path.parent.name}/{meta_path.stem}"
            out.append(Fixture(name, json.loads(meta_path.read_text()), body_path.read_bytes()))
    return out


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ReplayServer:
    """Answers every connection with `fixture`'s response. `cut_after`: close cleanly after that many
    body bytes without ending the chunked body; `reset_after`: the same with a TCP reset;
    `delay_s`: pause between pieces."""

    fixture: Fixture
    split: int | None = None
    cut_after: int | None = None
    reset_after: int | None = None
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def __aenter__(self) -> ReplayServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(method, path, headers, body))
            await self._respond(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter) -> None:
        fx = self.fixture
        head = [f"HTTP/1.1 {fx.status} X"]
        head += [
            f"{k}: {v}"
            for k, v in fx.headers
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        ]
        head += ["transfer-encoding: chunked", "connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1"))
        sent = 0
        for piece in fx.pieces(self.split):
            limit = self.cut_after if self.cut_after is not None else self.reset_after
            if limit is not None and sent + len(piece) > limit:
                piece = piece[: limit - sent]
                if piece:
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                if self.reset_after is not None:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if piece:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            await writer.drain()
            await asyncio.sleep(self.delay_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def replay(
    fixture: Fixture,
    split: int | None = None,
    transport: str = "aiohttp",
    timeout_s: float = 10.0,
    **server_kw,
) -> tuple:
    api = APIS[fixture.api]("test-model")
    rec = RequestRecord(0, "arm", 0, "p0", warmup=False, api=api.name, stream=fixture.stream)
    server = ReplayServer(fixture, split=split, **server_kw)
    async with server, make_client(server.url, pool=4, timeout_s=timeout_s, transport=transport) as client:
        rec.sent_ns = time.monotonic_ns()
        await perform(client, api, api.encode(PROMPT, fixture.stream), rec, timeout_s)
    return rec, server.received


def check_measured(rec: RequestRecord, received: list[Received], fixture: Fixture) -> None:
    """What the client measured must be the fixture's `expect` block, with times in order."""
    expect = fixture.expect

    assert rec.status == expect["status"], rec.error
    assert rec.http_status == expect["http_status"]
    assert len(rec.chunk_ns) == expect["chunks"]
    for key in ("prompt_tokens", "output_tokens", "finish_reason"):
        if key in expect:
            assert getattr(rec, key) == expect[key], key
    if "error_contains" in expect:
        assert expect["error_contains"] in (rec.error or "")
    if rec.status == "ok":
        assert rec.error is None
    if "server_timing" in expect:
        assert rec.server_timing == expect["server_timing"]

    # Times are ordered and complete whatever happened.
    assert rec.sent_ns <= rec.first_byte_ns <= rec.done_ns
    assert rec.chunk_ns == sorted(rec.chunk_ns)
    if rec.chunk_ns:
        assert (rec.first_token_ns, rec.last_token_ns) == (rec.chunk_ns[0], rec.chunk_ns[-1])
        assert rec.first_byte_ns <= rec.first_token_ns <= rec.last_token_ns <= rec.done_ns

    # The request went to the fixture's endpoint, with the body that protocol expects.
    (request,) = received
    assert (request.method, request.path) == (
        fixture.meta["request"]["method"],
        fixture.meta["request"]["path"],
    )
    body = json.loads(request.body)
    if fixture.api == "tgi-generate":
        assert body == {"inputs": PROMPT.prompt, "parameters": {"details": True, "max_new_tokens": 30}}
    else:
        assert body["stream"] is fixture.stream and body["max_tokens"] == 30 and body["ignore_eos"] is True
        assert ("stream_options" in body) is fixture.stream
