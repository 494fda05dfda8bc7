"""What a run folder holds, as Python objects: `open_run` (and `open_experiment` for an experiment folder).

The tables are the ones `joulebench export` writes (harness/cli/export_tables.py): the same columns, and
the same rules (an arm whose power is incomplete has no energy figure; a run without power has latency
only), so a notebook and a spreadsheet see the same numbers.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from foundation.errors import InputError
from harness.cli.export_tables import arm_table, request_table, run_or_experiment
from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.folder_kind import run_id
from harness.runfolder.power_file import POWER_FILE, load_power
from harness.runfolder.report_files import REPORT_FILE, SUMMARY_FILE, read_summary

# The arms' columns a notebook shows first (every column is in `.arms`).
SHOWN_ARM_COLUMNS = (
    "arm", "requests", "ok", "j_per_request_all_in", "all_in_ci95_low", "all_in_ci95_high",
    "mean_power_w", "e2e_p50_s", "lateness_p99_ms", "flags",
)  # fmt: skip


@dataclass(frozen=True, repr=False)
class RunResult:
    """One run folder. `status` is what `joulebench run` would have exited with (0, or 1: strict and an
    error flag); None for a folder opened, not run here."""

    path: Path  # absolute (`runs/latest` opened: the run folder it points to)
    run_id: str
    manifest: dict[str, Any]
    summary: dict[str, Any] | None  # summary.json; None: a run without power (latency only)
    requests: pd.DataFrame = field(compare=False)  # one row per planned request, its energy joined
    arms: pd.DataFrame = field(compare=False)  # one row per arm, as `joulebench export` writes it
    power: pd.DataFrame | None = field(compare=False)  # power.parquet: gpu, t_ns, energy_j, power_w
    status: int | None = None

    @property
    def flags(self) -> list[dict[str, Any]]:
        """summary.json's flags (code, severity, message, scope). A run without power has no summary:
        its arms' flags are in `arms["flags"]`."""
        return list(self.summary.get("flags", [])) if self.summary else []

    @property
    def report_html(self) -> Path | None:
        return _report_html(self.path)

    def __repr__(self) -> str:
        codes = [f["code"] for f in self.flags]
        return (
            f"RunResult(run_id={self.run_id!r}, path={str(self.path)!r}, arms={len(self.arms)}, "
            f"flags={codes})"
        )

    def _repr_html_(self) -> str:
        shown = self.arms[[c for c in SHOWN_ARM_COLUMNS if c in self.arms.columns]]
        flags = "".join(
            f"<li><b>{html.escape(str(f.get('severity')))}</b> {html.escape(str(f.get('code')))}: "
            f"{html.escape(str(f.get('message', '')))}</li>"
            for f in self.flags
        )
        report = (
            f' · <a href="{html.escape(str(self.report_html))}">report.html</a>' if self.report_html else ""
        )
        return (
            f"<div><b>joulebench run {html.escape(self.run_id)}</b> · <code>{html.escape(str(self.path))}"
            f"</code>{report}{shown.to_html(index=False, na_rep='—')}"
            + (f"<ul>{flags}</ul>" if flags else "")
            + "</div>"
        )


def _report_html(folder: Path) -> Path | None:
    path = folder / REPORT_FILE
    return path if path.is_file() else None


def open_run(path: str | os.PathLike[str]) -> RunResult:
    """A run folder's summary and tables; InputError (one line) for a folder that is not a run's."""
    return read_run(Path(path), None)


def read_run(path: Path, status: int | None) -> RunResult:
    if run_or_experiment(path) == "experiment":
        raise InputError(f"{path}: an experiment folder (open it with joulebench.open_experiment)")
    folder = RunFolder.open(path)
    manifest = folder.manifest()
    name = run_id(folder, manifest)
    return RunResult(
        path=path.resolve(),  # absolute: it outlives a later os.chdir
        run_id=name,
        manifest=manifest,
        summary=read_summary(path) if (path / SUMMARY_FILE).is_file() else None,
        requests=request_table(folder),
        arms=arm_table(folder, name),
        power=_power(path),
        status=status,
    )


def _power(path: Path) -> pd.DataFrame | None:
    if not (path / POWER_FILE).is_file():
        return None
    frames = [
        pd.DataFrame({"gpu": s.gpu, "t_ns": s.t_ns, "energy_j": s.energy_j, "power_w": s.power_w})
        for s in load_power(path).series
    ]
    columns = ["gpu", "t_ns", "energy_j", "power_w"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


@dataclass(frozen=True, repr=False)
class ExperimentResult:
    """One experiment folder: its cells table (one row per repeat x rate x arm, each a run folder under
    `path / "runs"`, opened with `open_run`) and its report's summary."""

    path: Path
    experiment_id: str
    cells: pd.DataFrame = field(compare=False)
    summary: dict[str, Any] | None  # experiment_summary.json; None until the experiment is reported

    @property
    def report_html(self) -> Path | None:
        return _report_html(self.path)

    def __repr__(self) -> str:
        shown = f"experiment_id={self.experiment_id!r}, path={str(self.path)!r}, cells={len(self.cells)}"
        return f"ExperimentResult({shown})"


def open_experiment(path: str | os.PathLike[str]) -> ExperimentResult:
    """An experiment folder's cells and summary; InputError (one line) for any other folder."""
    path = Path(path)
    if run_or_experiment(path) == "run":
        raise InputError(f"{path}: a run folder (open it with joulebench.open_run)")
    experiment = ExperimentFolder.open(path)
    if not experiment.has_cells():
        raise InputError(f"{path}: no {ExperimentFolder.CELLS} yet (no cell has run)")
    summary_path = path / ExperimentFolder.SUMMARY
    return ExperimentResult(
        path=path.resolve(),  # absolute: it outlives a later os.chdir
        experiment_id=experiment.experiment_id,
        cells=experiment.read_cells(),
        summary=experiment.read_summary() if summary_path.is_file() else None,
    )
