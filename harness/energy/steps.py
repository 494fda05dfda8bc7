"""Engine steps reconstructed from the request log's chunk arrival times, for the `steps` split and the fit.

A serving engine (vLLM, TGI, the mock) runs one batch step at a time; at the end of a step every request
in it gets its new token(s), and a streaming server sends each of them a chunk at that moment. So the
chunks of one step reach the client together, and chunks of different steps are a step time apart.

The rule, over every streamed chunk of every request, in arrival order:

1. a chunk that arrives more than `tolerance` after the one before it starts a new group;
2. within a group, a request's k-th chunk belongs to the group's k-th step: a request takes part in a
   step at most once, so when a busy client receives the chunks of consecutive steps interleaved (the
   gaps between them never reach the tolerance and rule 1 chains them), the group is cut by rank.

`tolerance` is `TOLERANCE_FRACTION` of the median gap between consecutive chunks of one request (an
engine step, as the client sees it), at most `TOLERANCE_MAX_NS`: half a step, above the scatter of
one step's chunks on the client (tens of microseconds, on a loaded host up to a millisecond or so,
which a quarter of a 2.4 ms step split off on bursts of the mock), below the step between groups.

The first chunk of a request carries its first token, made by the step that ran (the end of) its
prefill: that chunk is where its prompt tokens are charged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.energy.lifetimes import PointMasses

TOLERANCE_FRACTION = 0.5
TOLERANCE_MAX_NS = 5_000_000  # 5 ms
TOLERANCE_MIN_NS = 1_000  # 1 µs: a gap no client resolves
# The `steps` split shares energy by work over *pools* of sample intervals, not interval by interval:
# chunks reach the client later than the GPU spent the energy (the server's and the client's event
# loops, the network: milliseconds, tens of them on a loaded host), and a power source may know the
# energy only every counter period (the simulated sidecar reads the counter every 0.5 s and shapes the
# samples between), so the energy of a 50 ms interval and the chunks in it do not match. A pool is a
# run of busy intervals (some request in flight) within one arm, at most POOL_S long; the idle
# intervals within ABSORB_S of it join it, since dynamic energy measured while nothing was in flight
# is the work of the requests next to it, smeared by the power source (their idle power stays
# unattributed). Within a pool the run's fitted weights carry the split.
POOL_S = 5.0
ABSORB_S = 0.5
FIT_POOL_S = 1.0  # the fit's rows: the same shift would bias its weights towards zero


@dataclass
class Steps:
    """The reconstructed steps, and each chunk's step (chunks in `PointMasses` order)."""

    step: np.ndarray  # per chunk (int32 where it fits): its step, numbered in time order
    size: np.ndarray  # int64 per step: how many requests took part
    time: np.ndarray  # int64 ns per step: its first chunk's arrival
    first: np.ndarray  # bool per chunk: the first chunk of its request
    tolerance_ns: int

    @property
    def count(self) -> int:
        return len(self.size)


def tolerance(masses: PointMasses) -> int:
    """The grouping tolerance: half the median within-request chunk gap, within the bounds."""
    flat, offsets = masses.flat, masses.offsets
    if len(flat) < 2:
        return TOLERANCE_MAX_NS
    gaps = np.diff(flat)
    # Gaps across a request boundary are not step times.
    same = np.ones(len(gaps), dtype=bool)
    inner = offsets[1:-1]
    same[inner[(inner > 0) & (inner < len(flat))] - 1] = False
    gaps = gaps[same & (gaps > 0)]
    if len(gaps) == 0:
        return TOLERANCE_MAX_NS
    tol = int(TOLERANCE_FRACTION * float(np.median(gaps)))
    return min(max(tol, TOLERANCE_MIN_NS), TOLERANCE_MAX_NS)


def reconstruct(masses: PointMasses, tolerance_ns: int | None = None) -> Steps:
    """Group the chunks of all requests into engine steps (the rule in the module docstring).

    One sort of every chunk time; the per-chunk arrays are 32-bit where they fit and freed as soon as
    used, so the peak stays near two copies of the chunk times (a run of 10^8 chunks)."""
    flat, offsets = masses.flat, masses.offsets
    n = len(flat)
    tol = tolerance(masses) if tolerance_ns is None else int(tolerance_ns)
    lengths = np.diff(offsets)
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1][lengths > 0]] = True
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Steps(empty, empty, empty, first, tol)
    ix = np.int32 if n < 2**31 - 1 else np.int64
    order: np.ndarray = np.argsort(flat, kind="stable").astype(ix)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.greater(np.diff(flat[order]), tol, out=new[1:])
    group: np.ndarray = np.empty(n, dtype=ix)
    group[order] = np.cumsum(new, dtype=ix) - 1
    del order, new
    # Rank of each chunk among its request's chunks in the same group: chunks of a request are in time
    # order and a group is a time range, so they are consecutive in the request's list.
    run_start = first.copy()
    run_start[1:] |= group[1:] != group[:-1]
    rank: np.ndarray = np.arange(n, dtype=ix)
    rank -= np.maximum.accumulate(np.where(run_start, rank, 0))
    del run_start
    depth = np.zeros(int(group.max()) + 1, dtype=np.int64)
    np.maximum.at(depth, group, rank + 1)
    base: np.ndarray = np.concatenate([[0], np.cumsum(depth)[:-1]]).astype(ix)
    step: np.ndarray = base[group]
    step += rank
    del group, rank
    n_steps = int(depth.sum())
    size = np.bincount(step, minlength=n_steps).astype(np.int64)
    time = np.full(n_steps, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(time, step, flat)
    return Steps(step=step, size=size, time=time, first=first, tolerance_ns=tol)


def pooling_windows(
    tau: np.ndarray, busy_s: np.ndarray, cuts: np.ndarray, max_s: float, absorb_s: float = 0.0
) -> np.ndarray:
    """Window number of each sample interval (tau_k, tau_k+1]: runs of busy intervals, cut at `cuts`
    (arm boundaries) and every `max_s` seconds. An interval with no busy time joins the nearest busy
    window of its arm within `absorb_s` (its dynamic energy is that window's work, smeared by the
    power source), else it is a window of its own."""
    n = len(tau) - 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    busy = busy_s > 0
    at_cut = np.isin(tau[:-1], cuts)
    start = ~busy | at_cut
    start[1:] |= ~busy[:-1]
    start[0] = True
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    part = ((tau[:-1] - tau[first]) // max(int(max_s * 1e9), 1)).astype(np.int64)
    new = start.copy()
    new[1:] |= part[1:] != part[:-1]
    window = np.cumsum(new) - 1
    if absorb_s <= 0 or not np.any(busy):
        return window
    # The nearest busy interval before and after each interval, in the same arm (no cut between).
    arm = np.cumsum(at_cut)
    prev = np.maximum.accumulate(np.where(busy, idx, -1))
    nxt = np.minimum.accumulate(np.where(busy, idx, n)[::-1])[::-1]
    far = np.iinfo(np.int64).max
    p, q = np.maximum(prev, 0), np.minimum(nxt, n - 1)
    d_prev = np.where((prev >= 0) & (arm[p] == arm), tau[:-1] - tau[p + 1], far)
    d_next = np.where((nxt < n) & (arm[q] == arm), tau[q] - tau[1:], far)
    limit = int(absorb_s * 1e9)
    take_prev = ~busy & (d_prev <= d_next) & (d_prev <= limit)
    take_next = ~busy & ~take_prev & (d_next <= limit)
    window = window.copy()
    window[take_prev] = window[prev[take_prev]]
    window[take_next] = window[nxt[take_next]]
    return window
