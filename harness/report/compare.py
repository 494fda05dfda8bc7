"""`compare`: arms of one or more runs side by side, with bootstrap CIs on the differences.

Each entry is one arm of one run. Differences are taken against a baseline entry (the first, unless
chosen): the difference of mean attributed J per successful request with a bootstrap 95% interval
(the two entries resampled independently), and the same for the all-in figure. The all-in figure is
the mean plus a fixed overhead per success (the window's energy not attributed to successful
requests), so its interval is the mean's, shifted.

An entry with an error flag (incomplete power, late sends, no power, no success) is shown with its
figures, but no difference involving it is called significant, and one line says why.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from foundation.errors import InputError
from harness.energy import AnalysisOptions, BootstrapSpec
from harness.energy.stats import mean_difference
from harness.report.format import fmt_ci, fmt_num, fmt_pct
from harness.report.run_report import analyze_folder, summary_document
from harness.report.terminal import NO_VERDICT, all_in_cell, error_codes, wide_console
from harness.runfolder import RunFolder
from harness.runfolder.report_files import ENERGY_FILE, SUMMARY_FILE, read_energy, read_summary
from harness.runfolder.run_paths import distinct_run_paths

COMPARE_SCHEMA_VERSION = 1


@dataclass
class Entry:
    label: str
    run_id: str
    arm: str
    method: str
    energies: np.ndarray  # attributed J of each successful request
    block: dict  # the arm's (or run's) summary block
    errors: list[str]  # codes of the error flags that concern it (its own, the run's, a GPU's)

    @property
    def all_in(self) -> float | None:
        return (self.block.get("all_in") or {}).get("j_per_request")

    @property
    def partial(self) -> bool:
        """Power covered only part of its window (its per-request figures are of that part)."""
        return (self.block.get("power_coverage") or {}).get("complete") is False


def load_entries(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Entry], list[str]]:
    """Entries of every arm of every run; reads summary.json + energy.parquet, or joins the run."""
    entries: list[Entry] = []
    notes: list[str] = []
    multi = len(paths) > 1
    seen: set[str] = set()
    for path in distinct_run_paths(paths):
        if not RunFolder.is_folder(path):
            raise InputError(f"{path}: no such run folder")
        if (path / SUMMARY_FILE).is_file() and (path / ENERGY_FILE).is_file():
            summary = read_summary(path)
            frame, method = read_energy(path)
        else:
            run, analysis = analyze_folder(path, options=AnalysisOptions())
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
        errors = error_codes(summary)
        for block in blocks:
            mine = _concerning(errors, block["name"], bool(summary["arms"]))
            rows = (
                ok if block["name"] == "run" else ok & (frame["arm"].astype(str) == block["name"]).to_numpy()
            )
            e = frame["energy_j"].to_numpy(dtype=np.float64)[rows]
            label = f"{run_id}:{block['name']}" if multi else block["name"]
            entries.append(Entry(label, run_id, block["name"], method, e[np.isfinite(e)], block, mine))
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
            "errors": e.errors,
            "power_coverage": e.block.get("power_coverage"),
            "vs_baseline": None,
        }
        if e is not base:
            row["vs_baseline"] = _versus(e, base, spec, i)
        out.append(row)
    flagged = "; ".join(f"{e.label}: {', '.join(e.errors)}" for e in entries if e.errors)
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "baseline": base.label,
        "bootstrap": {"resamples": spec.resamples, "seed": spec.seed},
        "entries": out,
        "no_verdict": f"{NO_VERDICT}: error flags ({flagged}); no difference with them is called significant"
        if flagged and len(entries) > 1
        else None,
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
            all_in_cell(row),
            fmt_pct(vs.get("all_in_relative")),
            row["method"],
            style="bold" if vs.get("significant") else "red" if row["errors"] else None,
        )
    console.print(table)
    console.print("[dim]bold: the 95% CI of the difference excludes zero[/dim]")
    for note in notes:
        console.print(f"[yellow]{escape('note: ' + note)}[/yellow]", highlight=False)
    for row in result["entries"]:
        if row["errors"]:
            text = escape(f"{row['label']}: {', '.join(row['errors'])} (see its summary.json)")
            console.print(f"[red]{text}[/red]", highlight=False)
    if result["no_verdict"]:
        console.print(f"[bold red]{escape(result['no_verdict'])}[/bold red]", highlight=False)


def _versus(e: Entry, base: Entry, spec: BootstrapSpec, i: int) -> dict:
    """`e` against the baseline: the difference of means with its CI, and of the all-in figures."""
    if e.partial or base.partial:
        # A mean over the part of an arm under power is not that arm's: no difference is taken.
        return dict.fromkeys(
            ("diff", "ci95", "relative", "significant", "all_in_diff", "all_in_ci95", "all_in_relative")
        )
    diff = mean_difference(e.energies, base.energies, spec, streams=(2 * i + 1, 2 * i + 2))
    all_in_diff = None if e.all_in is None or base.all_in is None else e.all_in - base.all_in
    # all-in = mean + a fixed overhead per success, so its interval is the mean's, shifted.
    all_in_ci = None
    mean_diff, ci = diff["diff"], diff["ci95"]
    if all_in_diff is not None and mean_diff is not None and ci is not None:
        all_in_ci = [v + all_in_diff - mean_diff for v in ci]
    return {
        **diff,
        # An error flag on either side: the difference is shown, but none is claimed.
        "significant": None if ci is None or e.errors or base.errors else not (ci[0] <= 0 <= ci[1]),
        "all_in_diff": all_in_diff,
        "all_in_ci95": all_in_ci,
        "all_in_relative": None if all_in_diff is None or not base.all_in else all_in_diff / base.all_in,
    }


def _concerning(errors: dict[str, list[str]], name: str, is_arm: bool) -> list[str]:
    """The error codes that concern a block: an arm's own, the run's and every GPU's (a GPU's power
    feeds every arm); the run block's, all of them."""
    scopes = [s for s in errors if not is_arm or s in (name, "run") or s.startswith("gpu ")]
    return sorted({code for scope in scopes for code in errors[scope]})


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
