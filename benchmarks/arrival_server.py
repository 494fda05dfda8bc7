#!/usr/bin/env python3
"""An OpenAI-compatible server that records when each request arrived: the truth the runner's own
stamps are checked against (`benchmarks/wire_lateness.py`, `benchmarks/worker_lateness.py`).

It says in the response header `x-request-id` (a header the runner keeps, in `server_timing`) the
monotonic nanosecond at which the request's last byte reached it: when the event loop handed it the
bytes that completed the request. It shares the runner's monotonic clock (same kernel), so the stamp
compares directly with `planned_ns`, `sent_ns` and `wire_ns`. Its loop is joulebench's precise one
(`harness.clock.new_event_loop`), so its own wake-up adds microseconds, not the millisecond epoll rounds
to; what remains between the runner's wire stamp and this one is the kernel's loopback delivery and
this loop's wake-up.

A request with `"stream": true` gets `max_tokens` SSE chunks of one token each, `--itl-ms` apart on its
own grid of absolute deadlines from its arrival, then a finish chunk, a usage chunk and `[DONE]`
(OpenAI chat format, chunked transfer encoding, keep-alive), so the runner carries the chunk parsing of
real outputs while its requests' arrivals are measured; any other request gets its `max_tokens` at
once, in one body.

Raw asyncio (no HTTP framework), one timer per token: parsing a request costs microseconds, and
128-token streams at 100 requests/s cost it about a fifth of a core.

Its stamps are only as good as its own loop: a loop that wakes late stamps late, and one that falls
behind on its token timers delivers fewer chunks and takes new requests late. So it watches itself: a
probe wakes every 5 ms at an absolute deadline and records how late, and `GET /stats` returns, for
the time since the last `GET /stats`, that lag (p50 / p99 / max, ms) and the process's CPU share.
A benchmark reads it before and after each run and reports the truth's own error beside the figures.

    python benchmarks/arrival_server.py [--itl-ms 10]   # prints its base URL (a free port), then serves
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from harness.clock import new_event_loop  # noqa: E402

_MODELS = json.dumps({"object": "list", "data": [{"id": "arrival", "object": "model"}]}).encode()
_TOKEN = b'{"id":"a","object":"chat.completion.chunk","model":"arrival","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}'  # noqa: E501
_FINISH = b'{"id":"a","object":"chat.completion.chunk","model":"arrival","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'  # noqa: E501


def _usage(tokens: int) -> bytes:
    usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
    return json.dumps({"id": "a", "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode()


def _whole(tokens: int) -> bytes:
    return json.dumps(
        {"id": "a", "object": "chat.completion", "model": "arrival",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * tokens},
                      "finish_reason": "length"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}}
    ).encode()  # fmt: skip


def _chunk(event: bytes) -> bytes:
    data = b"data: " + event + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Streams(asyncio.Protocol):
    itl_ns = 10_000_000

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()  # the bytes that complete a request arrived now
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self._buffer) < end + 4 + length:
                return  # the body is still on its way
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            self._answer(head[0].split(" ")[:2], body, now)

    def _answer(self, request: list[str], body: bytes, now: int) -> None:
        assert self._transport is not None
        method, path = request
        if method == "GET" and path == "/v1/models":
            self._write_whole("200 OK", _MODELS, "")
            return
        if method == "GET" and path == "/stats":
            self._write_whole("200 OK", json.dumps(SELF.read()).encode(), "")
            return
        if method != "POST":
            self._write_whole("404 Not Found", b"{}", "")
            return
        doc = json.loads(body or b"{}")
        tokens = int(doc.get("max_tokens") or doc.get("max_completion_tokens") or 1)
        if not doc.get("stream"):
            self._write_whole("200 OK", _whole(tokens), f"x-request-id: {now}\r\n")
            return
        self._transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"x-request-id: %d\r\n\r\n" % now
        )
        self._loop.call_at((now + self.itl_ns) / 1e9, self._token, now, 1, tokens)

    def _token(self, start: int, i: int, tokens: int) -> None:
        if self._transport is None:
            return  # the client went away
        self._transport.write(_chunk(_TOKEN))
        if i < tokens:
            self._loop.call_at((start + (i + 1) * self.itl_ns) / 1e9, self._token, start, i + 1, tokens)
            return
        self._transport.write(_chunk(_FINISH) + _chunk(_usage(tokens)) + _chunk(b"[DONE]") + b"0\r\n\r\n")

    def _write_whole(self, status: str, body: bytes, extra: str) -> None:
        assert self._transport is not None
        head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self._transport.write(f"{head}{extra}\r\n".encode() + body)


class _Self:
    """The server's own loop lag (a probe every PROBE_NS, on absolute deadlines) and CPU share, since
    the last read."""

    PROBE_NS = 5_000_000

    def __init__(self) -> None:
        self._lags: list[int] = []
        self._since = (time.monotonic_ns(), time.process_time_ns())

    async def probe(self) -> None:
        due = time.monotonic_ns()
        while True:
            due += self.PROBE_NS
            await asyncio.sleep(max(0, due - time.monotonic_ns()) / 1e9)
            now = time.monotonic_ns()
            self._lags.append(now - due)
            if now - due > self.PROBE_NS:
                due = now  # a stall longer than a period is one late wake-up, not a burst of them

    def read(self) -> dict[str, object]:
        wall, cpu = self._since
        now = (time.monotonic_ns(), time.process_time_ns())
        lags, self._lags, self._since = sorted(self._lags), [], now
        return {
            "wall_s": (now[0] - wall) / 1e9,
            "cpu_share": (now[1] - cpu) / max(now[0] - wall, 1),
            "loop_lag_ms": {"n": len(lags), **{q: _at(lags, f) for q, f in _QUANTILES.items()}},
        }


_QUANTILES = {"p50": 0.5, "p99": 0.99, "max": 1.0}


def _at(sorted_ns: list[int], q: float) -> float | None:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6 if sorted_ns else None


def read_stats(url: str) -> dict[str, object]:
    """The server at `url`'s own figures since the last read (and a new interval from now)."""
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


SELF = _Self()


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--itl-ms", type=float, default=10.0, help="time between a stream's tokens")
    args = parser.parse_args()
    _Streams.itl_ns = round(args.itl_ms * 1e6)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = loop.run_until_complete(loop.create_server(_Streams, sock=sock))
    probe = loop.create_task(SELF.probe())
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        loop.run_forever()
    finally:
        probe.cancel()
        server.close()
        loop.close()


if __name__ == "__main__":
    main()
