#!/usr/bin/env python3
"""An OpenAI-compatible server that streams N tokens and records when each request arrived: the
server-side truth `side_by_side.py` holds every load generator to.

`benchmarks/arrival_server.py` hands each arrival back in a response header that only joulebench
keeps; the peers log no headers, so this variant keeps the arrivals itself: `GET /arrivals` returns
the monotonic nanoseconds (this machine's clock, the same for every tool) at which each POST's last
byte reached it, oldest first, and forgets them.

Every POST (chat or text completions, whatever it asks for) gets exactly --tokens tokens: streamed as
server-sent events when the body says `"stream": true` (a usage chunk last, as vLLM sends with
`stream_options.include_usage`), else one JSON body. With --itl-ms 0 (the default) the whole stream
goes out in one write, precomputed, so the server costs microseconds per request and is never why a
request is seen late; --itl-ms spaces the tokens like a decoding server would.

Raw asyncio on joulebench's precise loop (`harness.clock.new_event_loop`), like arrival_server.py.

    python benchmarks/peers/stream_server.py --tokens 128   # prints its base URL, then serves
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]

from harness.clock import new_event_loop  # noqa: E402

MODEL = "arrival"
_CHAT = "/v1/chat/completions"


def _head(status: str, kind: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\n{extra}\r\n".encode()


def _plain(status: str, body: bytes) -> bytes:
    return _head(status, "application/json", f"content-length: {len(body)}\r\n") + body


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def stream_events(chat: bool, tokens: int) -> list[bytes]:
    """The server-sent events of one streamed answer of `tokens` tokens, [DONE] last."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
        body = {"id": "a", "object": kind, "created": 0, "model": MODEL, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def choice(i: int) -> dict[str, object]:
        done = "length" if i == tokens - 1 else None
        if chat:
            return {
                "index": 0,
                "delta": {"role": "assistant", "content": " x"} if i == 0 else {"content": " x"},
                "finish_reason": done,
            }
        return {"index": 0, "text": " x", "finish_reason": done}

    usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
    return [*(event([choice(i)]) for i in range(tokens)), event([], usage), b"data: [DONE]\n\n"]


def whole_body(chat: bool, tokens: int) -> bytes:
    text = " x" * tokens
    choice = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        if chat
        else {"index": 0, "text": text, "finish_reason": "length"}
    )
    return json.dumps(
        {
            "id": "a",
            "object": "chat.completion" if chat else "text_completion",
            "created": 0,
            "model": MODEL,
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
        }
    ).encode()


class _Server:
    """What every connection shares: the answers, precomputed, and the arrival log."""

    def __init__(self, tokens: int, itl_s: float) -> None:
        self.itl_s = itl_s
        self.arrivals: list[int] = []
        sse = "text/event-stream", "transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
        self.events = {
            chat: [_chunk(e) for e in stream_events(chat, tokens)] + [b"0\r\n\r\n"] for chat in (True, False)
        }
        self.stream_head = _head("200 OK", *sse)
        self.streams = {chat: self.stream_head + b"".join(e) for chat, e in self.events.items()}
        self.wholes = {chat: _plain("200 OK", whole_body(chat, tokens)) for chat in (True, False)}


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

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
            method, path = head[0].split(" ")[:2]
            self._answer(method, path.split("?")[0], body, now)

    def _answer(self, method: str, path: str, body: bytes, now: int) -> None:
        server, transport = self._server, self._transport
        assert transport is not None
        if method == "POST":
            server.arrivals.append(now)
            chat = path == _CHAT
            try:
                stream = bool(json.loads(body or b"{}").get("stream"))
            except (ValueError, AttributeError):
                stream = False
            if not stream:
                transport.write(server.wholes[chat])
            elif server.itl_s <= 0:
                transport.write(server.streams[chat])
            else:
                asyncio.get_running_loop().create_task(self._paced(transport, server.events[chat]))
        elif method == "GET" and path == "/arrivals":
            arrivals, server.arrivals = server.arrivals, []
            transport.write(_plain("200 OK", json.dumps(arrivals).encode()))
        elif method == "GET" and path == "/v1/models":
            transport.write(
                _plain(
                    "200 OK",
                    json.dumps(
                        {
                            "object": "list",
                            "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "peers"}],
                        }
                    ).encode(),
                )
            )
        elif method == "GET" and path in ("/health", "/"):
            transport.write(_plain("200 OK", b"{}"))
        else:
            transport.write(_plain("404 Not Found", b"{}"))

    async def _paced(self, transport: asyncio.Transport, events: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        transport.write(self._server.stream_head + events[0])
        due = loop.time()
        for event in events[1:]:
            due += self._server.itl_s  # absolute deadlines: a slow write does not stretch the stream
            await asyncio.sleep(max(0.0, due - loop.time()))
            if transport.is_closing():
                return
            transport.write(event)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=16, help="output tokens per answer")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="gap between streamed tokens")
    args = parser.parse_args()
    if args.tokens < 1:
        parser.error("--tokens must be at least 1")
    server = _Server(args.tokens, args.itl_ms / 1000)
    loop = new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    listener = loop.run_until_complete(loop.create_server(lambda: _Connection(server), sock=sock))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        loop.run_forever()
    finally:
        listener.close()
        loop.close()


if __name__ == "__main__":
    main()
