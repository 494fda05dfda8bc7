#!/usr/bin/env python3
"""Turn the GPU experiment's run folders into the results page (issue 8).

Reads the repeats of one plan (run folders written by `joulebench run`, as `experiment.sh` leaves
them), and writes into --out:
  README.md              per-arm table over the repeats, checks, versions, the commands
  arms.csv               the per-arm, per-repeat figures behind the table
  sequential_check.csv   sequential arm: each request's attributed energy vs raw instant power over its window
  sequential_blocks.csv  sequential arm, blocks of 20 requests: attributed + gaps vs the Prometheus counter
  mock_comparison.json   with --mock: per arm, the mock's all-in J/request against the GPU's, and the ranks
  j_per_request.png      all-in and attributed J/request per arm, one dot per repeat
  j_vs_rate.png          J/request against realized rate
With --mock PROFILE=DIR (repeatable), the same plan replayed against the mock server
(`replay_on_mock.sh`): per-arm ratio mock/GPU and whether the mock ranks the arms the same way.

Usage: python benchmarks/gpu/analyze.py --runs DIR [DIR ...] --out docs/results/NAME \
           [--machine machine.txt] [--intro intro.md] [--mock PROFILE=DIR ...] [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.power.series import EnergySeries
from harness.runfolder import RunFolder
from harness.runfolder.power_file import POWER_FILE, load_power
from harness.runfolder.report_files import read_energy, read_summary


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
    summary = read_summary(run)
    rows = []
    for arm in summary["arms"]:
        name = arm["name"]
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
    summary = read_summary(run)
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
        "integrated_instant_j": integrated_j,
        "instant_over_counter": integrated_j / counter_j if counter_j else np.nan,
        "crosscheck": crosscheck(run),
    }


def crosscheck(run: Path) -> str | None:
    """The other power sources' energy over the run relative to the primary (from the manifest)."""
    sources = RunFolder.open(run).manifest().get("power", {}).get("sources", [])
    parts = [
        f"{s['kind']} {100 * s['difference_vs_primary']:+.2f}%"
        for s in sources
        if s.get("role") == "cross-check" and s.get("difference_vs_primary") is not None
    ]
    return ", ".join(parts) or None


def _cumulative_instant(t_ns: np.ndarray, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(power_w)
    t, p = t_ns[ok], power_w[ok]
    return t, np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(t) / 1e9)])


def sequential_check(
    run: Path, arm: str = "sequential", block: int = 20
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sequential arm, where one request at a time runs and its energy is known independently.

    Per request: attributed energy vs the integral of the raw instant-power readings (NVML field 186,
    10 Hz) over its own window. The join's series is the counter shaped by that same power, so this
    checks the split, not the counter; the NVML counter itself updates every ~100 ms and cannot
    resolve a ~0.3 s request. Per block of `block` consecutive requests (several seconds): their
    attributed energy plus the unattributed gaps between them vs the raw counter as Prometheus
    scraped it (1 s), an independent path from the GPU to the number.
    """
    energy, _ = read_energy(run)
    requests = RunFolder.open(run).requests()
    merged = energy.merge(requests[["request_id", "sent_ns", "done_ns"]], on="request_id")
    merged = merged[(merged["arm"] == arm) & (merged["status"] == "ok") & ~merged["warmup"]]
    merged = merged.sort_values("sent_ns")
    sent = merged["sent_ns"].to_numpy(dtype=np.int64)
    done = merged["done_ns"].to_numpy(dtype=np.int64)
    attributed = merged["energy_j"].to_numpy(dtype=float)
    power = load_power(run).series
    instant = np.zeros(len(merged))
    for series in power:
        t, cum = _cumulative_instant(series.t_ns, series.power_w)
        instant += np.interp(done, t, cum) - np.interp(sent, t, cum)

    per_request = pd.DataFrame(
        {
            "run": run.name,
            "request_id": merged["request_id"].to_numpy(),
            "duration_s": (done - sent) / 1e9,
            "attributed_j": attributed,
            "instant_window_j": instant,
        }
    )
    prom_dir = run / "power_sources" / "prometheus"
    blocks = []
    if (prom_dir / POWER_FILE).is_file():
        prom = load_power(prom_dir).series
        for k in range(0, len(merged) - block + 1, block):
            a, b = int(sent[k]), int(done[k + block - 1])
            inside = slice(k, k + block)
            # The gaps between consecutive requests hold idle power only, which the join leaves
            # unattributed: the block's energy is its requests' plus those gaps'.
            in_requests = sum(
                _counter_j(power, int(x), int(y)) for x, y in zip(sent[inside], done[inside], strict=True)
            )
            gaps = _counter_j(power, a, b) - in_requests
            blocks.append(
                {
                    "run": run.name,
                    "first_request": int(merged["request_id"].iloc[k]),
                    "duration_s": (b - a) / 1e9,
                    "attributed_plus_gaps_j": attributed[inside].sum() + gaps,
                    "prometheus_counter_j": _counter_j(prom, a, b),
                }
            )
    return per_request, pd.DataFrame(blocks)


def _counter_j(series: list[EnergySeries], a: int, b: int) -> float:
    """The energy counter's increase from a to b, summed over the GPUs."""
    return sum(float(np.interp(b, s.t_ns, s.energy_j) - np.interp(a, s.t_ns, s.energy_j)) for s in series)


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
        "attributed Wh/req",
        "all-in J/out-token",
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


# The arrival-shaping paper's fixed 500 ms figure (TGI, Llama 3.1-8B, one H100; its section on
# arrival patterns): Wh per request, as it states it.
PAPER_FIXED_500MS_WH = 1.1e-3


def idle_floor_note(runs: list[Path], arm: str = "fixed-500ms") -> str:
    """Why the paper's per-request figure is not all-in: idle power alone over `arm`'s window, per request,
    from the runs' own idle estimate (empty when the runs have no such arm)."""
    floors, idle = [], []
    for run in runs:
        summary = read_summary(run)
        block = next((a for a in summary["arms"] if a["name"] == arm), None)
        idle_w = _get(summary, "idle", "power_w")
        if block is None or not np.isfinite(idle_w) or not _get(block, "requests", "ok"):
            continue
        idle.append(idle_w)
        floors.append(idle_w * block["window"]["duration_s"] / block["requests"]["ok"])
    if not floors:
        return ""
    paper_j = PAPER_FIXED_500MS_WH * 3600
    return (
        f" The paper reports {PAPER_FIXED_500MS_WH * 1e3:g}×10⁻³ Wh ({fmt(paper_j)} J) per request at a "
        f"fixed 500 ms spacing; on this GPU idle power alone ({fmt(np.mean(idle))} W) over the `{arm}` "
        f"window comes to {fmt(np.mean(floors))} J per request, so the paper's figure lies below the idle "
        "floor: it excludes the idle between requests and is not comparable with the all-in figures here."
    )


def mock_comparison(
    gpu: pd.DataFrame, mocks: dict[str, list[Path]], order: list[str]
) -> tuple[list[str], dict]:
    """Per arm: all-in J/request on the GPU and on each mock profile, their ratio, and the ranks."""
    g = gpu.groupby("arm")["all_in_j"].mean()
    m = {
        label: pd.DataFrame([r for run in runs for r in arm_rows(run)]).groupby("arm")["all_in_j"].mean()
        for label, runs in mocks.items()
    }
    names = [n for n in order if all(n in v.index for v in m.values())]
    g_rank = g[names].rank().astype(int)
    ranks = {label: v[names].rank().astype(int) for label, v in m.items()}
    cells = ["arm", "GPU all-in J/req", "GPU rank"]
    for label in m:
        cells += [f"{label} J/req", f"{label} / GPU", f"{label} rank"]
    lines = header(*cells)
    for name in names:
        values = [name, fmt(g[name]), g_rank[name]]
        for label, v in m.items():
            values += [fmt(v[name]), fmt(v[name] / g[name]), ranks[label][name]]
        lines.append(row(*values))
    data = {
        label: {
            "arms": {n: {"gpu": g[n], "mock": v[n], "ratio": v[n] / g[n]} for n in names},
            "same_ranking": bool((g_rank == ranks[label]).all()),
        }
        for label, v in m.items()
    }
    return lines, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--machine", type=Path)
    ap.add_argument(
        "--mock", action="append", default=[], metavar="PROFILE=DIR", help="the plan replayed on the mock"
    )
    ap.add_argument("--title", default="Energy per request across arrival schedules")
    ap.add_argument("--intro", type=Path, help="markdown placed under the title (setup, commands, reading)")
    args = ap.parse_args()

    runs = find_runs(args.runs)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    arms = pd.DataFrame([row for run in runs for row in arm_rows(run)])
    order = list(dict.fromkeys(arms["arm"]))
    arms.to_csv(out / "arms.csv", index=False)
    checks = [window_checks(run) for run in runs]
    seq = blocks = pd.DataFrame()
    if "sequential" in order:
        parts = [sequential_check(run) for run in runs]
        seq = pd.concat([p for p, _ in parts], ignore_index=True)
        blocks = pd.concat([b for _, b in parts], ignore_index=True)
        seq.to_csv(out / "sequential_check.csv", index=False)
        blocks.to_csv(out / "sequential_blocks.csv", index=False)
    plot(arms, out, order)

    manifest = RunFolder.open(runs[0]).manifest()
    lines = [f"# {args.title}", ""]
    if args.intro:
        lines += [args.intro.read_text().strip(), ""]
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
        f"Plan hash `{manifest['plan']['hash'][:16]}`; {len(runs)} repeats "
        f"({', '.join(r.name for r in runs)}).",
        "",
        "## Per arm",
        "",
        *arm_table(arms, order),
        "",
        "All-in J/request = the arm window's counter energy / successful requests (idle between requests "
        "included); attributed = the per-request split (docs/energy.md); attributed Wh/req is the "
        "attributed mean in Wh, not all-in (all-in Wh = all-in J / 3600)." + idle_floor_note(runs) + " CV is "
        "run-to-run over the repeats. Percentiles and CI are of attributed J/request.",
        "",
        "![J per request](j_per_request.png) ![J vs rate](j_vs_rate.png)",
        "",
        "## Checks",
        "",
        "Energy over each whole run (idle windows excluded): the join's total, which the sidecar's "
        "energy counter anchors; the same counter read through Prometheus (an independent path: "
        "scraped every 1 s, stored, queried back); and the integral of the raw instant-power readings "
        "(NVML field 186, 10 Hz), which do not depend on the counter at all.",
        "",
        *header(
            "run",
            "total J (sidecar counter)",
            "attributed + unattributed J",
            "Prometheus counter vs total",
            "∫ instant power J",
            "instant / counter",
        ),
    ]
    for c in checks:
        lines.append(
            row(
                c["run"],
                fmt(c["energy_j_total"], 7),
                fmt(c["attributed_plus_unattributed"], 7),
                c["crosscheck"] or "–",
                fmt(c["integrated_instant_j"], 7),
                fmt(c["instant_over_counter"], 4),
            )
        )
    if len(seq):
        ratio = seq["attributed_j"] / seq["instant_window_j"]
        block_ratio = blocks["attributed_plus_gaps_j"] / blocks["prometheus_counter_j"]
        lines += [
            "",
            "**Sequential arm, where the truth is known** (one request on the GPU at a time, so all energy "
            "in its window is its own):",
            "",
            f"- per request ({len(seq)} requests, median {fmt(seq['duration_s'].median())} s): attributed "
            f"energy / ∫ raw instant power over the request's own window: median {fmt(ratio.median(), 4)}, "
            f"p10 {fmt(ratio.quantile(0.1), 4)}, p90 {fmt(ratio.quantile(0.9), 4)} "
            "(`sequential_check.csv`). The counter updates every ~100 ms and cannot resolve one request, "
            "so the instant power is the reference here.",
            f"- per block of 20 consecutive requests ({len(blocks)} blocks, median "
            f"{fmt(blocks['duration_s'].median())} s): attributed energy plus the idle gaps between the "
            "requests / the counter through Prometheus over the block: "
            f"median {fmt(block_ratio.median(), 4)}, "
            f"min {fmt(block_ratio.min(), 4)}, max {fmt(block_ratio.max(), 4)} (`sequential_blocks.csv`).",
        ]
    if args.mock:
        mocks = {label: find_runs([Path(d)]) for label, d in (m.split("=", 1) for m in args.mock)}
        table, data = mock_comparison(arms, mocks, order)
        (out / "mock_comparison.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
        verdicts = ", ".join(f"{k}: {'yes' if v['same_ranking'] else 'no'}" for k, v in data.items())
        lines += [
            "",
            "## Mock server vs GPU (same plan, `benchmarks/gpu/replay_on_mock.sh`)",
            "",
            *table,
            "",
            f"Same ranking of the arms as the GPU: {verdicts}.",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(out / "README.md")


if __name__ == "__main__":
    main()
