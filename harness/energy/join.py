"""`analyze`: join a request log to power series, attribute the energy to requests, and summarize it.

It reads only the request log, the power data and the windows, so it runs the same on a live run and
on a run folder read back later (`joulebench report`). The attribution is here; `summary` turns it
into the figures of summary.json.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foundation.flag_fields import check_choice
from harness.energy import idle_estimate as idle_mod
from harness.energy import power_lag
from harness.energy.analysis_options import AnalysisOptions
from harness.energy.figures import Codes, RequestTimes
from harness.energy.flags import Flag, FlagList
from harness.energy.grid import Intervals, cut, energy_at
from harness.energy.input_flags import power_flags, request_flags, run_coverage_flags
from harness.energy.lifetimes import Lifetimes, check_columns, lifetimes, tokens
from harness.energy.split import WORK_METHODS, Method, RequestEnergy, Sweep
from harness.energy.summary import Account, Joined, Scope, summarize
from harness.energy.summary_types import ArmPolicy, Summary
from harness.energy.windows import ArmWindow, IdleWindows, derive_arm_windows, run_window
from harness.energy.work_weights import fit_report
from harness.power.series import PowerData

# |attributed + unattributed - total| must stay below this share of the total. The two sides come from
# different sums (requests: differences of cumulative sums over their lifetimes), whose rounding grows
# with those sums' magnitude, not the total's: hypothesis found residuals of 2e-9 of a 2 J total (a
# large counter offset, the tokens split). 1e-6 leaves room for that and still catches any real leak.
CONSERVATION_RTOL = 1e-6
ENERGY_COLUMNS = ("energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j", "coverage")


@dataclass
class Analysis:
    method: str
    requests: pd.DataFrame  # one row per input row: ids, times, tokens and the energy columns
    summary: Summary  # JSON-ready (see docs/energy.md)
    flags: list[Flag]
    timeline: pd.DataFrame  # t_ns, t_end_ns, power_w: total power of the GPUs for plots
    arms: list[ArmWindow]
    idle_windows: IdleWindows | None


def analyze(
    requests: pd.DataFrame,
    power: PowerData,
    *,
    arms: Sequence[ArmWindow] | None = None,
    idle: IdleWindows | None = None,
    method: str = "time",
    options: AnalysisOptions | None = None,
    closed_loop: Collection[str] = (),
    policies: Mapping[str, ArmPolicy] | None = None,
) -> Analysis:
    """Attribute the measured energy to requests and summarize it.

    `arms`: the arms' windows (from the manifest); arms missing there get a window derived from the
    log (flagged). `idle`: idle windows before/after the run. `method`: `time`, `tokens` or `steps`.
    `closed_loop`: the arms whose sends follow their users, not a schedule (the plan's `concurrency`
    arms): their planned times are not a plan, so they are not held to a lateness bound. `policies`:
    the shaped arms' policies, by arm (from the plan).
    """
    check_choice("method", method, Method)
    opts = options or AnalysisOptions()
    check_columns(requests)
    df = requests.reset_index(drop=True)
    flags = FlagList()
    warmup = df["warmup"].fillna(False).to_numpy(dtype=bool) if "warmup" in df else np.zeros(len(df), bool)
    arm_col = Codes.of(df["arm"])
    status = Codes.of(df["status"])

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
    tok = tokens(df, life) if method in WORK_METHODS else None
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

    power_flags(power, flags)
    # Power trails the requests (sensor averaging, counter updates): split the series moved back onto them.
    lag = power_lag.correct(power, life.start, life.end, [(a.start_ns, a.end_ns) for a in arm_list],
                            opts.power_lag or "auto", flags, opts.sensor_delay_s)  # fmt: skip
    power = lag.power
    cuts = np.array(sorted({t for a in arm_list for t in (a.start_ns, a.end_ns)}), dtype=np.int64)
    intervals: list[Intervals] = []
    if run is not None:
        intervals = [cut(s, run.start_ns, run.end_ns, cuts, opts.counter_period_s) for s in power.series]
        run_coverage_flags(power, intervals, run, opts.min_power_coverage, flags)
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
    fit = fit_report(sweep.weights, sweep.fit, flags)

    per_request = _per_request_frame(df, life, energy, method, has_power=has_power)
    times = RequestTimes.of(df)
    account = Account(
        total=float(sum(g.energy.sum() for g in gpus)),
        attributed=float(np.nansum(per_request["energy_j"].to_numpy())),
        unattributed=float(sum(g.unattributed.sum() for g in gpus)),
        clamped=float(sum(g.clamped_j for g in gpus)),
    )
    _account_flags(account, idle_est.total_w, flags)
    request_flags(per_request, times, warmup, intervals, power, opts.counter_period_s, flags)

    arm_rows = [arm_col.eq(a.name) & ~warmup for a in arm_list]
    if has_power and run is not None:
        # One walk over the chunks for every window: (J to all requests, J to the window's own) in it.
        bounds = [(a.start_ns, a.end_ns) for a in arm_list] + [(run.start_ns, run.end_ns)]
        within = sweep.energy_within(bounds, [r[life.row] for r in [*arm_rows, ~warmup]])
    else:
        within = [(float("nan"), float("nan"))] * (len(arm_list) + 1)
    shaped = policies or {}
    arm_scopes = [
        Scope(
            a.name,
            a.window,
            rows,
            a.target_rate,
            w,
            derived=a.derived,
            closed_loop=a.name in closed_loop,
            policy=shaped.get(a.name),
        )
        for a, rows, w in zip(arm_list, arm_rows, within, strict=False)
    ]
    targets = {a.target_rate for a in arm_list}
    target = targets.pop() if len(targets) == 1 else None
    run_scope = Scope("run", run, ~warmup, target, within[-1], is_run=True)
    joined = Joined(
        method=method,
        per_request=per_request,
        times=times,
        warmup=warmup,
        status=status,
        power=power,
        intervals=intervals,
        gpus=gpus,
        idle=idle_est,
        account=account,
        has_power=has_power,
        power_lag=lag.record,
        token_fit=fit,
    )
    return Analysis(
        method=method,
        requests=per_request,
        summary=summarize(joined, arm_scopes, run_scope, opts, flags),
        flags=list(flags),
        timeline=_timeline(power, arm_list, idle, opts.timeline_points),
        arms=arm_list,
        idle_windows=idle,
    )


def _account_flags(account: Account, idle_w: float, flags: FlagList) -> None:
    total, residual, clamped = account.total, account.residual, account.clamped
    if abs(residual) > CONSERVATION_RTOL * max(abs(total), 1.0):
        flags.add("conservation", "error", f"attributed + unattributed misses the total by {residual:.3g} J")
    if total > 0 and clamped > 0.01 * total:
        flags.add(
            "idle_clamped",
            "warning",
            f"power fell below the idle estimate ({idle_w:.1f} W) for {clamped:.1f} J of idle "
            f"energy ({clamped / total:.1%} of the total): the idle estimate may be too high",
        )


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
    out: pd.DataFrame = df[keep].copy()
    for c, v in cols.items():
        out[c] = v
    out["method"] = method
    return out


def _timeline(power: PowerData, arms: list[ArmWindow], idle: IdleWindows | None, points: int) -> pd.DataFrame:
    """Total power of the GPUs in `points` bins from the first to the last window (exact bin averages)."""
    idle_list = [] if idle is None else [w for w in (idle.pre, idle.post) if w is not None]
    starts = [a.start_ns for a in arms] + [w.start_ns for w in idle_list]
    ends = [a.end_ns for a in arms] + [w.end_ns for w in idle_list]
    series = [s for s in power.series if len(s.t_ns) >= 2]
    if not starts or not series or max(ends) <= min(starts):
        empty: pd.DataFrame = pd.DataFrame({"t_ns": [], "t_end_ns": [], "power_w": []})
        return empty
    lo, hi = min(starts), max(ends)
    finest = min(float(np.median(np.diff(s.t_ns))) for s in series)
    bins = int(max(1, min(points, (hi - lo) / max(finest, 1.0))))
    edges = np.linspace(lo, hi, bins + 1).round().astype(np.int64)
    watts = np.zeros(bins)
    for s in series:
        e = energy_at(s, edges)
        watts += np.diff(e) / (np.diff(edges) / 1e9)  # NaN where this GPU has no samples
    timeline: pd.DataFrame = pd.DataFrame({"t_ns": edges[:-1], "t_end_ns": edges[1:], "power_w": watts})
    return timeline
