#!/usr/bin/env python3
"""Issue 16's re-analysis of the committed real runs: the six arms with and without the power-lag
correction, and with the `steps` split, from the raw files alone.

For every run folder of docs/results/arrival-shaping-h100/raw (3 runs on an H100) and every cell of
docs/results/arrival-shaping-h200/experiment (5 repeats on an H200), the join is run three ways --
`time` with no lag correction (what the pages showed before issue 16), `time` with the lag estimated
and applied (`--power-lag auto`), and `steps` with it -- and each arm's attributed J/request (mean over
its successful requests) is averaged over the runs (H100) or the repeats (H200), with how many runs or
repeats had a figure. The all-in figure does not depend on the split; the shift moves it only by the
energy it carries across the window's ends, so it is shown once, as now reported (lag applied). Also
per GPU: the lag each run's estimate applied, and the `steps` split's per-run fit (J per engine step, per
decoded and per prompt token).

    python benchmarks/gpu/reanalysis.py [--only h100] [--out docs/results/reanalysis-h100-h200]

writes README.md (the tables) and figures.json (every run's figures) into --out; with --only h100 it
prints the H100 table only (what tests/e2e/test_reanalysis.py checks against the page).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.energy.analysis_options import AnalysisOptions
from harness.report.run_inputs import analyze_run

REPO = Path(__file__).resolve().parents[2]
SOURCES = {
    "h100": ("H100 (vLLM 0.26, 3 runs)", REPO / "docs/results/arrival-shaping-h100/raw"),
    "h200": ("H200 (vLLM 0.26, 5 repeats)", REPO / "docs/results/arrival-shaping-h200/experiment/runs"),
}
VARIANTS = (("time", "off"), ("time", "auto"), ("steps", "auto"))


def run_figures(run: Path) -> dict[str, Any]:
    """One run folder joined each way: per arm attributed J/request, all-in, the lag, the fit."""
    out: dict[str, Any] = {"run": run.name, "arms": defaultdict(dict)}
    for method, lag in VARIANTS:
        _, analysis = analyze_run(run, method=method, options=AnalysisOptions(power_lag=lag))
        summary: dict[str, Any] = dict(analysis.summary)
        for arm in summary["arms"]:
            figures = out["arms"][arm["name"]]
            figures[f"{method}/{lag}"] = arm["j_per_request"]["mean"]
            if (method, lag) == ("time", "auto"):
                figures["all_in"] = (arm.get("all_in") or {}).get("j_per_request")
        if lag == "auto":
            gpus = (summary.get("power_lag") or {}).get("gpus") or {}
            out["lag_ms"] = {g: 1000 * r["applied_s"] for g, r in gpus.items()}
            out["lag_status"] = {g: r["status"] for g, r in gpus.items()}
            out["lag_capped"] = sum("capped_from_s" in r for r in gpus.values())
        if method == "steps":
            out["token_fit"] = summary.get("token_fit")
    out["arms"] = dict(out["arms"])
    return out


def source_runs(key: str) -> list[Path]:
    return sorted(p for p in SOURCES[key][1].iterdir() if (p / "manifest.json").exists())


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def arm_table(runs: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(a for r in runs for a in r["arms"]))
    lines = [
        "| arm | runs | all-in J/request | attributed, time, no lag | time, lag applied | steps, lag "
        "applied |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        cells = [r["arms"][name] for r in runs if name in r["arms"]]
        keys = ("all_in", "time/off", "time/auto", "steps/auto")
        figures = [fmt(mean([c.get(k) for c in cells])) for k in keys]
        counts = {sum(c.get(k) is not None for c in cells) for k in keys}
        n = "/".join(str(c) for c in sorted(counts, reverse=True))  # one count unless a figure is missing
        lines.append(f"| {name} | {n} | " + " | ".join(figures) + " |")
    return lines


def lag_and_fit(runs: list[dict[str, Any]]) -> list[str]:
    lags = [lag for r in runs for lag in (r.get("lag_ms") or {}).values() if lag]
    stable = sum(s == "stable" for r in runs for s in (r.get("lag_status") or {}).values())
    total = sum(len(r.get("lag_status") or {}) for r in runs)
    fits = [r["token_fit"] for r in runs if r.get("token_fit") and r["token_fit"].get("usable")]
    lines = [
        f"Power lag: stable in {stable} of {total} run-GPUs; applied "
        + (
            f"{min(lags):.0f}-{max(lags):.0f} ms (median {statistics.median(lags):.0f} ms)"
            if lags
            else "nowhere"
        )
        + f", capped to the power read past the run in {sum(r.get('lag_capped', 0) for r in runs)}"
        + ". Where it is not stable (a GPU busy the whole run has too few idle/busy changes to correlate) "
        "no shift is applied.",
    ]
    if fits:
        step = statistics.median(f["j_per_step"] for f in fits)
        dec = statistics.median(f["j_per_decoded_token"] for f in fits)
        pre = statistics.median(f["j_per_prompt_token"] for f in fits)
        lines.append(
            f"`steps` fit, usable in {len(fits)} of {len(runs)} runs (medians): {step:.3g} J per engine "
            f"step, {1000 * dec:.3g} mJ per decoded token, {1000 * pre:.3g} mJ per prompt token."
        )
    else:
        lines.append(
            f"`steps` fit: usable in none of the {len(runs)} runs (the split used its prior weights)."
        )
    return lines


def section(key: str, runs: list[dict[str, Any]]) -> list[str]:
    return [f"## {SOURCES[key][0]}", "", *arm_table(runs), "", *lag_and_fit(runs), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SOURCES), help="print one source's section, write nothing")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/reanalysis-h100-h200")
    args = ap.parse_args()
    keys = [args.only] if args.only else list(SOURCES)
    figures = {key: [run_figures(run) for run in source_runs(key)] for key in keys}
    sections = [line for key in keys for line in section(key, figures[key])]
    if args.only:
        print("\n".join(sections))
        return
    intro = (REPO / "benchmarks/gpu/reanalysis_intro.md").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "README.md").write_text(intro + "\n" + "\n".join(sections))
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(args.out / "README.md")


if __name__ == "__main__":
    main()
