"""Reports of a run: summary.json, energy.parquet, a self-contained report.html, terminal tables, compare."""

from .compare import compare, load_entries, render_comparison
from .files import ReportPaths, read_energy, read_summary, summary_document, write_run_reports
from .run_inputs import RunInputs, analyze_run, load_run
from .run_report import report_run
from .terminal import cheapest_arm, render_terminal_summary

__all__ = [
    "ReportPaths",
    "RunInputs",
    "analyze_run",
    "cheapest_arm",
    "compare",
    "load_entries",
    "load_run",
    "read_energy",
    "read_summary",
    "render_comparison",
    "render_terminal_summary",
    "report_run",
    "summary_document",
    "write_run_reports",
]
