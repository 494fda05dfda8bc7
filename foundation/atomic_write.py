"""Write a file so that readers see the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from foundation.errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary path beside `path` to write to; renamed into place when the block succeeds,
    removed when it raises. A `path` that cannot be replaced (a folder there) is a one-line InputError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates files 0600; give the file the permissions any new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.replace(tmp, path)
        except OSError as exc:  # the path is a folder, say: what is there is not ours to replace
            raise InputError(f"{path}: cannot write it ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
