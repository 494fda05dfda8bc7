"""What produced a run, for its manifest: the versions of joulebench and its HTTP and data libraries,
the host (CPU model and count, platform, Python) and the command line (its secrets redacted)."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from foundation.redact import SECRET_REDACTED, is_secret_header, redact_userinfo
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
    # The HTTP stack of every transport (httpx with aiohttp, its own httpcore and h11, or the sender's
    # httptools): which one a run used is in its options.
    for dist in ("httpx", "aiohttp", "httpcore", "h11", "httptools", "pandas", "pyarrow", "numpy", "typer"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def command_line(argv: Sequence[str]) -> list[str]:
    """`argv` as the manifest records it: URL userinfo redacted, and the value of any flag named like a
    credential (`--api-key X`, `--token=X`). Named by foundation.redact's rule, under which `--max-tokens`
    (a count) is no credential; nor is a flag naming an environment variable (`--api-key-env NAME`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        if hide_next:
            out.append(SECRET_REDACTED)
            hide_next = False
        elif arg.startswith("--") and not name.endswith("-env") and is_secret_header(name.lstrip("-")):
            out.append(f"{name}={SECRET_REDACTED}" if eq else arg)
            hide_next = not eq
        else:
            out.append(redact_userinfo(arg))
    return out
