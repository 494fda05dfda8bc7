"""The request log as arrays for the join: lifetimes, phases and the token model.

A request is "in flight" from `sent_ns` to `done_ns`. Its prefill phase runs from sending to the first
token, its decode phase from the first token to done.

For the `tokens` method, work is counted in tokens, placed in time as the log allows:

- prompt tokens are spread evenly over the stretch before the first token (queueing and prefill:
  the log cannot tell them apart);
- output tokens are *point masses* at the arrival of the chunk that carried them: the decode step
  that produced a token ended just before its chunk arrived, while the gap before it may be spent
  waiting. When a stream has fewer chunks than output tokens, each chunk carries
  `output_tokens / chunks` tokens (a chunk is not a token; the server's count is the truth, spread
  over the chunks); when the server reported no count, each chunk counts as one token;
- a response that was not streamed has no token times: its prompt and output tokens are spread
  evenly over its whole lifetime;
- a request that never got a first token carries its prompt tokens over its whole lifetime.

Token counts the server did not report weigh zero (the caller flags them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from foundation.errors import InputError

REQUIRED_COLUMNS = ("request_id", "arm", "status", "sent_ns", "done_ns")
BLOCK = 1 << 23  # chunks handled at once (bounds the join's working memory on long streams)


@dataclass
class Lifetimes:
    """Requests that were in flight (sent, with a done time after the send), as aligned arrays."""

    row: np.ndarray  # int64: position of the request in the input frame
    start: np.ndarray  # int64 ns: sent
    end: np.ndarray  # int64 ns: done
    first: np.ndarray  # int64 ns: first token, clipped into [start, end]; == end when there is none
    has_first: np.ndarray  # bool
    bad_rows: int  # sent but with no usable done time (dropped from the split)


@dataclass
class Tokens:
    """The token model of the in-flight requests (aligned with `Lifetimes`)."""

    stretch_end: np.ndarray  # int64 ns: the even stretch runs from start to here (first token or done)
    stretch_tokens: np.ndarray  # float64 tokens spread evenly over the stretch
    prefill: np.ndarray  # bool: the stretch holds only prompt tokens (streamed response)
    masses: PointMasses  # output tokens at chunk arrivals
    missing: int  # requests whose token counts the server did not report
    unsorted: int  # requests whose chunk times were out of order
    prompt: np.ndarray  # float64 prompt tokens as reported (0 when unknown)
    output: np.ndarray  # float64 output tokens as reported (0 when unknown)
    streamed: np.ndarray  # bool: the response came as a stream of chunks


@dataclass
class PointMasses:
    """Output tokens at chunk arrival times, walked in blocks of whole requests to bound memory."""

    flat: np.ndarray  # int64 chunk times inside their request's lifetime, grouped in `Lifetimes` order
    offsets: np.ndarray  # int64, len(requests) + 1
    per_chunk: np.ndarray  # float64 tokens per chunk of each request (0: its chunks carry none)
    block: int = BLOCK
    # float64 per chunk, when chunks weigh differently within a request (the `steps` split); then
    # `per_chunk` is 1 and a chunk's mass is this.
    mass: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def ranges(self) -> Iterator[tuple[int, int, int, int]]:
        """Yield (first request, end request, first chunk, end chunk) per block of whole requests."""
        n = len(self.offsets) - 1
        cuts = np.searchsorted(self.offsets, np.arange(0, len(self) + self.block, self.block))
        cuts = np.unique(np.clip(np.concatenate([[0], cuts, [n]]), 0, n))
        for r0, r1 in itertools.pairwise(cuts):
            o0, o1 = int(self.offsets[r0]), int(self.offsets[r1])
            if o1 > o0:
                yield int(r0), int(r1), o0, o1


def int_column(df: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values with 0 where null, bool valid mask) for a nullable integer column."""
    if name not in df.columns:
        return np.zeros(len(df), dtype=np.int64), np.zeros(len(df), dtype=bool)
    col = df[name]
    valid = col.notna().to_numpy(dtype=bool)
    try:
        values = col.fillna(0).to_numpy(dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"requests: column {name!r} is not an integer column ({exc})") from None
    return values, valid


def check_columns(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"requests: missing column(s) {', '.join(missing)}")


def lifetimes(df: pd.DataFrame) -> Lifetimes:
    check_columns(df)
    sent, has_sent = int_column(df, "sent_ns")
    done, has_done = int_column(df, "done_ns")
    first, has_first = int_column(df, "first_token_ns")
    ok = has_sent & has_done & (done >= sent)
    bad = int(np.count_nonzero(has_sent & ~ok))
    rows = np.flatnonzero(ok)
    start, end = sent[rows], done[rows]
    hf = has_first[rows] & (first[rows] >= start) & (first[rows] <= end)
    ft = np.where(hf, first[rows], end)
    return Lifetimes(row=rows, start=start, end=end, first=ft, has_first=hf, bad_rows=bad)


def chunk_arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(flat int64 chunk times, int64 offsets of length len(df)+1) from the `chunk_ns` list column.

    Accepts an Arrow-backed list column (zero-copy) or an object column of sequences.
    """
    n = len(df)
    if "chunk_ns" not in df.columns:
        return np.zeros(0, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)
    col = df["chunk_ns"]
    if isinstance(col.dtype, pd.ArrowDtype):
        arr = pa.array(col.array)  # a (Large)ListArray, zero-copy
        lengths = np.asarray(pc.list_value_length(arr).fill_null(0), dtype=np.int64)
        flat = np.asarray(arr.flatten(), dtype=np.int64)  # honours slicing and skips null lists
        return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = col.to_numpy(dtype=object)
    lengths = np.fromiter((0 if _is_null(v) else len(v) for v in items), dtype=np.int64, count=n)
    parts = [np.asarray(v, dtype=np.int64) for v in items if not _is_null(v) and len(v)]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def tokens(df: pd.DataFrame, life: Lifetimes) -> Tokens:
    prompt, has_prompt = int_column(df, "prompt_tokens")
    output, has_output = int_column(df, "output_tokens")
    flat, offsets = chunk_arrays(df)
    rows = life.row
    p_tok = np.where(has_prompt[rows], prompt[rows], 0).astype(np.float64)
    o_known = has_output[rows]
    o_tok = np.where(o_known, output[rows], 0).astype(np.float64)
    lengths = (offsets[rows + 1] - offsets[rows]).astype(np.int64)
    # When every row is in flight (the usual case) the chunk times are used without a copy.
    c_flat = flat if len(rows) == len(df) else flat[concat_ranges(offsets[rows], lengths)]
    c_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    c_flat = _clip_to_lifetimes(c_flat, c_off, life)
    unsorted = _unsorted_requests(c_flat, c_off)
    if unsorted:
        req = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        c_flat = c_flat[np.lexsort((c_flat, req))]

    streamed = lengths > 0
    if "stream" in df.columns:
        streamed &= df["stream"].fillna(True).to_numpy(dtype=bool)[rows]
    chunks = lengths.astype(np.float64)
    # One token per chunk when the server gave no count: better than dropping the stream's shape.
    per_chunk = np.where(o_known, np.divide(o_tok, chunks, out=np.zeros_like(chunks), where=chunks > 0), 1.0)
    per_chunk = np.where(streamed, per_chunk, 0.0)
    # Streamed: prompt tokens before the first token. Otherwise: everything over the whole lifetime.
    stretch_end = np.where(streamed & life.has_first, life.first, life.end)
    stretch_tokens = p_tok + np.where(streamed, 0.0, o_tok)
    return Tokens(
        stretch_end=stretch_end,
        stretch_tokens=stretch_tokens,
        prefill=streamed & life.has_first,
        masses=PointMasses(c_flat, c_off, per_chunk),
        missing=int(np.count_nonzero(~(has_prompt[rows] & o_known))),
        unsorted=unsorted,
        prompt=p_tok,
        output=o_tok,
        streamed=streamed,
    )


def _clip_to_lifetimes(flat: np.ndarray, offsets: np.ndarray, life: Lifetimes) -> np.ndarray:
    """Chunk times clipped into their request's [sent, done]; copied only if one lies outside."""
    out = flat
    for r0, r1, o0, o1 in PointMasses(flat, offsets, np.zeros(0)).ranges():
        lengths = np.diff(offsets[r0 : r1 + 1])
        lo, hi = np.repeat(life.start[r0:r1], lengths), np.repeat(life.end[r0:r1], lengths)
        part = flat[o0:o1]
        if np.any(part < lo) or np.any(part > hi):
            if out is flat:
                out = flat.copy()
            out[o0:o1] = np.clip(part, lo, hi)
    return out


def _unsorted_requests(flat: np.ndarray, offsets: np.ndarray) -> int:
    """How many requests have chunk times that go backwards."""
    if len(flat) < 2:
        return 0
    # Positions whose time is before the previous one (blockwise: no full-length temporaries).
    parts = []
    for i in range(0, len(flat) - 1, BLOCK):
        j = min(i + BLOCK, len(flat) - 1)
        parts.append(np.flatnonzero(flat[i + 1 : j + 1] < flat[i:j]) + i + 1)
    back = np.concatenate(parts)
    if len(back) == 0:
        return 0
    req = np.searchsorted(offsets, back, side="right") - 1
    within = back > offsets[req]  # not the first chunk of its request
    return len(np.unique(req[within]))


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    base = np.repeat(starts - (ends - lengths), lengths)
    return base + np.arange(total, dtype=np.int64)


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
