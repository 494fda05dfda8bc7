#!/usr/bin/env python3
"""Turn the GPU experiment's run folders into the results page (issue 8).

Reads the repeats of one plan (run folders written by `joulebench run`, as `experiment.sh` leaves
them), and writes into --out:
  README.md              per-arm table over the repeats, checks, versions, the commands
  arms.csv               the per-arm, per-repeat figures behind the table
  sequential_check.csv   sequential arm: each request's attributed energy vs the counter over its window
  j_per_request.png      all-in and attributed J/request per arm, one dot per repeat
  j_vs_rate.png          J/request against realized rate
  runs/<run_id>/         summary.json and manifest.json of every repeat (small files only)
With --mock RUN..., the same plan replayed against the mock server: per-arm ratio mock/GPU and
whether the mock ranks the arms the same way.

Usage: python benchmarks/gpu/analyze.py --runs DIR [DIR ...] --out docs/results/NAME \
           [--machine machine.txt] [--calibration calibration.json] [--mock RUN ...] [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.energy import load_power
from harness.runfolder import RunFolder

COLUMNS = [
    ("all_in_j", "all-in J/req"),
    ("j_mean", "J/req (attributed)"),
    ("j_p50", "p50"),
    ("j_p99", "p99"),
    ("j_ci95", "95% CI"),
    ("wh_mean", "Wh/req"),
    ("j_per_out_tok", "J/out-token"),
    ("ttft_p50", "TTFT p50 s"),
    ("ttft_p99", "TTFT p99 s"),
    ("e2e_p50", "E2E p50 s"),
    ("e2e_p99", "E2E p99 s"),
    ("rate", "realized req/s"),
    ("power_w", "mean power W"),
]


def find_runs(paths: list[Path]) -> list[Path]:
    runs = []
    for path in paths:
        if (path / "summary.json").is_file():
            runs.append(path)
        else:
            runs += sorted(p.parent for p in path.glob("**/summary.json"))
    if not runs:
        sys.exit(f"analyze: no run folder with a summary.json under {', '.join(map(str, paths))}")
    return runs


def _get(block: dict, *keys, default=np.nan):
    for key in keys:
        if not isinstance(block, dict) or block.get(key) is None:
            return default
        block = block[key]
    return block


def arm_rows(run: Path) -> list[dict]:
    summary = json.loads((run / "summary.json").read_text())
    rows = []
    for name, arm in summary["arms"].items():
        ci = _get(arm, "j_per_request", "ci95", default=None)
        rows.append(
            {
                "run": run.name,
                "arm": name,
                "requests_ok": _get(arm, "requests", "ok"),
                "all_in_j": _get(arm, "all_in", "j_per_request"),
                "j_mean": _get(arm, "j_per_request", "mean"),
                "j_p50": _get(arm, "j_per_request", "p50"),
                "j_p99": _get(arm, "j_per_request", "p99"),
                "j_ci_lo": ci[0] if ci else np.nan,
                "j_ci_hi": ci[1] if ci else np.nan,
                "wh_mean": _get(arm, "wh_per_request", "mean"),
                "j_per_out_tok": _get(arm, "all_in", "j_per_output_token"),
                "ttft_p50": _get(arm, "latency_s", "ttft", "p50"),
                "ttft_p99": _get(arm, "latency_s", "ttft", "p99"),
                "e2e_p50": _get(arm, "latency_s", "e2e", "p50"),
                "e2e_p99": _get(arm, "latency_s", "e2e", "p99"),
                "rate": _get(arm, "rate", "realized"),
                "target_rate": _get(arm, "rate", "target"),
                "power_w": _get(arm, "mean_power_w"),
                "energy_total": _get(arm, "energy_j_total"),
                "energy_attr": _get(arm, "energy_j_attributed"),
                "energy_unattr": _get(arm, "energy_j_unattributed"),
                "flags": ",".join(arm.get("flags") or []),
            }
        )
    return rows


def window_checks(run: Path) -> dict:
    """Conservation against the counter, and counter vs integrated instant power over the run."""
    summary = json.loads((run / "summary.json").read_text())
    window = summary["run"]["window"]
    start, end = window["start_ns"], window["end_ns"]
    power = load_power(run)
    counter_j = integrated_j = 0.0
    for s in power.series:
        t, e = s.t_ns, s.energy_j
        counter_j += float(np.interp(end, t, e) - np.interp(start, t, e))
        if s.power_w is not None and np.isfinite(s.power_w).any():
            inside = (t >= start) & (t <= end) & np.isfinite(s.power_w)
            tt, pp = t[inside] / 1e9, s.power_w[inside]
            integrated_j += float(np.sum((pp[1:] + pp[:-1]) / 2 * np.diff(tt)))
    run_block = summary["run"]
    total = run_block["energy_j_total"]
    return {
        "run": run.name,
        "energy_j_total": total,
        "attributed_plus_unattributed": run_block["energy_j_attributed"] + run_block["energy_j_unattributed"],
        "counter_delta_j": counter_j,
        "integrated_instant_j": integrated_j,
        "instant_over_counter": integrated_j / counter_j if counter_j else np.nan,
        "crosscheck": summary.get("power", {}).get("crosscheck"),
    }


def sequential_check(run: Path, arm: str = "sequential") -> pd.DataFrame:
    """Each sequential request alone on the GPU: its attributed energy vs the counter over its window."""
    energy = pd.read_parquet(run / "energy.parquet")
    requests = RunFolder.open(run).requests()
    merged = energy.merge(requests[["request_id", "sent_ns", "done_ns"]], on="request_id")
    merged = merged[(merged["arm"] == arm) & (merged["status"] == "ok") & ~merged["warmup"]]
    power = load_power(run)
    counter = np.zeros(len(merged))
    instant = np.zeros(len(merged))
    sent = merged["sent_ns"].to_numpy(dtype=np.int64)
    done = merged["done_ns"].to_numpy(dtype=np.int64)
    for s in power.series:
        counter += np.interp(done, s.t_ns, s.energy_j) - np.interp(sent, s.t_ns, s.energy_j)
        if s.power_w is not None:
            ok = np.isfinite(s.power_w)
            cum = np.concatenate(
                [[0.0], np.cumsum((s.power_w[ok][1:] + s.power_w[ok][:-1]) / 2 * np.diff(s.t_ns[ok]) / 1e9)]
            )
            instant += np.interp(done, s.t_ns[ok], cum) - np.interp(sent, s.t_ns[ok], cum)
    return pd.DataFrame(
        {
            "run": run.name,
            "request_id": merged["request_id"].to_numpy(),
            "duration_s": (done - sent) / 1e9,
            "attributed_j": merged["energy_j"].to_numpy(dtype=float),
            "counter_window_j": counter,
            "instant_window_j": instant,
        }
    )


def plot(arms: pd.DataFrame, out: Path, order: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(order):
        sub = arms[arms["arm"] == name]
        ax.scatter([i - 0.1] * len(sub), sub["all_in_j"], color="C0", label="all-in" if i == 0 else None)
        ax.scatter([i + 0.1] * len(sub), sub["j_mean"], color="C1", label="attributed" if i == 0 else None)
    ax.set_xticks(range(len(order)), order, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("J per request (log)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "j_per_request.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in order:
        sub = arms[arms["arm"] == name]
        ax.scatter(sub["rate"], sub["all_in_j"], label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("realized rate (req/s)")
    ax.set_ylabel("all-in J per request")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "j_vs_rate.png", dpi=120)
    plt.close(fig)


def fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*cells) -> list[str]:
    return [row(*cells), "|---" * len(cells) + "|"]


def arm_table(arms: pd.DataFrame, order: list[str]) -> list[str]:
    lines = header(
        "arm",
        "repeats",
        "all-in J/req (mean ± CV)",
        "attributed J/req",
        "p50",
        "p99",
        "95% CI (rep. 1)",
        "Wh/req",
        "J/out-token",
        "TTFT p50 / p99 s",
        "E2E p50 / p99 s",
        "realized req/s",
        "mean power W",
    )
    for name in order:
        sub = arms[arms["arm"] == name]
        allin = sub["all_in_j"].to_numpy(dtype=float)
        cv = np.std(allin, ddof=1) / np.mean(allin) if len(allin) > 1 else np.nan
        first = sub.iloc[0]
        mean = {c: sub[c].mean() for c in sub.columns if sub[c].dtype.kind == "f"}
        lines.append(
            row(
                name,
                len(sub),
                f"{fmt(np.mean(allin))} ± {fmt(100 * cv, 2)}%",
                fmt(mean["j_mean"]),
                fmt(mean["j_p50"]),
                fmt(mean["j_p99"]),
                f"[{fmt(first['j_ci_lo'])}, {fmt(first['j_ci_hi'])}]",
                fmt(mean["wh_mean"]),
                fmt(mean["j_per_out_tok"]),
                f"{fmt(mean['ttft_p50'])} / {fmt(mean['ttft_p99'])}",
                f"{fmt(mean['e2e_p50'])} / {fmt(mean['e2e_p99'])}",
                fmt(mean["rate"]),
                fmt(mean["power_w"]),
            )
        )
    return lines


def mock_comparison(gpu: pd.DataFrame, mock_runs: list[Path], order: list[str]) -> tuple[list[str], dict]:
    mock = pd.DataFrame([row for run in mock_runs for row in arm_rows(run)])
    g = gpu.groupby("arm")["all_in_j"].mean()
    m = mock.groupby("arm")["all_in_j"].mean()
    names = [n for n in order if n in m.index]
    lines = [
        "| arm | GPU all-in J/req | mock all-in J/req | mock / GPU | GPU rank | mock rank |",
        "|---" * 6 + "|",
    ]
    g_rank = g[names].rank().astype(int)
    m_rank = m[names].rank().astype(int)
    for name in names:
        lines.append(
            row(name, fmt(g[name]), fmt(m[name]), fmt(m[name] / g[name]), g_rank[name], m_rank[name])
        )
    same = bool((g_rank == m_rank).all())
    data = {
        "arms": {n: {"gpu": g[n], "mock": m[n], "ratio": m[n] / g[n]} for n in names},
        "same_ranking": same,
    }
    return lines, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--machine", type=Path)
    ap.add_argument("--calibration", type=Path)
    ap.add_argument("--mock", nargs="*", type=Path, default=[])
    ap.add_argument("--title", default="Energy per request across arrival schedules")
    args = ap.parse_args()

    runs = find_runs(args.runs)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    arms = pd.DataFrame([row for run in runs for row in arm_rows(run)])
    order = list(dict.fromkeys(arms["arm"]))
    arms.to_csv(out / "arms.csv", index=False)
    checks = [window_checks(run) for run in runs]
    seq = (
        pd.concat([sequential_check(run) for run in runs if "sequential" in order], ignore_index=True)
        if "sequential" in order
        else pd.DataFrame()
    )
    if len(seq):
        seq.to_csv(out / "sequential_check.csv", index=False)
    plot(arms, out, order)
    for run in runs:
        dest = out / "runs" / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "manifest.json"):
            shutil.copy(run / name, dest / name)

    manifest = json.loads((runs[0] / "manifest.json").read_text())
    lines = [f"# {args.title}", ""]
    if args.machine and args.machine.is_file():
        lines += [
            "Machine (from `experiment.sh setup`):",
            "",
            "```",
            args.machine.read_text().strip(),
            "```",
            "",
        ]
    lines += [
        f"Plan hash `{manifest.get('plan_hash', '?')}`; {len(runs)} repeats "
        f"({', '.join(r.name for r in runs)}).",
        "",
        "## Per arm",
        "",
        *arm_table(arms, order),
        "",
        "All-in J/request = the arm window's counter energy / successful requests (idle between requests "
        "included, as the paper averaged); attributed = the per-request split (docs/energy.md). CV is "
        "run-to-run over the repeats. Percentiles and CI are of attributed J/request.",
        "",
        "![J per request](j_per_request.png) ![J vs rate](j_vs_rate.png)",
        "",
        "## Checks",
        "",
        "| run | counter total J | attributed + unattributed J | counter delta over run J "
        "| integrated instant power J | instant / counter | cross-check |",
        "|---" * 7 + "|",
    ]
    for c in checks:
        crosscheck = json.dumps(c["crosscheck"]) if c["crosscheck"] else "–"
        lines.append(
            row(
                c["run"],
                fmt(c["energy_j_total"], 6),
                fmt(c["attributed_plus_unattributed"], 6),
                fmt(c["counter_delta_j"], 6),
                fmt(c["integrated_instant_j"], 6),
                fmt(c["instant_over_counter"], 4),
                crosscheck,
            )
        )
    if len(seq):
        ratio = seq["attributed_j"] / seq["counter_window_j"]
        lines += [
            "",
            "Sequential arm, where each request runs alone: attributed energy vs the counter delta over the "
            "request's own window (sent → done) — the known truth up to the counter's 100 ms update step:",
            "",
            f"- requests: {len(seq)}; median duration {fmt(seq['duration_s'].median())} s",
            f"- Σ attributed / Σ counter over windows: "
            f"{fmt(seq['attributed_j'].sum() / seq['counter_window_j'].sum(), 4)}",
            f"- Σ attributed / Σ integrated instant power over windows: "
            f"{fmt(seq['attributed_j'].sum() / seq['instant_window_j'].sum(), 4)}",
            f"- per request attributed / counter: median {fmt(ratio.median(), 4)}, "
            f"p10 {fmt(ratio.quantile(0.1), 4)}, p90 {fmt(ratio.quantile(0.9), 4)}",
        ]
    if args.mock:
        table, data = mock_comparison(arms, find_runs(args.mock), order)
        (out / "mock_comparison.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
        lines += [
            "",
            "## Mock server vs GPU (same plan, refitted profile)",
            "",
            *table,
            "",
            f"Same ranking of arms: **{'yes' if data['same_ranking'] else 'no'}**.",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(out / "README.md")


if __name__ == "__main__":
    main()
