"""The experiment's report from its cells table: experiment_summary.json, report.html, the PNGs, and
the same figures on the terminal (all drawn from one document, so they agree)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from harness.experiment.conduct import resolved_data
from harness.experiment.definition import ExperimentSpec
from harness.report.experiment_report import ExperimentView, experiment_document, experiment_table
from harness.report.terminal import wide_console
from harness.runfolder.experiment_files import ExperimentFolder


def experiment_view(folder: ExperimentFolder, spec: ExperimentSpec, cells: pd.DataFrame) -> ExperimentView:
    """What the report says besides the cells: the experiment's id, title and settings."""
    design = {
        **resolved_data(spec),
        "target": spec.target.describe(),
        "simulated": spec.target.kind == "embedded",
    }
    repeats = int(cells["repeat"].max()) if len(cells) else 0
    return ExperimentView(
        experiment_id=folder.experiment_id,
        title=f"Experiment {spec.name}: {len(spec.arm_names)} arms x {len(spec.rate_list)} rate(s), "
        f"{repeats} repeats",
        design=design,
        metric=spec.metric,
        arm_order=tuple(spec.arm_names),
    )


def write_experiment_report(folder: ExperimentFolder, spec: ExperimentSpec, console: Console) -> Path:
    """Write the report files; the table goes to stdout (as `joulebench run`'s does), notes to `console`."""
    from harness.report.experiment_plots import experiment_images  # matplotlib only when drawing
    from harness.report.experiment_report import render_experiment_html

    cells = folder.read_cells()
    doc = experiment_document(cells, experiment_view(folder, spec, cells))
    images = experiment_images(doc)
    page = folder.write_report(
        doc, render_experiment_html(doc, cells, images), {i.file_name: i.png for i in images}
    )
    wide_console().print(experiment_table(doc))
    console.print(f"report: {page}", highlight=False)
    return page
