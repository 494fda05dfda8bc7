"""What a folder is, from its files alone: a run or an experiment, the run's own id (not the name of a link
to it, as `runs/latest`), and whether the run read power. Shared by `joulebench ls` and `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.folder import RunFolder
from harness.runfolder.power_file import POWER_FILE

Kind = Literal["run", "experiment"]


def folder_kind(path: Path) -> Kind | None:
    """None for a folder that is neither; OSError where its files cannot be looked up."""
    if (path / ExperimentFolder.SPEC).is_file():
        return "experiment"
    if (path / RunFolder.MANIFEST).is_file() and (path / RunFolder.PLAN).is_file():
        return "run"
    return None


def run_id(folder: RunFolder, manifest: dict[str, Any]) -> str:
    """The manifest's `run_id`, else the folder's own name (links resolved). A manifest's id that is not
    a plain file name is not used: it names the files `export` writes."""
    recorded = manifest.get("run_id")
    if (
        isinstance(recorded, str)
        and recorded not in ("", ".", "..")
        and "\0" not in recorded
        and Path(recorded).name == recorded
    ):
        return recorded
    return folder.path.resolve().name


def has_power(folder: RunFolder, manifest: dict[str, Any]) -> bool:
    """Whether the run read power (its manifest's `power` section, or power.parquet): without its
    summary.json such a run is not reported yet, not a run without power."""
    return bool(manifest.get("power")) or (folder.path / POWER_FILE).is_file()
