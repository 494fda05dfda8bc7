"""`analyze`: join a request log to power series and summarize energy per request, per arm and run.

It reads only the request log, the power data and the windows, so it runs the same on a live run and
on a run folder read back later (`joulebench report`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.power.series import PowerData
from traffic.errors import InputError

from . import idle as idle_mod
from .figures import RequestTimes, latency, lateness_ms, rates
from .flags import Flag, FlagList
from .grid import Intervals, cut, energy_at
from .lifetimes import Lifetimes, check_columns, lifetimes, tokens
from .split import METHODS, GpuResult, RequestEnergy, Sweep
from .stats import BootstrapSpec, describe, scaled
from .windows import ArmWindow, IdleWindows, Window, derive_arm_windows, run_window

SUMMARY_SCHEMA_VERSION = 1
J_PER_WH = 3600.0
# |attributed + unattributed - total| must stay below this share of the total (floating-point only).
CONSERVATION_RTOL = 1e-9


@dataclass(frozen=True)
class AnalysisOptions:
    counter_period_s: float = 0.1  # NVML energy counters update about every 100 ms
    window_error_limit: float = 0.02  # flag windows where 2 counter periods exceed this share
    min_coverage: float = 0.9  # requests with less of their lifetime under power samples are flagged
    bootstrap: BootstrapSpec = field(default_factory=BootstrapSpec)
    timeline_points: int = 2000  # resolution of the power-over-time plot data

    @property
    def min_window_s(self) -> float:
        return 2 * self.counter_period_s / self.window_error_limit


@dataclass
class Analysis:
    method: str
    requests: pd.DataFrame  # one row per input row: ids, times, tokens and the energy columns
    summary: dict  # JSON-ready (see docs/energy.md)
    flags: list[Flag]
    timeline: pd.DataFrame  # t_ns, t_end_ns, power_w: total power of the GPUs for plots
    arms: list[ArmWindow]
    idle_windows: IdleWindows | None


ENERGY_COLUMNS = ("energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j", "coverage")


def analyze(
    requests: pd.DataFrame,
    power: PowerData,
    *,
    arms: Sequence[ArmWindow] | None = None,
    idle: IdleWindows | None = None,
    method: str = "time",
    options: AnalysisOptions | None = None,
) -> Analysis:
    """Attribute the measured energy to requests and summarize it.

    `arms`: the arms' windows (from the manifest); arms missing there get a window derived from the
    log (flagged). `idle`: idle windows before/after the run. `method`: `time` or `tokens`.
    """
    if method not in METHODS:
        raise InputError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    opts = options or AnalysisOptions()
    check_columns(requests)
    df = requests.reset_index(drop=True)
    flags = FlagList()
    warmup = df["warmup"].fillna(False).to_numpy(dtype=bool) if "warmup" in df else np.zeros(len(df), bool)
    # Integer codes: comparing a million Python strings per arm would cost more than the join.
    arm_codes, arm_names = pd.factorize(df["arm"].astype(str))
    arm_col = Codes(arm_codes, list(arm_names))
    status_codes, status_names = pd.factorize(df["status"].astype(str))
    status = Codes(status_codes, list(status_names))

    arm_list = derive_arm_windows(df, list(arms or ()))
    for a in arm_list:
        if a.derived:
            flags.add(
                "arm_window_derived",
                "info",
                "arm window not in the manifest; taken from the request log",
                a.name,
            )
    run = run_window(arm_list)

    life = lifetimes(df)
    if life.bad_rows:
        flags.add(
            "bad_request_times",
            "warning",
            f"{life.bad_rows} sent request(s) have no usable done time; left out of the split",
        )
    tok = tokens(df, life) if method == "tokens" else None
    if tok is not None:
        if tok.missing:
            flags.add(
                "tokens_missing",
                "warning",
                f"{tok.missing} request(s) in flight lack server token counts: unknown prompt tokens "
                "weigh 0, unknown output tokens count one per chunk",
            )
        if tok.unsorted:
            flags.add("chunks_unsorted", "warning", f"{tok.unsorted} request(s) had chunk times out of order")

    _power_flags(power, flags)
    cuts = np.array(sorted({t for a in arm_list for t in (a.start_ns, a.end_ns)}), dtype=np.int64)
    intervals: list[Intervals] = []
    if run is not None:
        intervals = [cut(s, run.start_ns, run.end_ns, cuts, opts.counter_period_s) for s in power.series]
        _coverage_of_run(power, intervals, run, flags)
    has_power = any(len(iv.energy) for iv in intervals)
    sweep = Sweep(life, intervals, method, tok, extra_times=cuts)

    idle_est = None
    if idle is not None and (idle.pre or idle.post) and power.series:
        idle_est = idle_mod.from_windows(power.series, idle, flags, opts.min_window_s)
    if idle_est is None:
        if has_power:
            idle_est = idle_mod.in_run(sweep.empty_intervals(), flags, opts.min_window_s)
        else:
            idle_est = idle_mod.IdleEstimate(mode="none")  # nothing to split: no idle flag on top
    energy, gpus = sweep.attribute(idle_est.power_at)

    per_request = _per_request_frame(df, life, energy, method, has_power=has_power)
    times = RequestTimes.of(df)
    ctx = _Context(df, per_request, times, warmup, arm_col, status, sweep, intervals, gpus, opts, flags, life)

    total = float(sum(g.energy.sum() for g in gpus))
    unattributed = float(sum(g.unattributed.sum() for g in gpus))
    attributed = float(np.nansum(per_request["energy_j"].to_numpy()))
    residual = attributed + unattributed - total
    if abs(residual) > CONSERVATION_RTOL * max(abs(total), 1.0):
        flags.add("conservation", "error", f"attributed + unattributed misses the total by {residual:.3g} J")
    clamped = float(sum(g.clamped_j for g in gpus))
    if total > 0 and clamped > 0.01 * total:
        flags.add(
            "idle_clamped",
            "warning",
            f"power fell below the idle estimate ({idle_est.total_w:.1f} W) for {clamped:.1f} J of idle "
            f"energy ({clamped / total:.1%} of the total): the idle estimate may be too high",
        )
    _request_flags(ctx, power)

    arm_rows = [arm_col.eq(a.name) & ~warmup for a in arm_list]
    if has_power and run is not None:
        # One walk over the chunks for every window: (J to all requests, J to the window's own) in it.
        bounds = [(a.start_ns, a.end_ns) for a in arm_list] + [(run.start_ns, run.end_ns)]
        within = sweep.energy_within(bounds, [r[life.row] for r in [*arm_rows, ~warmup]])
    else:
        within = [(float("nan"), float("nan"))] * (len(arm_list) + 1)
    arm_blocks = [
        ctx.block(a.name, a.window, rows, a.target_rate, within=w, derived=a.derived)
        for a, rows, w in zip(arm_list, arm_rows, within, strict=False)
    ]
    targets = {a.target_rate for a in arm_list}
    run_block = ctx.block(
        "run",
        run,
        ~warmup,
        targets.pop() if len(targets) == 1 else None,
        within=within[-1],
        derived=False,
        is_run=True,
    )

    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "method": method,
        "run": run_block,
        "arms": arm_blocks,
        "conservation": {
            "total_j": _num(total) if has_power else None,
            "attributed_j": _num(attributed) if has_power else None,
            "unattributed_j": _num(unattributed) if has_power else None,
            "residual_j": _num(residual) if has_power else None,
        },
        "idle": idle_est.as_dict() | {"clamped_j": clamped},
        "power": _power_summary(power, intervals),
        "bootstrap": {"resamples": opts.bootstrap.resamples, "seed": opts.bootstrap.seed},
        "options": {
            "counter_period_s": opts.counter_period_s,
            "window_error_limit": opts.window_error_limit,
            "min_coverage": opts.min_coverage,
        },
        "flags": [f.as_dict() for f in flags],
    }
    return Analysis(
        method=method,
        requests=per_request,
        summary=summary,
        flags=list(flags),
        timeline=_timeline(power, arm_list, idle, opts.timeline_points),
        arms=arm_list,
        idle_windows=idle,
    )


@dataclass
class Codes:
    """A string column as integer codes (from pd.factorize)."""

    codes: np.ndarray
    names: list[str]

    def eq(self, name: str) -> np.ndarray:
        if name not in self.names:
            return np.zeros(len(self.codes), dtype=bool)
        return self.codes == self.names.index(name)

    def counts(self, rows: np.ndarray) -> dict[str, int]:
        n = np.bincount(self.codes[rows], minlength=len(self.names))
        return {name: int(c) for name, c in sorted(zip(self.names, n, strict=True)) if c}


@dataclass
class _Context:
    df: pd.DataFrame
    per_request: pd.DataFrame
    times: RequestTimes
    warmup: np.ndarray
    arm_col: Codes
    status: Codes
    sweep: Sweep
    intervals: list[Intervals]
    gpus: list[GpuResult]
    opts: AnalysisOptions
    flags: FlagList
    life: Lifetimes

    def block(
        self,
        name: str,
        win: Window | None,
        rows: np.ndarray,
        target: float | None,
        *,
        within: tuple[float, float],
        derived: bool,
        is_run: bool = False,
    ) -> dict:
        pr, t, opts = self.per_request, self.times, self.opts
        ok = rows & self.status.eq("ok")
        n_ok = int(ok.sum())
        by_status = self.status.counts(rows)
        requests = {
            "total": int(rows.sum()),
            "ok": n_ok,
            "by_status": by_status,
        }
        if is_run:
            requests["warmup"] = int(self.warmup.sum())
        scope = "run" if is_run else name
        if n_ok == 0:
            self.flags.add(
                "no_successful_requests",
                "error",
                f"no successful requests ({requests['total']} planned): per-request figures are undefined",
                scope,
            )
        failed = {k: v for k, v in requests["by_status"].items() if k != "ok"}
        if failed and not is_run:
            self.flags.add(
                "failed_requests",
                "warning",
                f"{sum(failed.values())} of {requests['total']} requests did not succeed: "
                + ", ".join(f"{k} {v}" for k, v in failed.items()),
                scope,
            )

        e_ok = pr["energy_j"].to_numpy()[ok]
        e_ok = e_ok[np.isfinite(e_ok)]
        j_stats = describe(e_ok, opts.bootstrap, stream=0 if is_run else _stream(name))

        duration = win.duration_s if win is not None else None
        energy_block = self._window_energy(win, rows, within, is_run, scope)
        mean_power = energy_block.pop("_mean_power_w")
        total = energy_block["energy_j_total"]
        out_tok = float(t.output[ok & t.has_output].sum())
        prompt_tok = float(t.prompt[ok & t.has_prompt].sum())
        ok_energy_rows = ok & np.isfinite(pr["energy_j"].to_numpy())
        e_sum = float(pr["energy_j"].to_numpy()[ok_energy_rows].sum())
        out_e = float(pr["energy_j"].to_numpy()[ok_energy_rows & t.has_output].sum())
        prm_e = float(pr["energy_j"].to_numpy()[ok_energy_rows & t.has_prompt].sum())
        out_n = float(t.output[ok_energy_rows & t.has_output].sum())
        prm_n = float(t.prompt[ok_energy_rows & t.has_prompt].sum())

        all_in: dict = {
            "j_per_request": None,
            "ci95": None,
            "wh_per_request": None,
            "j_per_output_token": None,
        }
        if total is not None and n_ok:
            overhead = total - e_sum  # idle with nothing in flight, failed requests: real costs of the arm
            all_in["j_per_request"] = total / n_ok
            all_in["wh_per_request"] = total / n_ok / J_PER_WH
            if j_stats["ci95"] is not None and len(e_ok) == n_ok:
                all_in["ci95"] = [v + overhead / n_ok for v in j_stats["ci95"]]
            all_in["j_per_output_token"] = _div(total, out_tok)

        parts = {}
        for col in ("prefill_j", "decode_j", "idle_j", "dynamic_j"):
            vals = pr[col].to_numpy()[ok]
            vals = vals[np.isfinite(vals)]
            parts[col.removesuffix("_j")] = float(vals.mean()) if len(vals) else None

        cov = pr["coverage"].to_numpy()[ok]
        cov = cov[np.isfinite(cov)]
        low = int(np.count_nonzero(cov < opts.min_coverage))
        if low and not is_run:
            self.flags.add(
                "low_coverage",
                "warning",
                f"{low} of {n_ok} successful requests have under {opts.min_coverage:.0%} of their lifetime "
                "under gap-free power samples",
                scope,
            )
        if duration is not None and 0 < duration < opts.min_window_s and total is not None:
            self.flags.add(
                "short_window",
                "warning",
                f"window is {duration:.1f} s: two counter updates ({2 * opts.counter_period_s:.1f} s) are "
                f"{2 * opts.counter_period_s / duration:.0%} of it, so its energy is uncertain",
                scope,
            )
        block = {
            "name": name,
            "window": None
            if win is None
            else {
                "start_ns": int(win.start_ns),
                "end_ns": int(win.end_ns),
                "duration_s": win.duration_s,
                "derived": derived,
            },
            "requests": requests,
            **energy_block,
            "j_per_request": j_stats,
            "wh_per_request": scaled(j_stats, 1 / J_PER_WH),
            "j_per_request_parts": parts,
            "all_in": all_in,
            "j_per_output_token": _div(out_e, out_n),
            "j_per_prompt_token": _div(prm_e, prm_n),
            "tokens": {"output": out_tok, "prompt": prompt_tok},
            "mean_power_w": mean_power,
            "throughput": {
                "requests_per_s": _div(n_ok, duration),
                "output_tokens_per_s": _div(out_tok, duration),
                "prompt_tokens_per_s": _div(prompt_tok, duration),
            },
            "rate": rates(t, rows, target),
            "latency_s": latency(t, ok),
            "lateness_ms": lateness_ms(t, rows),
            "coverage": {
                "mean": float(cov.mean()) if len(cov) else None,
                "min": float(cov.min()) if len(cov) else None,
                "below_min": low,
            },
        }
        block["flags"] = self.flags.codes(scope) if not is_run else sorted({f.code for f in self.flags})
        return _clean(block)

    def _window_energy(
        self, win: Window | None, rows: np.ndarray, within: tuple[float, float], is_run: bool, scope: str
    ) -> dict:
        """The window's energy account; `within` = (J to all requests, J to its own requests) in it."""
        empty = {
            "energy_j_total": None,
            "energy_j_attributed": None,
            "energy_j_unattributed": None,
            "energy_j_other_arms": None,
            "energy_j_outside_window": None,
            "energy_j_failed": None,
            "_mean_power_w": None,
        }
        if win is None or not self.intervals or all(len(iv.energy) == 0 for iv in self.intervals):
            return empty
        total = unattributed = 0.0
        power = 0.0
        for iv, g in zip(self.intervals, self.gpus, strict=True):
            inside = (iv.tau[:-1] >= win.start_ns) & (iv.tau[1:] <= win.end_ns)
            total += float(g.energy[inside].sum())
            unattributed += float(g.unattributed[inside].sum())
            seconds = float(iv.dt_s[inside].sum())
            power += float(g.energy[inside].sum()) / seconds if seconds > 0 else 0.0
        attributed, own_inside = within
        energy = self.per_request["energy_j"].to_numpy()
        own_total = float(np.nansum(energy[rows]))
        failed = rows & ~self.status.eq("ok")
        out = {
            "energy_j_total": total,
            "energy_j_attributed": attributed,
            "energy_j_unattributed": unattributed,
            "energy_j_other_arms": 0.0 if is_run else attributed - own_inside,
            "energy_j_outside_window": own_total - own_inside,
            "energy_j_failed": float(np.nansum(energy[failed])),
            "_mean_power_w": power,
        }
        spill = max(abs(out["energy_j_other_arms"]), abs(out["energy_j_outside_window"]))
        if not is_run and total > 0 and spill > 0.01 * total:
            self.flags.add(
                "arm_overlap",
                "warning",
                f"{out['energy_j_other_arms']:.1f} J in this arm's window went to other arms' requests and "
                f"{out['energy_j_outside_window']:.1f} J of its requests' energy fell outside its window",
                scope,
            )
        return out


def _per_request_frame(
    df: pd.DataFrame, life: Lifetimes, energy: RequestEnergy, method: str, has_power: bool
) -> pd.DataFrame:
    n = len(df)
    cols = {c: np.full(n, np.nan) for c in ENERGY_COLUMNS}
    if has_power:
        rows = life.row
        known = energy.touched
        total = energy.dynamic + energy.idle
        for col, vals in (
            ("energy_j", total),
            ("prefill_j", energy.prefill),
            ("decode_j", energy.decode),
            ("idle_j", energy.idle),
            ("dynamic_j", energy.dynamic),
        ):
            # A lifetime that no power interval overlaps has no energy to report (NaN, not 0).
            cols[col][rows] = np.where(known, vals, np.nan)
        cols["coverage"][rows] = energy.coverage
        if "stream" in df.columns:
            # Without a stream the first-token time is the end of the response: no phase split.
            unstreamed = ~df["stream"].fillna(True).to_numpy(dtype=bool)
            cols["prefill_j"][unstreamed] = np.nan
            cols["decode_j"][unstreamed] = np.nan
    keep = [
        c
        for c in (
            "request_id",
            "arm",
            "warmup",
            "status",
            "stream",
            "prompt_tokens",
            "output_tokens",
            "sent_ns",
            "first_token_ns",
            "done_ns",
        )
        if c in df.columns
    ]
    out = df[keep].copy()
    for c, v in cols.items():
        out[c] = v
    out["method"] = method
    return out


def _power_flags(power: PowerData, flags: FlagList) -> None:
    for issue in power.issues:
        flags.add("power_issue", "warning", issue)
    if not power.series or all(len(s.t_ns) < 2 for s in power.series):
        flags.add(
            "no_power_data",
            "error",
            f"no power samples from source {power.source or '?'}: energy figures are undefined",
        )
    for s in power.series:
        for issue in s.issues:
            flags.add("power_issue", "warning", issue, f"gpu {s.gpu}")
        if s.integrated:
            flags.add(
                "power_integrated",
                "info",
                "energy integrated from power readings (no hardware energy counter)",
                f"gpu {s.gpu}",
            )
    unc = clock_uncertainty_ns(power)
    if unc:
        flags.add(
            "clock_offset",
            "info",
            f"power times were mapped from another clock with ±{float(unc) / 1e6:.3f} ms uncertainty",
        )
    if isinstance(power.clock, dict) and power.clock.get("mode") == "epoch":
        # No measured offset: epoch times were taken at face value. That is not the same clock, and the
        # error (the hosts' clock difference, NTP: typically milliseconds) is unknown, so say so.
        flags.add(
            "clock_unmeasured",
            "warning",
            "power times were mapped through epoch time with no measured clock offset: per-request "
            "energies are shifted by however much the power source's clock differs from ours",
        )


def clock_uncertainty_ns(power: PowerData) -> float | None:
    """How uncertain the mapping of the power clock onto the harness clock is (None: same clock)."""
    raw = power.clock.get("uncertainty_ns") if isinstance(power.clock, dict) else None
    try:
        return None if raw is None else abs(float(raw))
    except (TypeError, ValueError):
        return None


def _coverage_of_run(power: PowerData, intervals: list[Intervals], run: Window, flags: FlagList) -> None:
    for s, iv in zip(power.series, intervals, strict=True):
        scope = f"gpu {s.gpu}"
        if len(s.t_ns) < 2:
            continue
        if len(iv.tau) < 2:
            flags.add(
                "power_outside_run",
                "error",
                f"power samples ({_span(s.t_ns[0], s.t_ns[-1])}) do not overlap the run window "
                f"({_span(run.start_ns, run.end_ns)}): are power and requests on the same clock?",
                scope,
            )
            continue
        share = iv.covered_s / run.duration_s if run.duration_s > 0 else 1.0
        if share < 0.999:
            flags.add(
                "power_partial",
                "warning",
                f"power samples cover {share:.1%} of the run window; energy outside them is missing",
                scope,
            )
        if iv.gaps:
            flags.add(
                "power_gaps",
                "warning",
                f"{iv.gaps} gap(s) in the power samples ({iv.gap_s:.1f} s, longer than 5x the median "
                f"interval of {iv.median_dt_s * 1e3:.0f} ms): their energy is exact but its split is smeared",
                scope,
            )
        if iv.repeats:
            flags.add(
                "counter_repeats",
                "info",
                f"{iv.repeats} reading(s) repeated the counter value within its update lag and were merged",
                scope,
            )


def _request_flags(ctx: _Context, power: PowerData) -> None:
    pr, opts, flags = ctx.per_request, ctx.opts, ctx.flags
    measured = ~ctx.warmup & pr["sent_ns"].notna().to_numpy() if "sent_ns" in pr else ~ctx.warmup
    energy = pr["energy_j"].to_numpy()
    no_energy = int(np.count_nonzero(measured & ~np.isfinite(energy) & pr["done_ns"].notna().to_numpy()))
    if no_energy and ctx.intervals:
        flags.add(
            "requests_without_power",
            "warning",
            f"{no_energy} measured request(s) overlap no power samples: their energy_j is null",
        )
    e2e = ((ctx.times.done - ctx.times.sent) / 1e9)[measured & ctx.times.has_done & ctx.times.has_sent]
    if len(e2e) == 0:
        return
    med_e2e = float(np.median(e2e))
    sample_dt = [iv.median_dt_s for iv in ctx.intervals if np.isfinite(iv.median_dt_s)]
    if sample_dt and max(sample_dt) > med_e2e:
        flags.add(
            "coarse_power",
            "warning",
            f"the power samples ({max(sample_dt) * 1e3:.0f} ms apart) are coarser than the median request "
            f"({med_e2e * 1e3:.0f} ms): per-request energies are shares of interval means; totals are exact",
        )
    elif med_e2e < opts.counter_period_s:
        flags.add(
            "short_requests",
            "info",
            f"the median request ({med_e2e * 1e3:.0f} ms) is shorter than the counter update period "
            f"({opts.counter_period_s * 1e3:.0f} ms): per-request energies are shares of interval averages",
        )
    unc = clock_uncertainty_ns(power)
    if unc is not None and unc / 1e9 > 0.1 * med_e2e:
        flags.add(
            "clock_uncertain",
            "warning",
            f"the power clock's offset is uncertain by ±{unc / 1e6:.1f} ms, over 10% of the median request "
            f"({med_e2e * 1e3:.0f} ms): per-request energies may be shifted between neighbours",
        )


def _power_summary(power: PowerData, intervals: list[Intervals]) -> dict:
    by_gpu = {iv.gpu: iv for iv in intervals}
    gpus = []
    for s in power.series:
        iv = by_gpu.get(s.gpu)
        gpus.append(
            {
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


def _timeline(power: PowerData, arms: list[ArmWindow], idle: IdleWindows | None, points: int) -> pd.DataFrame:
    """Total power of the GPUs in `points` bins from the first to the last window (exact bin averages)."""
    starts = [a.start_ns for a in arms] + [w.start_ns for w in _idle_list(idle)]
    ends = [a.end_ns for a in arms] + [w.end_ns for w in _idle_list(idle)]
    series = [s for s in power.series if len(s.t_ns) >= 2]
    if not starts or not series:
        return pd.DataFrame({"t_ns": [], "t_end_ns": [], "power_w": []})
    lo, hi = min(starts), max(ends)
    if hi <= lo:
        return pd.DataFrame({"t_ns": [], "t_end_ns": [], "power_w": []})
    finest = min(float(np.median(np.diff(s.t_ns))) for s in series)
    bins = int(max(1, min(points, (hi - lo) / max(finest, 1.0))))
    edges = np.linspace(lo, hi, bins + 1).round().astype(np.int64)
    watts = np.zeros(bins)
    for s in series:
        e = energy_at(s, edges)
        watts += np.diff(e) / (np.diff(edges) / 1e9)  # NaN where this GPU has no samples
    return pd.DataFrame({"t_ns": edges[:-1], "t_end_ns": edges[1:], "power_w": watts})


def _idle_list(idle: IdleWindows | None) -> list[Window]:
    if idle is None:
        return []
    return [w for w in (idle.pre, idle.post) if w is not None]


def _stream(name: str) -> int:
    """A random stream per arm name, so an arm's CI does not depend on the other arms."""
    return zlib.crc32(name.encode()) + 1


def _span(a: int, b: int) -> str:
    return f"{int(a) / 1e9:.3f}-{int(b) / 1e9:.3f} s"


def _div(a: float, b: float | None) -> float | None:
    if b is None or not b or not np.isfinite(b) or not np.isfinite(a):
        return None
    return float(a) / float(b)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _clean(value):
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
        return _num(value)
    return value
