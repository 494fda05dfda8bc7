"""Live counters of a run and their terminal display (rich).

The event loop updates `Stats` (cheap integer increments); the display is redrawn from a periodic
task on the same loop with auto-refresh off, so no second thread competes with sending for the GIL.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

_WINDOW = 4096  # lateness percentiles over the latest sends


@dataclass
class Stats:
    planned: int = 0  # measured requests this run plans (its shard's slice)
    sent: int = 0
    done: int = 0
    errors: int = 0  # terminal, not ok
    client_errors: int = 0  # of which the client's own (`client_error`): the run measures the client
    arm: str = ""
    arm_start_ns: int = 0
    arm_sent: int = 0
    _lateness: np.ndarray = field(default_factory=lambda: np.zeros(_WINDOW, dtype=np.int64))
    _filled: int = 0

    def on_sent(self, lateness_ns: int) -> None:
        self.sent += 1
        self.arm_sent += 1
        self._lateness[self._filled % _WINDOW] = lateness_ns
        self._filled += 1

    def on_done(self, status: str) -> None:
        self.done += 1
        if status != "ok":
            self.errors += 1
        if status == "client_error":
            self.client_errors += 1

    def start_arm(self, name: str, start_ns: int) -> None:
        self.arm, self.arm_start_ns, self.arm_sent = name, start_ns, 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.done

    def lateness_p99_ms(self) -> float | None:
        n = min(self._filled, _WINDOW)
        return float(np.percentile(self._lateness[:n], 99)) / 1e6 if n else None

    def arm_rate(self, now_ns: int) -> float | None:
        elapsed = (now_ns - self.arm_start_ns) / 1e9
        return self.arm_sent / elapsed if self.arm_start_ns and elapsed > 0 else None


class ProgressDisplay:
    """The run's counters on stderr: one live line on a terminal; elsewhere (a CI log, a pipe) a plain
    line every LINE_S seconds, on a grid of absolute deadlines from the start, and one at the end.
    Nothing when disabled."""

    LINE_S = 5

    def __init__(self, stats: Stats, enabled: bool) -> None:
        self.stats = stats
        console = Console(stderr=True)
        terminal = console.is_terminal
        self._live = (
            Live(console=console, auto_refresh=False, transient=False) if enabled and terminal else None
        )
        self._lines = enabled and not terminal
        self._t0 = time.monotonic_ns()
        self._next_line_ns = self._t0 + self.LINE_S * 1_000_000_000

    def __enter__(self) -> ProgressDisplay:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()
        if self._lines:
            self._write_line(time.monotonic_ns())

    def refresh(self) -> None:
        """Called from the run's periodic task (never from the sending path)."""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
        elif self._lines:
            now = time.monotonic_ns()
            if now >= self._next_line_ns:
                self._write_line(now)
                step = self.LINE_S * 1_000_000_000  # the next deadline of the grid after now: none owed
                self._next_line_ns += step * ((now - self._next_line_ns) // step + 1)

    def _write_line(self, now: int) -> None:
        fields = self._fields(now)
        arm, elapsed = fields.pop("arm"), fields.pop("elapsed")
        sys.stderr.write(f"[{elapsed}] {arm} · {' · '.join(fields.values())}\n")
        sys.stderr.flush()

    def _render(self) -> Text:
        # One text, not a grid: on a narrow terminal it wraps between counters, not inside them.
        fields = self._fields(time.monotonic_ns())
        styles = {"arm": "bold", "errors": "red" if self.stats.errors else ""}
        line = Text()
        for key, value in fields.items():
            line.append(value, styles.get(key, ""))
            line.append("  ")
        line.rstrip()
        return line

    def _fields(self, now: int) -> dict[str, str]:
        s = self.stats
        p99 = s.lateness_p99_ms()
        rate = s.arm_rate(now)
        return {
            "arm": s.arm or "starting",
            "elapsed": f"{(now - self._t0) / 1e9:.1f} s",
            "sent": f"sent {s.sent}/{s.planned}",
            "done": f"done {s.done}",
            "errors": _errors(s),
            "in_flight": f"in flight {s.in_flight}",
            "lateness": f"lateness p99 {p99:.2f} ms" if p99 is not None else "lateness p99 -",
            "rate": f"rate {rate:.1f}/s" if rate is not None else "rate -",
        }


def _errors(s: Stats) -> str:
    own = f" (client {s.client_errors}: out of descriptors or ports?)" if s.client_errors else ""
    return f"errors {s.errors}{own}"
