"""Run folders given on a command line, as a glob over an `--out` folder gives them.

Such a glob also matches `<out>/latest`, the link to the newest run (runfolder/latest.py), so the
newest run would come twice: the link is dropped when the run it points at is given too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.runfolder.latest import LATEST


def distinct_run_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The paths in order, less each `latest` link whose run is among them."""
    given = [Path(p) for p in paths]
    targets = {p.resolve() for p in given if not _is_latest_link(p)}
    return [p for p in given if not (_is_latest_link(p) and p.resolve() in targets)]


def _is_latest_link(path: Path) -> bool:
    return path.name == LATEST and path.is_symlink()
