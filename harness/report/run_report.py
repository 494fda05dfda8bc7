"""One call from a run folder to its reports: what `joulebench report` and the end of `joulebench run` do."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from harness.energy import Analysis, AnalysisOptions

from .files import ReportPaths, summary_document, write_run_reports
from .run_inputs import analyze_run
from .terminal import render_terminal_summary


def report_run(
    run_dir: str | os.PathLike,
    *,
    method: str | None = None,
    idle_mode: str | None = None,
    options: AnalysisOptions | None = None,
    console: Console | None = None,
) -> tuple[Analysis, ReportPaths]:
    """Join the run folder, write summary.json, energy.parquet and report.html into it, and print the
    terminal summary on `console` (nothing is printed when it is None)."""
    inputs, analysis = analyze_run(run_dir, method=method, idle_mode=idle_mode, options=options)
    paths = write_run_reports(Path(run_dir), analysis, run_id=inputs.run_id)
    if console is not None:
        render_terminal_summary(summary_document(analysis, inputs.run_id), console)
    return analysis, paths
