"""`<out>/latest`: a symbolic link to the newest run folder made under `<out>` by `joulebench run`.

Relative (the folder's name), so it still points at the run when `<out>` is moved or copied.
Replaced atomically: a reader sees the previous run or the new one, never no link. Only a link is
replaced: a folder or file of that name is someone's, left as it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

LATEST = "latest"


def point_latest(run_dir: Path) -> str | None:
    """Point `<run_dir's parent>/latest` at `run_dir`; None when done, else why not (for a note: the
    run itself is fine without it)."""
    out = run_dir.parent
    link = out / LATEST
    try:
        mode = os.lstat(link).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return f"{link}: cannot point it at the run ({exc.strerror})"
    if mode is not None and not stat.S_ISLNK(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a file"
        return f"{link} is {what}, not a link: left as it is"
    # One name per process: a run of ours killed between the two steps may have left it, never another's.
    tmp = out / f".{LATEST}.{os.getpid()}"
    try:
        try:
            os.symlink(run_dir.name, tmp)
        except FileExistsError:
            if not tmp.is_symlink():
                raise
            tmp.unlink()
            os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        if tmp.is_symlink():
            tmp.unlink(missing_ok=True)
        return f"{link}: cannot point it at the run ({exc.strerror})"
    return None
