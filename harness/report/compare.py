"""`compare`: arms of one or more runs side by side, with bootstrap CIs on the differences.

Each entry is one arm of one run. Differences are taken against a baseline entry (the first, unless
chosen): the difference of mean attributed J per successful request with a bootstrap 95% interval
(the two entries resampled independently), and the same for the all-in figure. The all-in figure is
the mean plus a fixed overhead per success (the window's energy not attributed to successful
requests), so its interval is the mean's, shifted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from foundation.errors import InputError
from harness.energy import AnalysisOptions, BootstrapSpec
from harness.energy.stats import mean_difference
from harness.report.format import fmt_ci, fmt_num, fmt_pct
from harness.report.run_inputs import analyze_run
from harness.report.run_report import summary_document
from harness.report.terminal import wide_console
from harness.runfolder.report_files import ENERGY_FILE, SUMMARY_FILE, read_energy, read_summary

COMPARE_SCHEMA_VERSION = 1


@dataclass
class Entry:
    label: str
    run_id: str
    arm: str
    method: str
    energies: np.ndarray  # attributed J of each successful request
    block: dict  # the arm's (or run's) summary block

    @property
    def all_in(self) -> float | None:
        return (self.block.get("all_in") or {}).get("j_per_request")


def load_entries(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Entry], list[str]]:
    """Entries of every arm of every run; reads summary.json + energy.parquet, or joins the run."""
    entries: list[Entry] = []
    notes: list[str] = []
    multi = len(paths) > 1
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise InputError(f"{path}: no such run folder")
        if (path / SUMMARY_FILE).is_file() and (path / ENERGY_FILE).is_file():
            summary = read_summary(path)
            frame, method = read_energy(path)
        else:
            run, analysis = analyze_run(path, options=AnalysisOptions())
            summary = summary_document(analysis, run.run_id)
            frame, method = analysis.requests, analysis.method
            notes.append(f"{path}: no saved report; joined it now (method {method})")
        run_id = str(summary.get("run_id") or path.name)
        if run_id in seen:
            raise InputError(f"{path}: run {run_id} is listed twice")
        seen.add(run_id)
        ok = (frame["status"].astype(str) == "ok").to_numpy() & ~frame["warmup"].fillna(False).to_numpy(
            dtype=bool
        )
        blocks = summary["arms"] or [summary["run"]]
        for block in blocks:
            rows = (
                ok if block["name"] == "run" else ok & (frame["arm"].astype(str) == block["name"]).to_numpy()
            )
            e = frame["energy_j"].to_numpy(dtype=np.float64)[rows]
            label = f"{run_id}:{block['name']}" if multi else block["name"]
            entries.append(Entry(label, run_id, block["name"], method, e[np.isfinite(e)], block))
    methods = {e.method for e in entries}
    if len(methods) > 1:
        notes.append(
            f"runs were split with different methods ({', '.join(sorted(methods))}): compare with care"
        )
    return entries, notes


def compare(entries: list[Entry], baseline: str | None = None, spec: BootstrapSpec | None = None) -> dict:
    spec = spec or BootstrapSpec()
    if not entries:
        raise InputError("compare: no arms to compare")
    base = _find(entries, baseline) if baseline else entries[0]
    out = []
    for i, e in enumerate(entries):
        jpr = e.block.get("j_per_request") or {}
        all_in = e.block.get("all_in") or {}
        row = {
            "label": e.label,
            "run_id": e.run_id,
            "arm": e.arm,
            "method": e.method,
            "requests_ok": len(e.energies),
            "j_per_request": {"mean": jpr.get("mean"), "ci95": jpr.get("ci95")},
            "all_in": {"j_per_request": all_in.get("j_per_request"), "ci95": all_in.get("ci95")},
            "flags": e.block.get("flags", []),
            "vs_baseline": None,
        }
        if e is not base:
            diff = mean_difference(e.energies, base.energies, spec, streams=(2 * i + 1, 2 * i + 2))
            all_in_diff = None if e.all_in is None or base.all_in is None else e.all_in - base.all_in
            # all-in = mean + a fixed overhead per success, so its interval is the mean's, shifted.
            all_in_ci = None
            mean_diff, ci = diff["diff"], diff["ci95"]
            if all_in_diff is not None and mean_diff is not None and ci is not None:
                all_in_ci = [v + all_in_diff - mean_diff for v in ci]
            row["vs_baseline"] = {
                **diff,
                "significant": None
                if diff["ci95"] is None
                else not (diff["ci95"][0] <= 0 <= diff["ci95"][1]),
                "all_in_diff": all_in_diff,
                "all_in_ci95": all_in_ci,
                "all_in_relative": None
                if all_in_diff is None or not base.all_in
                else all_in_diff / base.all_in,
            }
        out.append(row)
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "baseline": base.label,
        "bootstrap": {"resamples": spec.resamples, "seed": spec.seed},
        "entries": out,
    }


def render_comparison(result: dict, notes: list[str], console: Console | None = None) -> None:
    console = console or wide_console()
    table = Table(title=f"joulebench compare · baseline {result['baseline']}", title_justify="left")
    for col in (
        "arm", "ok", "J/req mean", "95% CI", "Δ vs baseline", "Δ 95% CI", "Δ %", "all-in J/req", "all-in Δ %",
        "method",
    ):  # fmt: skip
        table.add_column(col, justify="left" if col in ("arm", "method") else "right")
    for row in result["entries"]:
        vs = row["vs_baseline"] or {}
        table.add_row(
            row["label"],
            f"{row['requests_ok']:,}",
            fmt_num(row["j_per_request"]["mean"]),
            fmt_ci(row["j_per_request"]["ci95"]),
            "baseline" if row["vs_baseline"] is None else fmt_num(vs.get("diff")),
            fmt_ci(vs.get("ci95")),
            fmt_pct(vs.get("relative")),
            fmt_num(row["all_in"]["j_per_request"]),
            fmt_pct(vs.get("all_in_relative")),
            row["method"],
            style="bold" if vs.get("significant") else None,
        )
    console.print(table)
    console.print("[dim]bold: the 95% CI of the difference excludes zero[/dim]")
    for note in notes:
        console.print(f"[yellow]{escape('note: ' + note)}[/yellow]", highlight=False)
    for row in result["entries"]:
        bad = [
            f for f in row["flags"] if f in ("no_power_data", "no_successful_requests", "power_outside_run")
        ]
        if bad:
            console.print(
                f"[red]{row['label']}: {', '.join(bad)} (see its summary.json)[/red]", highlight=False
            )


def _find(entries: list[Entry], key: str) -> Entry:
    exact = [e for e in entries if e.label == key]
    if exact:
        return exact[0]
    by_arm = [e for e in entries if e.arm == key]
    if len(by_arm) == 1:
        return by_arm[0]
    choices = ", ".join(e.label for e in entries)
    if len(by_arm) > 1:
        raise InputError(f"--baseline {key}: several runs have arm {key!r}; use RUN_ID:ARM ({choices})")
    raise InputError(f"--baseline {key}: no such arm (choose from {choices})")
