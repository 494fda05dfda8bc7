"""Synthetic request logs and power series with known ground truth, for the energy tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.power.series import EnergySeries, PowerData

S = 1_000_000_000
MS = 1_000_000
INT_COLUMNS = (
    "planned_ns", "sent_ns", "first_token_ns", "last_token_ns", "done_ns", "lateness_ns", "prompt_tokens",
    "output_tokens",
)  # fmt: skip


@dataclass
class Req:
    request_id: int
    sent: int | None
    done: int | None
    first: int | None = None
    chunks: list[int] = field(default_factory=list)
    prompt_tokens: int | None = 100
    output_tokens: int | None = None  # default: one per chunk
    arm: str = "a"
    status: str = "ok"
    warmup: bool = False
    stream: bool = True
    planned: int | None = None


def streamed(rid: int, sent: int, done: int, ttft: int, n_chunks: int, **kw) -> Req:
    """A streamed request with evenly spaced chunks from the first token to just before done."""
    first = sent + ttft
    chunks = [int(x) for x in np.linspace(first, done - MS, n_chunks)] if n_chunks else []
    return Req(rid, sent, done, first=first if n_chunks else None, chunks=chunks, **kw)


def frame(reqs: Sequence[Req]) -> pd.DataFrame:
    """A `requests.parquet`-shaped frame (contract column names and nullable dtypes)."""
    rows = []
    for r in reqs:
        rows.append(
            {
                "request_id": r.request_id,
                "arm": r.arm,
                "seq": r.request_id,
                "warmup": r.warmup,
                "stream": r.stream,
                "status": r.status,
                "planned_ns": r.planned if r.planned is not None else r.sent,
                "sent_ns": r.sent,
                "first_token_ns": r.first,
                "last_token_ns": r.chunks[-1] if r.chunks else None,
                "done_ns": r.done,
                "lateness_ns": 0 if r.sent is not None else None,
                "chunk_ns": np.asarray(r.chunks, dtype=np.int64),
                "chunks": len(r.chunks),
                "prompt_tokens": r.prompt_tokens,
                "output_tokens": r.output_tokens if r.output_tokens is not None else len(r.chunks),
            }
        )
    columns = [
        "request_id", "arm", "seq", "warmup", "stream", "status", "planned_ns", "sent_ns", "first_token_ns",
        "last_token_ns", "done_ns", "lateness_ns", "chunk_ns", "chunks", "prompt_tokens", "output_tokens",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=columns)
    for col in INT_COLUMNS:
        df[col] = pd.array([None if pd.isna(v) else int(v) for v in df[col]], dtype="Int64")
    df["arm"] = df["arm"].astype("string")
    df["status"] = df["status"].astype("string")
    df["warmup"] = df["warmup"].astype("boolean")
    df["stream"] = df["stream"].astype("boolean")
    return df


def series_from_energy(
    energy_at: Callable[[np.ndarray], np.ndarray], t0: int, t1: int, dt: int, gpu: str = "0"
) -> EnergySeries:
    t = np.arange(t0, t1 + 1, dt, dtype=np.int64)
    return EnergySeries(gpu, t, energy_at(t), source="synthetic")


def additive_power(
    reqs: Sequence[Req], idle_w: float, per_request_w: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Cumulative energy of a GPU drawing `idle_w` plus `per_request_w` for each request in flight."""
    s = np.array([r.sent for r in reqs if r.sent is not None], dtype=np.int64)
    e = np.array([r.done for r in reqs if r.sent is not None], dtype=np.int64)

    def energy(t: np.ndarray) -> np.ndarray:
        busy = np.clip(t[:, None] - s[None, :], 0, (e - s)[None, :]).sum(axis=1) / S
        return idle_w * t / S + per_request_w * busy

    return energy


def token_power(reqs: Sequence[Req], idle_w: float, j_per_token: float) -> Callable[[np.ndarray], np.ndarray]:
    """Cumulative energy of a GPU spending `j_per_token` per token: prompt tokens evenly before the first
    token, each output token at its chunk's arrival (the model the `tokens` method assumes)."""

    def energy(t: np.ndarray) -> np.ndarray:
        out = idle_w * t / S
        for r in reqs:
            if r.sent is None or r.done is None:
                continue
            end = r.first if r.first is not None else r.done
            frac = np.clip((t - r.sent) / max(end - r.sent, 1), 0, 1)
            out = out + j_per_token * (r.prompt_tokens or 0) * frac
            if r.chunks:
                per_chunk = (r.output_tokens if r.output_tokens is not None else len(r.chunks)) / len(
                    r.chunks
                )
                out = out + j_per_token * per_chunk * np.searchsorted(np.asarray(r.chunks), t, side="right")
        return out

    return energy


def power(*series: EnergySeries, clock: dict | None = None) -> PowerData:
    return PowerData(series=list(series), source="synthetic", clock=clock or {})
