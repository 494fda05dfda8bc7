"""One call from a run folder to its reports: what `joulebench report` and the end of `joulebench run` do."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import __version__
from harness.energy import Analysis, AnalysisOptions
from harness.energy.client_load import add_runner_figures
from harness.report.gpu_telemetry import add_gpu_telemetry
from harness.report.host_gpus import add_host_gpus
from harness.report.run_facts import RunFacts
from harness.report.run_inputs import RunInputs, analyze_run
from harness.report.terminal import render_terminal_summary
from harness.runfolder.report_files import write_energy, write_report_html, write_summary
from harness.runfolder.server_metrics_file import server_load


@dataclass(frozen=True)
class ReportPaths:
    summary: Path
    energy: Path
    html: Path | None  # None: the page was not asked for (an experiment's cells may skip it)


def summary_document(analysis: Analysis, run_id: str) -> dict[str, Any]:
    """The summary.json document: the analysis summary plus where and when it was made."""
    return {
        "run_id": run_id,
        "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "joulebench": __version__,
        **analysis.summary,
    }


def write_run_reports(
    run_dir: str | os.PathLike[str],
    analysis: Analysis,
    facts: RunFacts,
    run_id: str | None = None,
    html: bool = True,
) -> ReportPaths:
    """Write summary.json, energy.parquet and (with `html`) report.html into `run_dir` (atomically, each);
    `facts`: what was measured (target, engine, GPUs, ...), which the page states at its top."""
    run_dir = Path(run_dir)
    doc = summary_document(analysis, run_id or run_dir.name)
    summary = write_summary(run_dir, doc)
    energy = write_energy(run_dir, analysis.requests, analysis.method)
    if not html:
        return ReportPaths(summary=summary, energy=energy, html=None)
    from harness.report.html import render_html  # matplotlib is imported only when a report is drawn

    load = server_load(run_dir)  # requests running/waiting from the server's metrics, if scraped
    page = write_report_html(run_dir, render_html(doc, analysis, facts, load))
    return ReportPaths(summary=summary, energy=energy, html=page)


def analyze_folder(
    run_dir: str | os.PathLike[str],
    *,
    method: str | None = None,
    idle_mode: str | None = None,
    options: AnalysisOptions | None = None,
) -> tuple[RunInputs, Analysis]:
    """The join of the run folder and what only the folder has beyond it, with their flags: the host's
    GPUs left out of the join and failed reads, GPU telemetry and RAPL energy, and the runner's own
    figures (loop lag, CPU: in the manifest, not in the request log the join reads)."""
    inputs, analysis = analyze_run(run_dir, method=method, idle_mode=idle_mode, options=options)
    add_host_gpus(analysis, run_dir, inputs.manifest)
    add_gpu_telemetry(analysis, run_dir, inputs.manifest)
    add_runner_figures(analysis.summary, analysis.flags, inputs.manifest)
    return inputs, analysis


def report_run(
    run_dir: str | os.PathLike[str],
    *,
    method: str | None = None,
    idle_mode: str | None = None,
    options: AnalysisOptions | None = None,
    console: Console | None = None,
    html: bool = True,
) -> tuple[Analysis, ReportPaths]:
    """Join the run folder, write summary.json, energy.parquet and report.html into it, and print the
    terminal summary on `console` (nothing is printed when it is None)."""
    inputs, analysis = analyze_folder(run_dir, method=method, idle_mode=idle_mode, options=options)
    paths = write_run_reports(Path(run_dir), analysis, inputs.facts, run_id=inputs.run_id, html=html)
    if console is not None:
        render_terminal_summary(summary_document(analysis, inputs.run_id), console)
    return analysis, paths
