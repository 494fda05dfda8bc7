#!/usr/bin/env python3
"""CPU per streamed response of the two HTTP/1.1 parsers `--transport sender` could read with.

The sender transport's loop parses every response while it must also keep up with the schedule, so
its CPU per response decides the rate one process holds. This times one response, as a server that
streams one SSE event per token sends it (chunked, one network read per event), parsed by:

  h11        pure Python: `receive_data` + `next_event` until the message's end (the transport's
             first version)
  httptools  llhttp in C, through callbacks (what the transport uses now; uvicorn's parser too)

Both collect the status, reason, headers and the body pieces of each read as the transport does
(httptools: every callback the transport sets, doing what it does). Per output length: the median over
`--rounds` rounds of the CPU time per response (each round parses `--responses` responses), and the
ratio h11 / httptools.

    python benchmarks/response_parsing.py [--tokens 16,128,512] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import h11
import httptools

HEAD = (
    b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 05:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)
# One event as the mock and vLLM stream it: an OpenAI chat chunk of one token.
EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1796000000,'
    b'"model":"m","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n'
)


def reads(tokens: int) -> list[bytes]:
    """The response as the client's reads see it: the head, then one chunked event per read."""
    event = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
    return [HEAD, *([event] * tokens), b"0\r\n\r\n"]


def parse_h11(pieces: list[bytes]) -> int:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/v1/chat/completions", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    size = 0
    for data in pieces:
        conn.receive_data(data)
        body: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                break
            if isinstance(event, h11.Data):
                body.append(bytes(event.data))
        size += len(b"".join(body))
    return size


class _Collect:
    """The transport's callbacks (`sender_transport._Connection`), minus its futures and queue."""

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.reason: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.framed = self.ended = False

    def on_message_begin(self) -> None:
        if self.parser is None:
            raise RuntimeError("a response the client did not ask for")

    def on_status(self, reason: bytes) -> None:
        self.reason.append(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        codings = [v for n, v in self.headers if n.lower() == b"transfer-encoding"]
        self.framed = bool(codings) and codings[-1].rsplit(b",", 1)[-1].strip().lower() == b"chunked"

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.ended = True


def parse_httptools(pieces: list[bytes]) -> int:
    sink = _Collect()
    parser = sink.parser = httptools.HttpResponseParser(sink)
    size = 0
    for data in pieces:
        parser.feed_data(data)
        size += len(b"".join(sink.body))
        sink.body = []
    assert sink.ended and sink.status == 200 and sink.framed
    return size


def per_response_us(parse, pieces: list[bytes], responses: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for _ in range(responses):
            parse(pieces)
        times.append((time.process_time_ns() - t0) / responses / 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="16,128,512", help="output lengths (events per response)")
    ap.add_argument("--responses", type=int, default=200, help="responses per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, help="write response_parsing.json and .md here")
    args = ap.parse_args(argv)
    try:
        lengths = [int(t) for t in args.tokens.split(",")]
    except ValueError:
        ap.error(f"--tokens {args.tokens!r}: expected whole numbers separated by commas")
    for name, value in {
        "--tokens": min(lengths),
        "--responses": args.responses,
        "--rounds": args.rounds,
    }.items():
        if value < 1:
            ap.error(f"{name}: must be at least 1 (got {value})")
    rows = []
    for tokens in lengths:
        pieces = reads(tokens)
        if {parse_h11(pieces), parse_httptools(pieces)} != {tokens * len(EVENT)}:
            raise SystemExit("the parsers disagree on the body")
        slow = per_response_us(parse_h11, pieces, args.responses, args.rounds)
        fast = per_response_us(parse_httptools, pieces, args.responses, args.rounds)
        rows.append({"tokens": tokens, "h11_us": slow, "httptools_us": fast, "ratio": slow / fast})
    lines = [
        f"CPU per streamed response ({args.rounds} rounds of {args.responses}; medians), "
        f"Python {platform.python_version()}, h11 {h11.__version__}, httptools {httptools.__version__}:",
        "",
        "| tokens | h11 µs | httptools µs | h11 / httptools | at 1,000 responses/s, h11's share of a core |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tokens']} | {r['h11_us']:.1f} | {r['httptools_us']:.1f} | {r['ratio']:.1f} | "
            f"{r['h11_us'] / 1e3:.3f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "python": platform.python_version(),
            "h11": h11.__version__,
            "httptools": httptools.__version__,
        }
        data = {"meta": meta, "rows": rows}
        (args.out / "response_parsing.json").write_text(json.dumps(data, indent=1) + "\n")
        (args.out / "response_parsing.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
