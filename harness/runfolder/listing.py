"""One line's worth of each run and experiment folder in a folder, for `joulebench ls`.

Read from the files alone, never recomputed: a run's headline is its summary.json (the all-in J per
successful request of each arm, the figure the run's verdict uses), else what its manifest says (no
power source; not reported yet). A folder that cannot be read is listed with why, not skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.folder import RunFolder
from harness.runfolder.folder_kind import Kind, folder_kind, has_power
from harness.runfolder.latest import LATEST
from harness.runfolder.report_files import SUMMARY_FILE, read_summary


@dataclass
class Entry:
    name: str
    kind: str  # "run", "experiment"; "" where the folder cannot be looked into
    started: datetime | None = None  # UTC
    label: str = ""
    arms: int | None = None
    requests: str = "-"  # "ok/total", or for an experiment "done/total cells"
    headline: list[str] = field(default_factory=list)  # per arm: "NAME J" or why there is none
    errors: list[str] = field(default_factory=list)  # error flags' codes, or why it is unreadable


def list_folder(folder: Path) -> tuple[list[Entry], int]:
    """The runs and experiments in `folder`, newest first, and how many folders are neither."""
    if not RunFolder.is_folder(folder):
        raise InputError(f"{folder}: no such folder")
    try:
        kind = folder_kind(folder)
        if kind:  # a run or an experiment itself: its own line, under its own name (not a link's)
            return [_entry(folder, folder.resolve().name, kind)], 0
        children = sorted(p for p in folder.iterdir() if p.name != LATEST or not p.is_symlink())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list it ({exc.strerror})") from None
    entries: list[Entry] = []
    neither = 0
    for path in children:
        try:
            if not path.is_dir():
                continue
            kind = folder_kind(path)
        except OSError as exc:  # no permission, a name too long: listed with why, the others still are
            entries.append(Entry(path.name, "", errors=[f"unreadable: {exc.strerror}"]))
            continue
        if kind is None:
            neither += 1
        else:
            entries.append(_entry(path, path.name, kind))
    epoch = datetime.fromtimestamp(0, timezone.utc)
    entries.sort(key=lambda e: (e.started or epoch, e.name), reverse=True)
    return entries, neither


def _entry(path: Path, name: str, kind: Kind) -> Entry:
    entry = Entry(name, kind)
    try:
        if kind == "experiment":
            _experiment(ExperimentFolder(path), entry)
        else:
            _run(RunFolder(path), entry)
    except OSError as exc:  # no permission, gone since listed
        entry.errors = [f"unreadable: {exc.strerror or exc}"]
    except (InputError, ValueError, KeyError, TypeError) as exc:
        entry.errors = [f"unreadable: {exc}"]
    if entry.started is None:  # no start recorded: when the folder was made, near enough to order it
        try:
            entry.started = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
        except OSError as exc:  # gone since listed
            entry.errors = [f"unreadable: {exc.strerror}"]
    return entry


def _run(folder: RunFolder, entry: Entry) -> None:
    manifest = folder.manifest()
    entry.label = str(manifest.get("label") or "")
    entry.started = _utc(_get(manifest, "clock", "start_utc"))
    # The plan's arms; a folder made by hand or by an older joulebench may have only their windows.
    arms = _get(manifest, "plan", "arms") or manifest.get("arms")
    entry.arms = len(arms) if isinstance(arms, list) and arms else None
    records = manifest.get("records") or {}
    if records:  # "?" for what it does not say (a recovered or older run's)
        counts = records.get("status_counts")
        ok = counts.get("ok", 0) if isinstance(counts, dict) else "?"
        entry.requests = f"{ok}/{'?' if records.get('rows') is None else records['rows']}"
    if not (folder.path / SUMMARY_FILE).is_file():
        entry.headline = ["not reported (joulebench report)" if has_power(folder, manifest) else "no power"]
        return
    summary = read_summary(folder.path)
    requests = summary["run"]["requests"]
    entry.requests = f"{requests['ok']}/{requests['total']}"
    entry.headline = [_headline(block) for block in summary["arms"]]
    entry.errors = sorted({f["code"] for f in summary.get("flags", []) if f.get("severity") == "error"})


def _headline(block: dict[str, Any]) -> str:
    value = (block.get("all_in") or {}).get("j_per_request")
    if value is not None:
        return f"{block['name']} {value:.2f} J"
    incomplete = (block.get("power_coverage") or {}).get("complete") is False
    return f"{block['name']} {'incomplete' if incomplete else '-'}"


def _experiment(folder: ExperimentFolder, entry: Entry) -> None:
    entry.label = str(folder.spec_data().get("name") or "")
    if not folder.has_cells():
        entry.requests = "no cells yet"
        return
    cells = folder.read_cells()
    entry.arms = int(cells["arm"].nunique())
    done = int((cells["status"] == "done").sum())
    entry.requests = f"{done}/{len(cells)} cells done"
    # As times, not as text: cells written with different offsets or precisions order by when they began.
    started = [t for t in (_utc(s) for s in cells["started_utc"].dropna()) if t is not None]
    entry.started = min(started) if started else None
    failed = int((cells["exit_code"].fillna(0) != 0).sum())
    if failed:
        entry.errors = [f"{failed} cells exited non-zero"]


def _get(doc: dict[str, Any], *keys: str) -> Any:
    node: Any = doc
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _utc(text: Any) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp.astimezone(timezone.utc) if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
