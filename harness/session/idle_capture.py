"""Idle capture: power only, no requests, right before the run and right after it.

The join estimates idle power from these windows (`manifest.json` `idle`: `{"pre": {start_ns,
end_ns} | null, "post": ...}`, read by harness.energy) and flags drift between them. After a run that
was stopped (Ctrl-C) the post window is skipped; Ctrl-C during the post window ends it early, and the
report is still written from what was captured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from harness.energy import Window
from harness.runner import RunResult
from harness.session.pipeline import RunContext
from harness.session.stage_state import MeasureState


@dataclass(eq=False)  # compared and hashed by identity
class IdleStage:
    seconds: float
    state: MeasureState
    console: Console
    # False: before the run only. An experiment's cells do this: the gap before the next cell is that
    # cell's idle window, so one cool-down is measured once, as one window long enough to be precise.
    after_too: bool = True
    _partial: Window | None = field(default=None, init=False)  # what a Ctrl-C during the capture left

    def before(self, ctx: RunContext) -> None:
        self.state.idle_pre = self._capture("before the run")
        self._record(ctx)

    def after(self, ctx: RunContext, result: RunResult) -> None:
        if result.stop_reason in ("interrupted", "aborted") and self.after_too:
            self.state.notes.append("the run was stopped: no idle capture after it")
        elif self.after_too:
            try:
                self.state.idle_post = self._capture("after the run")
            except KeyboardInterrupt:
                self.state.interrupted = True
                self.state.idle_post = self._partial
                self.console.print("idle capture stopped early; writing the report (Ctrl-C again to abort)")
        self._record(ctx)

    def _capture(self, when: str) -> Window | None:
        if self.seconds <= 0:
            return None
        start = time.monotonic_ns()
        self._partial = None
        with self.console.status(f"idle capture {when}: {self.seconds:g} s of power, no requests"):
            try:
                # Absolute deadline: a wake-up that comes early (signals) never shortens the window.
                end = start + int(self.seconds * 1e9)
                while (left := end - time.monotonic_ns()) > 0:
                    time.sleep(left / 1e9)
            except KeyboardInterrupt:
                now = time.monotonic_ns()
                self._partial = Window(start, now) if now - start >= 1e9 else None
                raise
        return Window(start, time.monotonic_ns())

    def _record(self, ctx: RunContext) -> None:
        ctx.folder.update_manifest(idle=idle_record(self.state.idle_pre, self.state.idle_post, self.seconds))


def idle_record(pre: Window | None, post: Window | None, seconds: float) -> dict[str, Any]:
    """The manifest's `idle` section, in the shape the join reads (also written by `joulebench merge`)."""

    def window(w: Window | None) -> dict[str, int] | None:
        return None if w is None else {"start_ns": int(w.start_ns), "end_ns": int(w.end_ns)}

    return {"pre": window(pre), "post": window(post), "seconds": seconds}
