"""The request log as arrays sliced per arm, and its latency, lateness and rate figures (no energy here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd

from harness.energy.lifetimes import chunk_arrays, int_column
from harness.energy.stats import Percentiles, percentiles


class Latency(TypedDict):
    """Seconds, of successful requests."""

    ttft: Percentiles
    itl: Percentiles  # between content chunks
    tpot: Percentiles  # (last - first token) / (output tokens - 1)
    e2e: Percentiles


class Lateness(Percentiles):
    max: float | None


class Rates(TypedDict):
    target: float | None  # the plan's target mean rate
    planned: float | None
    realized: float | None
    realized_over_planned: float | None


@dataclass
class RequestTimes:
    """The request log's times as arrays, computed once and sliced per arm."""

    sent: np.ndarray
    has_sent: np.ndarray
    first: np.ndarray
    has_first: np.ndarray
    last: np.ndarray
    has_last: np.ndarray
    done: np.ndarray
    has_done: np.ndarray
    planned: np.ndarray
    has_planned: np.ndarray
    lateness: np.ndarray
    has_lateness: np.ndarray
    output: np.ndarray
    has_output: np.ndarray
    prompt: np.ndarray
    has_prompt: np.ndarray
    itl_count: np.ndarray  # int64 per row: its inter-chunk gaps (chunks - 1)
    itl_s: np.ndarray  # float32 seconds: every row's inter-chunk gaps, row after row

    @classmethod
    def of(cls, df: pd.DataFrame) -> RequestTimes:
        cols = {}
        for name, col in (
            ("sent", "sent_ns"),
            ("first", "first_token_ns"),
            ("last", "last_token_ns"),
            ("done", "done_ns"),
            ("planned", "planned_ns"),
            ("lateness", "lateness_ns"),
            ("output", "output_tokens"),
            ("prompt", "prompt_tokens"),
        ):
            cols[name], cols[f"has_{name}"] = int_column(df, col)
        flat, offsets = chunk_arrays(df)
        return cls(**cols, itl_count=np.maximum(np.diff(offsets) - 1, 0), itl_s=_gaps(flat, offsets))


@dataclass
class Codes:
    """A string column as integer codes (pd.factorize): comparing a million Python strings per arm
    would cost more than the join."""

    codes: np.ndarray
    names: list[str]

    @classmethod
    def of(cls, column: pd.Series) -> Codes:
        codes, names = pd.factorize(column.astype(str))
        return cls(codes, list(names))

    def eq(self, name: str) -> np.ndarray:
        if name not in self.names:
            return np.zeros(len(self.codes), dtype=bool)
        rows: np.ndarray = self.codes == self.names.index(name)  # numpy types `==` as Any
        return rows

    def counts(self, rows: np.ndarray) -> dict[str, int]:
        n = np.bincount(self.codes[rows], minlength=len(self.names))
        return {name: int(c) for name, c in sorted(zip(self.names, n, strict=True)) if c}


def latency(times: RequestTimes, ok: np.ndarray) -> Latency:
    """TTFT, inter-chunk latency, time per output token and end-to-end latency (s) of `ok` rows."""
    t = times
    ttft = (t.first - t.sent)[ok & t.has_first & t.has_sent] / 1e9
    e2e = (t.done - t.sent)[ok & t.has_done & t.has_sent] / 1e9
    tpot_rows = ok & t.has_first & t.has_last & t.has_output & (t.output > 1)
    tpot = (t.last - t.first)[tpot_rows] / 1e9 / (t.output[tpot_rows] - 1)
    itl = t.itl_s[np.repeat(ok, t.itl_count)]  # a fresh copy: percentiles may reorder it
    return {
        "ttft": percentiles(ttft, owned=True),
        "itl": percentiles(itl, owned=True),
        "tpot": percentiles(tpot, owned=True),
        "e2e": percentiles(e2e, owned=True),
    }


def lateness_ms(times: RequestTimes, rows: np.ndarray) -> Lateness:
    late = times.lateness[rows & times.has_lateness] / 1e6
    return {**percentiles(late), "max": float(late.max()) if len(late) else None}


def rates(times: RequestTimes, rows: np.ndarray, target: float | None) -> Rates:
    """Planned and realized request rates (from the first to the last send of the rows)."""
    planned = _rate(times.planned[rows & times.has_planned])
    realized = _rate(times.sent[rows & times.has_sent])
    ratio = realized / planned if planned and realized is not None else None
    return {"target": target, "planned": planned, "realized": realized, "realized_over_planned": ratio}


def _gaps(flat: np.ndarray, offsets: np.ndarray, block: int = 1 << 23) -> np.ndarray:
    """Gaps between consecutive chunks of the same row (float32 s; blockwise to bound memory)."""
    if len(flat) < 2:
        return np.zeros(0, dtype=np.float32)
    gaps = np.empty(len(flat) - 1, dtype=np.float32)
    for i in range(0, len(gaps), block):
        j = min(i + block, len(gaps))
        gaps[i:j] = (flat[i + 1 : j + 1] - flat[i:j]) / 1e9
    # A gap ending at a row's first chunk spans two rows.
    across = offsets[1:-1] - 1
    keep = np.ones(len(gaps), dtype=bool)
    keep[across[(across >= 0) & (across < len(gaps))]] = False
    return gaps[keep]


def _rate(t_ns: np.ndarray) -> float | None:
    if len(t_ns) < 2:
        return None
    span = (int(t_ns.max()) - int(t_ns.min())) / 1e9
    return (len(t_ns) - 1) / span if span > 0 else None
