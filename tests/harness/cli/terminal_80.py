"""`joulebench ARGS` in a pseudo-terminal of a given width, as a user at an 80-column terminal sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import selectors
import struct
import subprocess
import termios
import time

from joulebench_testkit import REPO, joulebench_argv

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_terminal(*args: str, columns: int = 80, timeout_s: float = 120.0) -> tuple[int, str]:
    """Exit status and everything written to the terminal (stdout and stderr), colours removed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    env.pop("TERMINAL_WIDTH", None)
    process = subprocess.Popen(
        joulebench_argv(*args), stdin=follower, stdout=follower, stderr=follower, env=env, cwd=REPO
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(leader, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    os.close(leader)
    try:
        status = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"joulebench {' '.join(args)} did not end within {timeout_s} s") from None
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return status, _ANSI.sub("", text)
