"""Live counters of a run and their terminal display (rich).

The event loop updates `Stats` (cheap integer increments); the display is redrawn from a periodic
task on the same loop with auto-refresh off, so no second thread competes with sending for the GIL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

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
    """One live line of counters on stderr; does nothing when disabled or stderr is not a terminal."""

    def __init__(self, stats: Stats, enabled: bool) -> None:
        self.stats = stats
        console = Console(stderr=True)
        self._live = (
            Live(console=console, auto_refresh=False, transient=False)
            if enabled and console.is_terminal
            else None
        )
        self._t0 = time.monotonic_ns()

    def __enter__(self) -> ProgressDisplay:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def _render(self) -> Table:
        s = self.stats
        now = time.monotonic_ns()
        p99 = s.lateness_p99_ms()
        rate = s.arm_rate(now)
        table = Table.grid(padding=(0, 2))
        table.add_row(
            f"[bold]{s.arm or 'starting'}[/]",
            f"{(now - self._t0) / 1e9:7.1f} s",
            f"sent {s.sent}/{s.planned}",
            f"done {s.done}",
            _errors(s),
            f"in flight {s.in_flight}",
            f"lateness p99 {p99:.2f} ms" if p99 is not None else "lateness p99 -",
            f"rate {rate:.1f}/s" if rate is not None else "rate -",
        )
        return table


def _errors(s: Stats) -> str:
    if not s.errors:
        return "errors 0"
    own = f" (client {s.client_errors}: out of descriptors or ports?)" if s.client_errors else ""
    return f"[red]errors {s.errors}{own}[/]"
