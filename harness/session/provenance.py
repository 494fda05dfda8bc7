"""What produced a run, for its manifest: the versions of joulebench and its HTTP and data libraries,
and the host (CPU model and count, platform, Python)."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import __version__


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"joulebench": __version__}
    for dist in ("httpx", "httpcore", "h11", "pandas", "pyarrow", "numpy", "typer"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out
