"""The last stage: join the run folder's requests and power and write the reports.

It reads only the folder (as `joulebench report` does), so what the run prints is what a later
`joulebench report RUN` rebuilds. The method and the power counter's resolution go into the manifest
(`energy`) first, so the rebuild uses them too.
"""

from __future__ import annotations

from rich.console import Console

from ..report import read_summary, render_terminal_summary, report_run
from ..runner import RunContext, RunResult
from .state import MeasureState


class ReportStage:
    name = "report"

    def __init__(self, method: str, state: MeasureState, console: Console) -> None:
        self.method = method
        self.state = state
        self.console = console
        self.errors: list[str] = []  # codes of the error flags, for --strict

    def before(self, ctx: RunContext) -> None:
        pass

    def after(self, ctx: RunContext, result: RunResult) -> None:
        energy: dict[str, object] = {"method": self.method}
        if self.state.counter_period_s is not None:
            energy["counter_period_s"] = self.state.counter_period_s
        ctx.folder.update_manifest(energy=energy)
        for note in self.state.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)
        with self.console.status("joining requests and power..."):
            analysis, paths = report_run(ctx.folder.path)
        render_terminal_summary(read_summary(ctx.folder.path), self.console)  # exactly what was written
        self.errors = sorted({f.code for f in analysis.flags if f.severity == "error"})
        self.console.print(f"report: {paths.html}", highlight=False)
