"""The summary: the per-arm and per-run blocks of summary.json, from what the join attributed.

docs/energy.md ("Figures") defines every figure; `summary_types` gives the document its shape. Blocks
raise the flags about their own figures (failed requests, low coverage, short windows, arm overlap).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from harness.energy.analysis_options import AnalysisOptions
from harness.energy.client_faults import flag_client_faults
from harness.energy.client_load import flag_capped
from harness.energy.figures import (
    LATENESS_AT,
    Codes,
    Lateness,
    LatenessBound,
    RequestTimes,
    arm_lateness_bound,
    client_load,
    goodput,
    hold_ms,
    latency,
    lateness_ms,
    rates,
)
from harness.energy.flags import FlagList
from harness.energy.gpu_breakdown import flag_idle_gpus, gpu_energy
from harness.energy.grid import Intervals
from harness.energy.idle_estimate import IdleEstimate, floor_j
from harness.energy.power_lag import PowerLagRecord
from harness.energy.split import GpuResult
from harness.energy.stats import Described, describe, scaled
from harness.energy.summary_types import (
    AllIn,
    AllInSplit,
    ArmPolicy,
    Block,
    Coverage,
    EnergyAccount,
    GpuEnergy,
    GpuPower,
    Parts,
    PowerCoverage,
    PowerSummary,
    RequestCounts,
    Summary,
    TokenFitSummary,
    WindowSpan,
)
from harness.energy.windows import Window
from harness.power.series import PowerData
from harness.records import WARMUP_NOT_FAILED

SUMMARY_SCHEMA_VERSION = 1
J_PER_WH = 3600.0
_NO_ENERGY: EnergyAccount = {
    "energy_j_total": None,
    "energy_j_attributed": None,
    "energy_j_unattributed": None,
    "energy_j_other_arms": None,
    "energy_j_outside_window": None,
    "energy_j_failed": None,
}


@dataclass(frozen=True)
class Account:
    """The run's energy account (J): what the GPUs measured and where it went."""

    total: float
    attributed: float
    unattributed: float
    clamped: float  # idle energy lost where power fell below the idle estimate

    @property
    def residual(self) -> float:
        return self.attributed + self.unattributed - self.total


@dataclass
class Joined:
    """What the join produced, as the summary reads it."""

    method: str
    per_request: pd.DataFrame  # one row per request, with the energy columns
    times: RequestTimes
    warmup: np.ndarray
    status: Codes
    power: PowerData
    intervals: list[Intervals]
    gpus: list[GpuResult]  # per GPU, in `intervals` order
    idle: IdleEstimate
    account: Account
    has_power: bool  # some interval has energy: without, every energy figure is None
    power_lag: PowerLagRecord | None = None  # the shift the join applied to the power series
    token_fit: TokenFitSummary | None = None  # the work fit of the tokens and steps splits


@dataclass(frozen=True)
class Scope:
    """What one block covers: an arm, or the run."""

    name: str
    window: Window | None
    rows: np.ndarray  # bool per request: the scope's requests, warm-up excluded
    target_rate: float | None
    within: tuple[float, float]  # (J to all requests, J to the scope's own) inside the window
    derived: bool = False
    is_run: bool = False
    closed_loop: bool = False  # no planned send times to be late against: exempt from the lateness bound
    policy: ArmPolicy | None = None  # a shaped arm's (its users arrive on the plan, the policy sends)


def summarize(
    joined: Joined, arms: list[Scope], run: Scope, opts: AnalysisOptions, flags: FlagList
) -> Summary:
    """The summary document. Adds each block's flags to `flags`, arms first: a block lists the flags
    raised up to it, and the run block all of them."""
    per_gpu = gpu_energy(joined.intervals, joined.gpus)
    flag_idle_gpus(per_gpu, joined.idle, flags)  # before the blocks: the run block lists every code
    blocks = _Blocks(joined, opts, flags)
    arm_blocks = [blocks.block(scope) for scope in arms]
    run_block = blocks.block(run)
    account, known = joined.account, joined.has_power
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "method": joined.method,
        "run": run_block,
        "arms": arm_blocks,
        "conservation": {
            "total_j": _num(account.total) if known else None,
            "attributed_j": _num(account.attributed) if known else None,
            "unattributed_j": _num(account.unattributed) if known else None,
            "residual_j": _num(account.residual) if known else None,
        },
        "idle": {**joined.idle.as_dict(), "clamped_j": account.clamped},
        "power": _power_summary(joined.power, joined.intervals, per_gpu),
        "bootstrap": {"resamples": opts.bootstrap.resamples, "seed": opts.bootstrap.seed},
        "options": {
            "counter_period_s": opts.counter_period_s,
            "window_error_limit": opts.window_error_limit,
            "min_coverage": opts.min_coverage,
            "min_power_coverage": opts.min_power_coverage,
            "max_lateness_ms": opts.max_lateness_ms,
            "slo_ttft_s": opts.slo_ttft_s,
            "slo_e2e_s": opts.slo_e2e_s,
        },
        "power_lag": joined.power_lag,
        "token_fit": joined.token_fit,
        "flags": [f.as_dict() for f in flags],
    }


@dataclass
class _Blocks:
    joined: Joined
    opts: AnalysisOptions
    flags: FlagList

    def block(self, scope: Scope) -> Block:
        t, opts, win = self.joined.times, self.opts, scope.window
        ok = scope.rows & self.joined.status.eq("ok")
        n_ok = int(ok.sum())
        requests = self._requests(scope, n_ok)
        power_coverage = self._power_coverage(scope)
        # A window only partly under power has a partial total; of its requests, those wholly under
        # power keep exact per-request figures, which then describe that part of the arm only.
        measured = ok if power_coverage["complete"] is not False else ok & self._under_power()
        if power_coverage["complete"] is False and not scope.is_run:
            self._incomplete_flag(scope, power_coverage, int(measured.sum()), n_ok)

        energy = self.joined.per_request["energy_j"].to_numpy()
        e_ok = energy[measured]
        e_ok = e_ok[np.isfinite(e_ok)]
        j_stats = describe(e_ok, opts.bootstrap, stream=0 if scope.is_run else _stream(scope.name))

        duration = win.duration_s if win is not None else None
        account, mean_power = self._window_energy(scope)
        out_tok = float(t.output[ok & t.has_output].sum())
        prompt_tok = float(t.prompt[ok & t.has_prompt].sum())
        ok_energy = measured & np.isfinite(energy)
        out_e = float(energy[ok_energy & t.has_output].sum())
        prm_e = float(energy[ok_energy & t.has_prompt].sum())
        out_n = float(t.output[ok_energy & t.has_output].sum())
        prm_n = float(t.prompt[ok_energy & t.has_prompt].sum())
        total = account["energy_j_total"] if power_coverage["complete"] is not False else None
        all_in = _all_in(total, float(energy[ok_energy].sum()), n_ok, j_stats, out_tok)
        coverage = self._coverage(scope, ok, n_ok)
        self._short_window_flag(scope, duration, account["energy_j_total"])
        late = self._lateness(scope)
        client = client_load(t, scope.rows)
        if not scope.is_run:
            flag_capped(client, self.flags, scope.name)
        block: Block = {
            "name": scope.name,
            "policy": scope.policy,
            "window": None if win is None else _window_span(win, scope.derived),
            "requests": requests,
            **account,
            "j_per_request": j_stats,
            "wh_per_request": scaled(j_stats, 1 / J_PER_WH),
            "j_per_request_parts": self._parts(measured),
            "all_in": all_in,
            "all_in_split": _all_in_split(all_in, self._idle_floor(scope), n_ok),
            "j_per_output_token": _div(out_e, out_n),
            "j_per_prompt_token": _div(prm_e, prm_n),
            "tokens": {"output": out_tok, "prompt": prompt_tok},
            "mean_power_w": mean_power,
            "throughput": {
                "requests_per_s": _div(n_ok, duration),
                "output_tokens_per_s": _div(out_tok, duration),
                "prompt_tokens_per_s": _div(prompt_tok, duration),
            },
            "rate": rates(t, scope.rows, scope.target_rate),
            "latency_s": latency(t, ok),
            "lateness_ms": late,
            "hold_ms": hold_ms(t, scope.rows),
            "client": client,
            "goodput": goodput(t, scope.rows, ok, opts.slo_ttft_s, opts.slo_e2e_s, duration),
            "coverage": coverage,
            "power_coverage": power_coverage,
            "flags": sorted({f.code for f in self.flags}) if scope.is_run else self.flags.codes(scope.name),
        }
        # `_clean` keeps every key and only turns NaN into None and numpy scalars into Python ones.
        return cast(Block, _clean(block))

    def _power_coverage(self, scope: Scope) -> PowerCoverage:
        """Per GPU, the share of the window inside its power samples (gaps count: their energy is an
        exact counter delta); a GPU with no interval there covers none of it."""
        joined, win = self.joined, scope.window
        if win is None or not joined.has_power or win.end_ns <= win.start_ns:
            return {"min": None, "by_gpu": {}, "complete": None}
        by_gpu = {}
        for iv in joined.intervals:
            inside = _inside(iv, win)
            covered_ns = int(np.diff(iv.tau)[inside].sum())  # integer ns: a whole window is exactly 1
            by_gpu[iv.gpu] = covered_ns / (int(win.end_ns) - int(win.start_ns))
        share = min(by_gpu.values())
        return {"min": share, "by_gpu": by_gpu, "complete": share >= self.opts.min_power_coverage}

    def _idle_floor(self, scope: Scope) -> float | None:
        """The idle floor's joules in the window, summed over GPUs (idle_estimate.floor_j)."""
        win = scope.window
        if win is None or not self.joined.has_power:
            return None
        idle = self.joined.idle
        return sum(float(floor_j(iv, idle)[_inside(iv, win)].sum()) for iv in self.joined.intervals)

    def _under_power(self) -> np.ndarray:
        """Requests whose whole lifetime lies inside every GPU's power samples."""
        t, series = self.joined.times, self.joined.power.series
        if not series or any(len(s.t_ns) < 2 for s in series):
            return np.zeros(len(t.sent), dtype=bool)
        lo = max(int(s.t_ns[0]) for s in series)
        hi = min(int(s.t_ns[-1]) for s in series)
        under: np.ndarray = t.has_sent & t.has_done & (t.sent >= lo) & (t.done <= hi)
        return under

    def _incomplete_flag(self, scope: Scope, cov: PowerCoverage, n_under: int, n_ok: int) -> None:
        gpu, share = min(cov["by_gpu"].items(), key=lambda kv: kv[1])
        self.flags.add(
            "power_incomplete",
            "error",
            f"power samples cover {share:.1%} of this arm's window (gpu {gpu}; the bound is "
            f"{self.opts.min_power_coverage:.1%}): its energy total is incomplete, so it has no all-in "
            f"figure; per-request figures are of the {n_under} of {n_ok} successful requests wholly "
            "under power",
            scope.name,
        )

    def _lateness(self, scope: Scope) -> Lateness:
        """Lateness percentiles, and for an open-loop arm the bound its p99 is held to (flagged above it)."""
        t = self.joined.times
        bound: LatenessBound | None = None
        if scope.closed_loop:
            return {**lateness_ms(t, scope.rows), "bound_basis": "closed_loop"}
        if not scope.is_run:
            bound = arm_lateness_bound(t.planned[scope.rows & t.has_planned], self.opts.max_lateness_ms)
        late = lateness_ms(t, scope.rows, bound)
        p99 = late["p99"]
        if bound is not None and p99 is not None and p99 > bound.ms:
            self.flags.add(
                "lateness_over_bound",
                "error",
                f"p99 lateness {p99:.1f} ms (max {late['max']:.1f} ms), "
                f"{LATENESS_AT.get(late['at'] or '', 'measured')}, exceeds the bound of {bound.ms:.1f} ms "
                f"({bound.why}): requests left later than planned, so the offered load was not the plan's",
                scope.name,
            )
        return late

    def _requests(self, scope: Scope, n_ok: int) -> RequestCounts:
        rows = scope.rows
        requests: RequestCounts = {
            "total": int(rows.sum()),
            "ok": n_ok,
            "by_status": self.joined.status.counts(rows),
        }
        if scope.is_run:
            requests["warmup"] = int(self.joined.warmup.sum())
            fine = np.logical_or.reduce([self.joined.status.eq(s) for s in WARMUP_NOT_FAILED])
            failed_warmup = self.joined.warmup & ~fine
            if failed_warmup.any():
                self.flags.add(
                    "warmup_failed",
                    "warning",
                    f"{int(failed_warmup.sum())} of {requests['warmup']} warm-up requests did not succeed: "
                    "the server may not have been warm when the measurement started (the rows with "
                    "warmup=true in requests.parquet)",
                )
        if n_ok == 0:
            self.flags.add(
                "no_successful_requests",
                "error",
                f"no successful requests ({requests['total']} planned): per-request figures are undefined",
                scope.name,
            )
        failed = {k: v for k, v in requests["by_status"].items() if k != "ok"}
        if failed and not scope.is_run:
            self.flags.add(
                "failed_requests",
                "warning",
                f"{sum(failed.values())} of {requests['total']} requests did not succeed: "
                + ", ".join(f"{k} {v}" for k, v in failed.items()),
                scope.name,
            )
        if not scope.is_run:
            flag_client_faults(requests["by_status"], requests["total"], self.flags, scope.name)
        return requests

    def _parts(self, ok: np.ndarray) -> Parts:
        pr = self.joined.per_request

        def mean(col: str) -> float | None:
            vals = pr[col].to_numpy()[ok]
            vals = vals[np.isfinite(vals)]
            return float(vals.mean()) if len(vals) else None

        return {
            "prefill": mean("prefill_j"),
            "decode": mean("decode_j"),
            "idle": mean("idle_j"),
            "dynamic": mean("dynamic_j"),
        }

    def _coverage(self, scope: Scope, ok: np.ndarray, n_ok: int) -> Coverage:
        cov = self.joined.per_request["coverage"].to_numpy()[ok]
        cov = cov[np.isfinite(cov)]
        min_coverage = self.opts.min_coverage
        low = int(np.count_nonzero(cov < min_coverage))
        if low and not scope.is_run:
            self.flags.add(
                "low_coverage",
                "warning",
                f"{low} of {n_ok} successful requests have under {min_coverage:.0%} of their lifetime "
                "under gap-free power samples",
                scope.name,
            )
        return {
            "mean": float(cov.mean()) if len(cov) else None,
            "min": float(cov.min()) if len(cov) else None,
            "below_min": low,
        }

    def _short_window_flag(self, scope: Scope, duration: float | None, total: float | None) -> None:
        period = self.opts.counter_period_s
        if duration is not None and 0 < duration < self.opts.min_window_s and total is not None:
            self.flags.add(
                "short_window",
                "warning",
                f"window is {duration:.1f} s: two counter updates ({2 * period:.1f} s) are "
                f"{2 * period / duration:.0%} of it, so its energy is uncertain",
                scope.name,
            )

    def _window_energy(self, scope: Scope) -> tuple[EnergyAccount, float | None]:
        """The window's energy account and mean power; `scope.within` brings what the sweep gave."""
        joined, win = self.joined, scope.window
        if win is None or not joined.intervals or all(len(iv.energy) == 0 for iv in joined.intervals):
            return _NO_ENERGY, None
        total = unattributed = power = 0.0
        for iv, g in zip(joined.intervals, joined.gpus, strict=True):
            inside = _inside(iv, win)
            total += float(g.energy[inside].sum())
            unattributed += float(g.unattributed[inside].sum())
            seconds = float(iv.dt_s[inside].sum())
            power += float(g.energy[inside].sum()) / seconds if seconds > 0 else 0.0
        attributed, own_inside = scope.within
        energy = joined.per_request["energy_j"].to_numpy()
        other_arms = 0.0 if scope.is_run else attributed - own_inside
        outside = float(np.nansum(energy[scope.rows])) - own_inside
        if not scope.is_run and total > 0 and max(abs(other_arms), abs(outside)) > 0.01 * total:
            self.flags.add(
                "arm_overlap",
                "warning",
                f"{other_arms:.1f} J in this arm's window went to other arms' requests and "
                f"{outside:.1f} J of its requests' energy fell outside its window",
                scope.name,
            )
        failed = scope.rows & ~joined.status.eq("ok")
        account: EnergyAccount = {
            "energy_j_total": total,
            "energy_j_attributed": attributed,
            "energy_j_unattributed": unattributed,
            "energy_j_other_arms": other_arms,
            "energy_j_outside_window": outside,
            "energy_j_failed": float(np.nansum(energy[failed])),
        }
        return account, power


def _all_in(total: float | None, attributed: float, n_ok: int, j_stats: Described, out_tok: float) -> AllIn:
    """The window's total per success; the attributed CI shifted by the overhead per success."""
    if total is None or not n_ok:
        return {"j_per_request": None, "ci95": None, "wh_per_request": None, "j_per_output_token": None}
    overhead = total - attributed  # idle with nothing in flight, failed requests: real costs of the arm
    ci = j_stats["ci95"]
    return {
        "j_per_request": total / n_ok,
        # The shift holds only if every success has an energy (else the mean is of fewer requests).
        "ci95": None if ci is None or j_stats["n"] != n_ok else [v + overhead / n_ok for v in ci],
        "wh_per_request": total / n_ok / J_PER_WH,
        "j_per_output_token": _div(total, out_tok),
    }


def _all_in_split(all_in: AllIn, idle_j: float | None, n_ok: int) -> AllInSplit:
    """All-in per success as its idle floor plus the rest (above idle is the difference, so the two add
    up to the all-in figure to the last bit of rounding)."""
    whole = all_in["j_per_request"]
    if whole is None or idle_j is None or not n_ok:
        return {"idle_j_per_request": None, "above_idle_j_per_request": None, "idle_share": None}
    idle = idle_j / n_ok
    above = whole - idle
    return {"idle_j_per_request": idle, "above_idle_j_per_request": above, "idle_share": _div(idle, whole)}


def _inside(iv: Intervals, win: Window) -> np.ndarray:
    """The intervals wholly inside the window (the sweep split them at its edges)."""
    return (iv.tau[:-1] >= win.start_ns) & (iv.tau[1:] <= win.end_ns)


def _window_span(win: Window, derived: bool) -> WindowSpan:
    return {
        "start_ns": int(win.start_ns),
        "end_ns": int(win.end_ns),
        "duration_s": win.duration_s,
        "derived": derived,
    }


def _power_summary(
    power: PowerData, intervals: list[Intervals], energy: dict[str, GpuEnergy]
) -> PowerSummary:
    by_gpu = {iv.gpu: iv for iv in intervals}
    gpus: list[GpuPower] = []
    for s in power.series:
        iv = by_gpu.get(s.gpu)
        gpus.append(
            {
                **energy.get(s.gpu, {}),  # type: ignore[typeddict-item]
                "gpu": s.gpu,
                "uuid": s.uuid,
                "name": s.name,
                "samples": len(s.t_ns),
                "integrated": s.integrated,
                "source": s.source,
                "median_interval_s": _num(iv.median_dt_s) if iv else None,
                "gaps": iv.gaps if iv else None,
                "gap_s": iv.gap_s if iv else None,
                "repeated_readings": iv.repeats if iv else None,
                "issues": list(s.issues),
            }
        )
    return {"source": power.source, "clock": power.clock, "issues": list(power.issues), "gpus": gpus}


def _stream(name: str) -> int:
    """A random stream per arm name, so an arm's CI does not depend on the other arms."""
    return zlib.crc32(name.encode()) + 1


def _div(a: float, b: float | None) -> float | None:
    if b is None or not b or not np.isfinite(b) or not np.isfinite(a):
        return None
    return float(a) / float(b)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _clean(value: object) -> object:
    """NaN and numpy scalars → JSON-safe Python values."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _num(float(value))
    return value
