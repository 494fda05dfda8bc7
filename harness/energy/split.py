"""The split: each sample interval's energy divided among the requests in flight, as an event sweep.

Per GPU and interval k (energy ΔE_k over Δt_k; power is taken as constant within an interval):

- idle part `min(P_idle, ΔE_k/Δt_k)·Δt_k`: when the interval's power dips below the idle estimate the
  whole interval counts as idle, so no part is ever negative and conservation stays exact (the energy
  this clamps off the idle estimate is reported as `idle_clamped_j`);
- dynamic part: the rest.

The idle power of instants with no request in flight goes to `unattributed`; everything else of the
interval — its dynamic part and the idle power of its busy instants — goes to the requests in flight
in it (dynamic power needs work, so it belongs to the interval's requests even when they were in
flight for only part of it):

- `time`: spread evenly over the interval's busy time and, at each instant, in equal shares among the
  requests in flight then. A request in flight for part of an interval gets a share in proportion to
  its overlap.
- `tokens`: in proportion to the tokens each request processed in the interval (see `lifetimes.py`
  for where tokens sit in time), prompt and output tokens weighed by the run's work fit when it is
  usable (`token_fit.py`, `work_weights.py`); an interval with requests in flight but no token
  processed falls back to `time`.
- `steps`: in proportion to each request's work in the engine steps reconstructed from the chunk
  times (`steps.py`, `work_weights.py`: its share of each step it was in, its decoded and prompt
  tokens), over pools of intervals rather than each interval (`steps.POOL_S`: chunks arrive later than
  the energy was spent); a pool with requests in flight but no work falls back to `time`.

An interval with no request in flight at any instant (and no token) gives everything to
`unattributed`.

Everything is piecewise constant between *events* (interval boundaries, sends, first tokens, ends),
so the sweep sorts the events once, counts the requests in flight per segment by cumulative sums,
and accumulates each request's energy as differences of cumulative sums: O(events · log) time, no
request × interval matrix. Chunk tokens are point masses placed into intervals by binary search, in
blocks of requests. Token-rate weights of the prompt stretches are integers (rates scaled into int64),
so the weight in flight per segment is an exact sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from harness.energy import token_fit
from harness.energy.grid import Intervals, sorted_unique
from harness.energy.lifetimes import Lifetimes, PointMasses, Tokens, concat_ranges
from harness.energy.steps import ABSORB_S, FIT_POOL_S, POOL_S, pooling_windows, reconstruct
from harness.energy.token_fit import TokenFit
from harness.energy.work_weights import Weighted, weigh

Method = Literal["time", "tokens", "steps"]  # how energy is split among the requests in flight
METHODS: tuple[Method, ...] = get_args(Method)
WORK_METHODS = ("tokens", "steps")  # the methods that weigh work (tokens, steps) and fit it
_WEIGHT_SCALE_BITS = 61  # stretch weights sum to at most 2**61, safely inside int64


@dataclass
class RequestEnergy:
    dynamic: np.ndarray  # J per lifetime
    idle: np.ndarray
    prefill: np.ndarray  # J of the prefill phase (prompt tokens / time before the first token)
    decode: np.ndarray  # J of the decode phase
    coverage: np.ndarray  # share of the lifetime inside gap-free power intervals (mean over GPUs)
    touched: np.ndarray  # bool: the lifetime overlaps at least one power interval


@dataclass
class GpuResult:
    gpu: str
    energy: np.ndarray  # per interval
    unattributed: np.ndarray  # per interval
    clamped_j: float


class Sweep:
    """The geometry of one join (who is in flight when, who processed which tokens where)."""

    def __init__(
        self,
        life: Lifetimes,
        intervals: list[Intervals],
        method: str,
        tokens: Tokens | None = None,
        extra_times: np.ndarray | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        if method in WORK_METHODS and tokens is None:
            raise ValueError(f"the {method} method needs the token model")
        self.life, self.intervals, self.method = life, intervals, method
        parts = [life.start, life.end, life.first, *(iv.tau for iv in intervals)]
        if extra_times is not None:
            parts.append(np.asarray(extra_times, dtype=np.int64))
        if tokens is not None:
            parts.append(tokens.stretch_end)
        self.t = sorted_unique(np.concatenate(parts).astype(np.int64))
        nseg = max(len(self.t) - 1, 0)
        self.seg_s = np.diff(self.t).astype(np.float64) / 1e9
        self.pos_start = np.searchsorted(self.t, life.start)
        self.pos_end = np.searchsorted(self.t, life.end)
        self.pos_first = np.searchsorted(self.t, life.first)
        change = np.bincount(self.pos_start, minlength=nseg + 1)
        change -= np.bincount(self.pos_end, minlength=nseg + 1)
        self.in_flight = np.cumsum(change)[:nseg]  # requests in flight per segment (exact integers)
        busy = self.in_flight > 0

        # Per GPU: the interval holding each segment, and each interval's busy / empty time.
        self.k: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.busy_s: list[np.ndarray] = []
        self.empty_s: list[np.ndarray] = []
        good = np.zeros(nseg)
        any_valid = np.zeros(nseg, dtype=bool)
        for iv in intervals:
            n_int = len(iv.energy)
            k = np.searchsorted(iv.tau, self.t[:-1], side="right") - 1
            valid = (k >= 0) & (k < n_int)
            k = np.where(valid, k, 0)
            self.k.append(k)
            self.valid.append(valid)
            self.busy_s.append(np.bincount(k[valid & busy], self.seg_s[valid & busy], minlength=n_int))
            self.empty_s.append(np.bincount(k[valid & ~busy], self.seg_s[valid & ~busy], minlength=n_int))
            if n_int:
                good += valid & ~iv.gap[k]
            any_valid |= valid
        if intervals:
            good /= len(intervals)
        self.q_good = _cum(good * self.seg_s)
        self.q_valid = _cum(any_valid * self.seg_s)
        self.token_count = [np.zeros(len(iv.energy)) for iv in intervals]  # work per interval
        self.cuts = np.zeros(0, np.int64) if extra_times is None else np.asarray(extra_times, np.int64)
        self.tokens = tokens if method in WORK_METHODS else None
        self.steps = reconstruct(self.tokens.masses) if self.tokens is not None else None
        self.fit: TokenFit | None = None  # the work fit (tokens and steps methods), once attributed
        self.weights: Weighted | None = None
        if self.tokens is not None:
            self._place_chunks(self.tokens.masses)
            # Per GPU, the windows the fit and the `steps` split pool sample intervals into.
            self.fit_pools = [
                pooling_windows(iv.tau, busy_s, self.cuts, FIT_POOL_S)
                for iv, busy_s in zip(intervals, self.busy_s, strict=True)
            ]
            self.pools = [
                pooling_windows(iv.tau, busy_s, self.cuts, POOL_S, ABSORB_S)
                for iv, busy_s in zip(intervals, self.busy_s, strict=True)
            ]

    def _weigh(self, stretch_tokens: np.ndarray, masses: PointMasses) -> None:
        """Work per interval: each stretch's spread over its segments, each chunk's at its interval."""
        life, tok, nseg = self.life, self.tokens, len(self.seg_s)
        assert tok is not None
        seconds = (tok.stretch_end - life.start).astype(np.float64) / 1e9
        rate = np.divide(stretch_tokens, seconds, out=np.zeros_like(seconds), where=seconds > 0)
        total = float(rate.sum())
        self.scale = (2.0**_WEIGHT_SCALE_BITS) / total if total > 0 else 1.0
        self.weight = np.rint(rate * self.scale).astype(np.int64)
        self.pos_stretch_end = np.searchsorted(self.t, tok.stretch_end)
        delta = np.zeros(nseg + 1, dtype=np.int64)
        np.add.at(delta, self.pos_start, self.weight)
        np.add.at(delta, self.pos_stretch_end, -self.weight)
        stretch_weight = np.cumsum(delta)[:nseg]  # exact: integer sum of the weights in flight
        stretch_work = stretch_weight.astype(np.float64) / self.scale * self.seg_s  # per segment
        for g, (k, valid) in enumerate(zip(self.k, self.valid, strict=True)):
            n_int = len(self.token_count[g])
            # (bincount of nothing is an integer array, even with weights)
            self.token_count[g] = np.bincount(k[valid], stretch_work[valid], minlength=n_int).astype(float)
        self.masses = masses  # set, like the weights, only for the tokens and steps methods
        for r0, r1, o0, o1 in masses.ranges():
            q = _chunk_mass(masses, r0, r1, o0, o1)
            for g, iv in enumerate(self.intervals):
                n_int = len(iv.energy)
                self.token_count[g] += np.bincount(self.chunk_k[g][o0:o1], q, minlength=n_int + 1)[:n_int]

    def _stretch_work(self, work: np.ndarray) -> list[np.ndarray]:
        """Per GPU and interval, the part of each request's `work` spread evenly over its stretch."""
        tok = self.tokens
        assert tok is not None
        seconds = (tok.stretch_end - self.life.start).astype(np.float64) / 1e9
        rate = np.divide(work, seconds, out=np.zeros_like(seconds), where=seconds > 0)
        pos_end = np.searchsorted(self.t, tok.stretch_end)
        nseg = len(self.seg_s)
        delta = np.bincount(self.pos_start, rate, minlength=nseg + 1)
        delta -= np.bincount(pos_end, rate, minlength=nseg + 1)
        per_seg = np.cumsum(delta)[:nseg] * self.seg_s
        return [
            np.bincount(k[valid], per_seg[valid], minlength=len(iv.energy)).astype(float)
            for k, valid, iv in zip(self.k, self.valid, self.intervals, strict=True)
        ]

    def _place_chunks(self, masses: PointMasses) -> None:
        """The interval (tau_k, tau_k+1] holding each chunk, per GPU (the interval count stands for
        "none"), found by binary search in blocks of requests."""
        life = self.life
        self.chunk_k = []
        for iv in self.intervals:
            self.chunk_k.append(
                np.empty(len(masses), dtype=np.int32 if len(iv.energy) < 2**31 - 1 else np.int64)
            )
        for r0, r1, o0, o1 in masses.ranges():
            times = masses.flat[o0:o1]
            # Requests in send order keep chunk times local, and a search with local needles is fast;
            # otherwise sort the needles first (a search with scattered needles is many times slower).
            order = None if np.all(np.diff(life.start[r0:r1]) >= 0) else np.argsort(times)
            for g, iv in enumerate(self.intervals):
                n_int = len(iv.energy)
                if order is None:
                    k = np.searchsorted(iv.tau, times, side="left") - 1
                else:
                    k = np.empty(len(times), dtype=np.int64)
                    k[order] = np.searchsorted(iv.tau, times[order], side="left") - 1
                k[(k < 0) | (k >= n_int)] = n_int
                self.chunk_k[g][o0:o1] = k

    def empty_intervals(self) -> dict[str, tuple[float, float]]:
        """Per GPU (joules, seconds) of gap-free intervals with no request in flight at any instant."""
        out = {}
        for iv, busy in zip(self.intervals, self.busy_s, strict=True):
            free = (busy == 0) & ~iv.gap
            out[iv.gpu] = (float(iv.energy[free].sum()), float(iv.dt_s[free].sum()))
        return out

    def attribute(
        self, idle_power: Callable[[str, np.ndarray], np.ndarray]
    ) -> tuple[RequestEnergy, list[GpuResult]]:
        """Split every interval, given `idle_power(gpu, t_ns) -> W` at interval midpoints."""
        nseg = len(self.seg_s)
        fb_dyn = np.zeros(nseg)  # time-share densities per busy second, summed over GPUs
        fb_idle = np.zeros(nseg)
        tok_dyn = np.zeros(nseg)  # J per token of each segment's interval, summed over GPUs
        tok_idle = np.zeros(nseg)
        # J per token per interval, with a trailing 0 for chunks in no interval.
        self._psi_ext: list[tuple[np.ndarray, np.ndarray]] = []
        gpus = []
        parts = [self._idle_dynamic(iv, idle_power) for iv in self.intervals]
        if self.tokens is not None:
            self._fit_and_weigh([d for _, _, d in parts])
        for g, iv in enumerate(self.intervals):
            k, valid, busy, empty = self.k[g], self.valid[g], self.busy_s[g], self.empty_s[g]
            count = self.token_count[g]
            dt = iv.dt_s
            p_idle, idle_w, dynamic = parts[g]
            if self.method == "steps":
                # Each pool's energy is shared by the work in it (see POOL_S): every busy interval of a
                # pool with work is split at the pool's joules per unit of work.
                pool = self.pools[g]
                pool_count = np.bincount(pool, count).astype(float)
                by_tokens = pool_count[pool] > 0  # idle intervals a busy pool absorbed included
                psi_dyn = _per_pool(pool, np.where(by_tokens, dynamic, 0.0), pool_count)
                psi_idle = _per_pool(pool, np.where(by_tokens, idle_w * busy, 0.0), pool_count)
            else:
                by_tokens = count > 0
                psi_dyn = np.divide(dynamic, count, out=np.zeros_like(dt), where=by_tokens)
                psi_idle = np.divide(idle_w * busy, count, out=np.zeros_like(dt), where=by_tokens)
            by_time = ~by_tokens & (busy > 0)
            unattributed = np.where(by_tokens | by_time, idle_w * empty, iv.energy)
            self._psi_ext.append((np.append(psi_dyn, 0.0), np.append(psi_idle, 0.0)))
            gpus.append(GpuResult(iv.gpu, iv.energy, unattributed, float(np.sum((p_idle - idle_w) * dt))))
            if len(dt):
                fb_dyn += np.where(
                    valid, np.divide(dynamic, busy, out=np.zeros_like(dt), where=by_time)[k], 0.0
                )
                fb_idle += np.where(valid, np.where(by_time, idle_w, 0.0)[k], 0.0)
                tok_dyn += np.where(valid, psi_dyn[k], 0.0)
                tok_idle += np.where(valid, psi_idle[k], 0.0)

        life = self.life
        n = self.in_flight
        share = np.divide(self.seg_s, n, out=np.zeros(nseg), where=n > 0)
        f_dyn, f_idle = _cum(fb_dyn * share), _cum(fb_idle * share)
        self._fallback = f_dyn + f_idle
        dyn = f_dyn[self.pos_end] - f_dyn[self.pos_start]
        idle = f_idle[self.pos_end] - f_idle[self.pos_start]
        prefill = self._fallback[self.pos_first] - self._fallback[self.pos_start]
        if self.tokens is not None:
            w = self.weight.astype(np.float64) / self.scale
            h_dyn, h_idle = _cum(tok_dyn * self.seg_s), _cum(tok_idle * self.seg_s)
            self._stretch = h_dyn + h_idle
            s_dyn = w * (h_dyn[self.pos_stretch_end] - h_dyn[self.pos_start])
            s_idle = w * (h_idle[self.pos_stretch_end] - h_idle[self.pos_start])
            c_dyn, c_idle = self._chunk_energy()
            dyn += s_dyn + c_dyn
            idle += s_idle + c_idle
            prefill += s_dyn + s_idle  # stretches carry prompt tokens (all tokens if not streamed)
            prefill += self._first_chunk_prompt_energy()  # `steps`: prompts at their first chunk
        total = dyn + idle
        lifetime_s = (life.end - life.start).astype(np.float64) / 1e9
        good = self.q_good[self.pos_end] - self.q_good[self.pos_start]
        coverage = np.divide(good, lifetime_s, out=np.zeros_like(good), where=lifetime_s > 0)
        # A lifetime with no power interval under it has no energy to report (unless a chunk exactly at
        # its end landed in an interval: then it has some).
        touched = ((self.q_valid[self.pos_end] - self.q_valid[self.pos_start]) > 0) | (total != 0)
        energy = RequestEnergy(
            dynamic=dyn,
            idle=idle,
            prefill=prefill,
            decode=total - prefill,
            coverage=np.clip(coverage, 0.0, 1.0),
            touched=touched,
        )
        return energy, gpus

    def _idle_dynamic(
        self, iv: Intervals, idle_power: Callable[[str, np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per interval: the idle estimate (W), the idle power it gets (W) and its dynamic energy (J)."""
        dt = iv.dt_s
        mid = iv.tau[:-1] + (iv.tau[1:] - iv.tau[:-1]) // 2
        p_idle = np.maximum(idle_power(iv.gpu, mid), 0.0)
        power = np.divide(iv.energy, dt, out=np.zeros_like(dt), where=dt > 0)
        idle_w = np.minimum(p_idle, power)
        return p_idle, idle_w, np.maximum(iv.energy - idle_w * dt, 0.0)

    def _fit_and_weigh(self, dynamic: list[np.ndarray]) -> None:
        """Fit the run's dynamic energy on its work, then weigh the work for the split (`work_weights`)."""
        tok = self.tokens
        assert tok is not None
        steps = self.steps
        assert steps is not None
        at_first = tok.prefill & (self.method == "steps")
        prompt_spread = self._stretch_work(np.where(at_first, 0.0, tok.prompt))
        decoded_spread = self._stretch_work(np.where(tok.streamed, 0.0, tok.output))
        rows, ys = [], []
        for g, iv in enumerate(self.intervals):
            design = token_fit.interval_design(iv.tau, self.chunk_k[g], steps, tok, at_first)
            design[:, 1] += decoded_spread[g]
            design[:, 2] += prompt_spread[g]
            pool = self.fit_pools[g]
            rows.append(np.column_stack([np.bincount(pool, design[:, j]) for j in range(3)]))
            ys.append(np.bincount(pool, dynamic[g]))
        self.fit = token_fit.fit(
            np.concatenate(rows) if rows else np.zeros((0, 3)), np.concatenate(ys) if ys else np.zeros(0)
        )
        self.weights = weigh(self.method, tok, steps, self.fit)
        self._weigh(self.weights.stretch_tokens, self.weights.masses)

    def _first_chunk_prompt_energy(self) -> np.ndarray:
        """Per request, J of the prompt tokens its first chunk carries (0 unless the `steps` split)."""
        out = np.zeros(len(self.life.start))
        assert self.weights is not None
        prompt = self.weights.prompt_mass
        offsets = self.masses.offsets
        has = (np.diff(offsets) > 0) & (prompt > 0)
        if not np.any(has):
            return out
        first = offsets[:-1][has]
        for (psi_dyn, psi_idle), k_all in zip(self._psi_ext, self.chunk_k, strict=True):
            out[has] += (psi_dyn + psi_idle)[k_all[first]] * prompt[has]
        return out

    def _chunk_energy(self) -> tuple[np.ndarray, np.ndarray]:
        """Per request (dynamic, idle) J of its chunk tokens."""
        masses = self.masses
        count = len(self.life.start)
        dyn, idle = np.zeros(count), np.zeros(count)
        has = np.diff(masses.offsets) > 0
        for (psi_dyn, psi_idle), k_all in zip(self._psi_ext, self.chunk_k, strict=True):
            for r0, r1, o0, o1 in masses.ranges():
                # Chunks are contiguous per request: sum them with reduceat, no scatter.
                idx = np.flatnonzero(has[r0:r1]) + r0
                starts = masses.offsets[idx] - o0
                k = k_all[o0:o1]
                if masses.mass is None:
                    dyn[idx] += np.add.reduceat(psi_dyn[k], starts)
                    idle[idx] += np.add.reduceat(psi_idle[k], starts)
                else:
                    q = masses.mass[o0:o1]
                    dyn[idx] += np.add.reduceat(psi_dyn[k] * q, starts)
                    idle[idx] += np.add.reduceat(psi_idle[k] * q, starts)
        dyn *= masses.per_chunk
        idle *= masses.per_chunk
        self._chunk_total = dyn + idle
        return dyn, idle

    def energy_within(
        self, windows: list[tuple[int, int]], owners: list[np.ndarray]
    ) -> list[tuple[float, float]]:
        """For each window [start, end]: (J attributed to all lifetimes, J to the `owners` lifetimes) in it.

        Call after `attribute`; window bounds must be among the sweep's times (pass them in
        `extra_times`).
        """
        out = []
        life = self.life
        for (start, end), own in zip(windows, owners, strict=True):
            lo, hi = np.searchsorted(self.t, [start, end])
            a = np.clip(self.pos_start, lo, hi)
            per = self._fallback[np.clip(self.pos_end, lo, hi)] - self._fallback[a]
            if self.tokens is not None:
                b = np.clip(self.pos_stretch_end, lo, hi)
                per = per + self.weight.astype(np.float64) / self.scale * (
                    self._stretch[b] - self._stretch[a]
                )
                # Chunks lie inside their lifetime: a lifetime inside (start, end] brings all of them;
                # only lifetimes across a window edge need their chunks looked at one by one.
                inside = (life.start > start) & (life.end <= end)
                per = per + np.where(inside, self._chunk_total, 0.0)
                per = per + self._edge_chunks(~inside & (life.end > start) & (life.start <= end), start, end)
            out.append((float(per.sum()), float(per[own].sum())))
        return out

    def _edge_chunks(self, which: np.ndarray, start: int, end: int) -> np.ndarray:
        """Per request, J of the chunks of the `which` requests that arrived in (start, end]."""
        masses = self.masses
        out = np.zeros(len(self.life.start))
        lengths = np.diff(masses.offsets)
        req = np.flatnonzero(which & (lengths > 0))
        if len(req) == 0:
            return out
        idx = concat_ranges(masses.offsets[req], lengths[req])
        owner = np.repeat(req, lengths[req])
        e = np.zeros(len(idx))
        for (psi_dyn, psi_idle), k_all in zip(self._psi_ext, self.chunk_k, strict=True):
            e += (psi_dyn + psi_idle)[k_all[idx]]
        times = masses.flat[idx]
        keep = (times > start) & (times <= end)
        q = masses.per_chunk[owner[keep]] if masses.mass is None else masses.mass[idx[keep]]
        return np.bincount(owner[keep], e[keep] * q, minlength=len(out))


def _per_pool(pool: np.ndarray, joules: np.ndarray, pool_count: np.ndarray) -> np.ndarray:
    """Per interval, its pool's joules per unit of work."""
    total = np.bincount(pool, joules, minlength=len(pool_count)).astype(float)  # (none: integers)
    per_work = np.divide(total, pool_count, out=np.zeros_like(total), where=pool_count > 0)
    out: np.ndarray = per_work[pool]
    return out


def _chunk_mass(masses: PointMasses, r0: int, r1: int, o0: int, o1: int) -> np.ndarray:
    """The work of chunks o0..o1 (requests r0..r1)."""
    if masses.mass is not None:
        return masses.mass[o0:o1]
    return np.repeat(masses.per_chunk[r0:r1], np.diff(masses.offsets[r0 : r1 + 1]))


def _cum(x: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading zero: value i is the sum over the segments before event i."""
    out = np.empty(len(x) + 1)
    out[0] = 0.0
    np.cumsum(x, out=out[1:])
    return out
