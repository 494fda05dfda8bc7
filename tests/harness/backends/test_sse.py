"""The SSE parser follows the WHATWG rules whatever the network does to the byte stream."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backends.sse import SSEEvent, SSEParser

STREAM = (
    b"\xef\xbb\xbf: comment\r\n\r\n"
    b"data: first\r\n\r\n"
    b"event: update\rdata:  two spaces\rdata: second line\r\r"
    b"id: 7\ndata: caf\xc3\xa9 \xe2\x80\xa8 sep\n\n"
    b"data\n\n"
    b'retry: 10\ndata: {"a": 1}\n\n'
    b"data: unterminated"
)
EXPECTED = [
    SSEEvent("first"),
    SSEEvent(" two spaces\nsecond line", "update"),
    SSEEvent("café \u2028 sep", "message", "7"),
    SSEEvent("", "message", "7"),
    SSEEvent('{"a": 1}', "message", "7"),
]


def feed_all(pieces: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events = [e for piece in pieces for e in parser.feed(piece)]
    return events, parser


def test_whole_stream() -> None:
    events, parser = feed_all([STREAM])
    assert events == EXPECTED
    assert parser.pending  # the last event never got its blank line: not dispatched


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    events, _ = feed_all([STREAM[a:b] for a, b in itertools.pairwise(bounds)])
    assert events == EXPECTED


def test_cr_at_a_read_boundary_is_one_line_end() -> None:
    events, _ = feed_all([b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r"])
    assert [e.data for e in events] == ["a", "b"]


def test_only_cr_and_lf_end_lines() -> None:
    text = "x\u2028y\u2029z\x85\x0b\x0c\x1c\x1d\x1e"
    events, _ = feed_all([f"data: {text}\n\n".encode()])
    assert events == [SSEEvent(text)]
