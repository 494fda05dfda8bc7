#!/usr/bin/env python3
"""An OpenAI-compatible server that records when each request arrived: the truth the runner's own
stamps are checked against (`benchmarks/wire_lateness.py`, `benchmarks/worker_lateness.py`).

It says in the response header `x-request-id` (a header the runner keeps, in `server_timing`) the
monotonic nanosecond at which the request's last byte reached it: the kernel's receive timestamp of
the segment that completed the request (SO_TIMESTAMPNS, read with `recvmsg`; the kernel stamps epoch
time, mapped onto the monotonic clock by an offset read at start and at every `GET /stats`). So the
stamp does not depend on when this server's loop got round to reading: a loop busy writing other
streams' tokens reads late, but the stamp is the arrival. It shares the runner's monotonic clock (same
kernel), so the stamp compares directly with `planned_ns`, `sent_ns` and `wire_ns`; what remains
between the runner's wire stamp and this one is the kernel's loopback delivery. Where the kernel gives
no timestamp, the stamp is the read's time (counted: `unstamped_reads` in `GET /stats`).

A request with `"stream": true` gets `max_tokens` SSE chunks of one token each, `--itl-ms` apart on its
own grid of absolute deadlines from its arrival, then a finish chunk, a usage chunk and `[DONE]`
(OpenAI chat format, chunked transfer encoding, keep-alive), so the runner carries the chunk parsing of
real outputs while its requests' arrivals are measured; any other request gets its `max_tokens` at
once, in one body.

Raw sockets on an asyncio loop (no HTTP framework), one timer per token: parsing a request costs
microseconds, and 128-token streams at 100 requests/s cost it about a fifth of a core.

Its loop still paces the streams: one that falls behind on its token timers delivers chunks late and
takes new requests late. So it watches itself: a probe wakes every 5 ms at an absolute deadline and
records how late, and `GET /stats` returns, for the time since the last `GET /stats`, that lag (p50 /
p99 / max, ms), how long after the kernel's stamp each read came (`read_delay_ms`: what a stamp taken
by the loop would have added) and the process's CPU share. A benchmark reads it before and after each
run and reports the server's own figures beside the runner's.

    python benchmarks/arrival_server.py [--itl-ms 10]   # prints its base URL (a free port), then serves
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from harness.clock import ClockAnchor, new_event_loop  # noqa: E402

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


class _Clock:
    """Maps the kernel's receive timestamps (epoch ns, SO_TIMESTAMPNS) onto the monotonic clock: the
    offset between the two clocks (joulebench's bracketed `ClockAnchor`), refreshed at every
    `GET /stats` (NTP slews the epoch clock by microseconds a minute at most)."""

    def __init__(self) -> None:
        self.offset_ns = 0
        self.refresh()

    def refresh(self) -> None:
        anchor = ClockAnchor.now()
        self.offset_ns = anchor.epoch_ns - anchor.mono_ns


CLOCK = _Clock()
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python names it from 3.12 on
_CMSG = socket.CMSG_SPACE(16)  # one struct timespec


def _kernel_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The receive timestamp of the read's last segment, on the monotonic clock (None: not given)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec - CLOCK.offset_ns
    return None


class _Streams:
    """One connection, read with `recvmsg` for the kernel's receive timestamp and written without
    blocking (what the socket does not take now waits for it to become writable)."""

    itl_ns = 10_000_000

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._buffer = b""
        self._out = b""
        self._open = True
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(65536, _CMSG)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        read_ns = time.monotonic_ns()
        if not data:
            self._close()
            return
        # The bytes that complete a request reached the socket at the kernel's stamp; the loop read
        # them `read_ns - arrived` later (its own lag, which the stamp no longer carries).
        arrived = _kernel_ns(ancillary)
        if arrived is None:
            arrived = read_ns
            SELF.unstamped += 1
        else:
            SELF.read_delays.append(read_ns - arrived)
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
            self._answer(head[0].split(" ")[:2], body, arrived)

    def _write(self, data: bytes) -> None:
        if not self._open:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close()
            return
        if sent < len(data):
            self._out = data[sent:]
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close()
            return
        self._out = self._out[sent:]
        if not self._out:
            self._loop.remove_writer(self._sock.fileno())

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._sock.fileno())
            if self._out:
                self._loop.remove_writer(self._sock.fileno())
            self._sock.close()

    def _answer(self, request: list[str], body: bytes, now: int) -> None:
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
        self._write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"x-request-id: %d\r\n\r\n" % now
        )
        self._loop.call_at((now + self.itl_ns) / 1e9, self._token, now, 1, tokens)

    def _token(self, start: int, i: int, tokens: int) -> None:
        if not self._open:
            return  # the client went away
        self._write(_chunk(_TOKEN))
        if i < tokens:
            self._loop.call_at((start + (i + 1) * self.itl_ns) / 1e9, self._token, start, i + 1, tokens)
            return
        self._write(_chunk(_FINISH) + _chunk(_usage(tokens)) + _chunk(b"[DONE]") + b"0\r\n\r\n")

    def _write_whole(self, status: str, body: bytes, extra: str) -> None:
        head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self._write(f"{head}{extra}\r\n".encode() + body)


def _accept(listener: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
    try:
        sock, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    _Streams(sock, loop)


class _Self:
    """The server's own loop lag (a probe every PROBE_NS, on absolute deadlines) and CPU share, since
    the last read."""

    PROBE_NS = 5_000_000

    def __init__(self) -> None:
        self._lags: list[int] = []
        self.read_delays: list[int] = []  # kernel receive stamp -> the loop's read, per read
        self.unstamped = 0  # reads the kernel gave no timestamp for (stamped by the read instead)
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
        delays, self.read_delays = sorted(self.read_delays), []
        unstamped, self.unstamped = self.unstamped, 0
        CLOCK.refresh()
        return {
            "wall_s": (now[0] - wall) / 1e9,
            "cpu_share": (now[1] - cpu) / max(now[0] - wall, 1),
            "loop_lag_ms": {"n": len(lags), **{q: _at(lags, f) for q, f in _QUANTILES.items()}},
            "read_delay_ms": {"n": len(delays), **{q: _at(delays, f) for q, f in _QUANTILES.items()}},
            "unstamped_reads": unstamped,
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
    listener = socket.socket()
    # On the listener too: the kernel stamps arriving segments only once some socket asks for it, and
    # an accepted connection's first request may arrive before its own option is set.
    listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    loop.add_reader(listener.fileno(), _accept, listener, loop)
    probe = loop.create_task(SELF.probe())
    print(f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    try:
        loop.run_forever()
    finally:
        probe.cancel()
        listener.close()
        loop.close()


if __name__ == "__main__":
    main()
