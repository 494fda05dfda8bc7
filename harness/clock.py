"""One clock scheme for requests and power: monotonic nanoseconds plus an (epoch, monotonic) anchor.

Schedules and durations use the monotonic clock (never the wall clock, which NTP may step). Every
process that records times also records one anchor pair, so its monotonic times can be mapped to
epoch time, and from there to another host's monotonic clock. Two processes on the same kernel
(the same `boot_id`, containers included) share the monotonic clock and need no mapping at all.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """Identifies the kernel whose monotonic clock we read ('' where the OS does not expose it)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ClockAnchor:
    """A simultaneous reading of the epoch and monotonic clocks, in integer nanoseconds."""

    epoch_ns: int
    mono_ns: int
    boot_id: str = ""
    uncertainty_ns: int = 0

    @classmethod
    def now(cls) -> ClockAnchor:
        # Bracket the epoch read between two monotonic reads and keep the tightest of a few tries,
        # so the pair is simultaneous to within `uncertainty_ns`.
        best: tuple[int, int, int] | None = None
        for _ in range(5):
            m0 = time.monotonic_ns()
            e = time.time_ns()
            m1 = time.monotonic_ns()
            if best is None or m1 - m0 < best[2]:
                best = (e, (m0 + m1) // 2, m1 - m0)
        assert best is not None
        return cls(epoch_ns=best[0], mono_ns=best[1], boot_id=boot_id(), uncertainty_ns=best[2])

    def to_epoch_ns(self, mono_ns: int) -> int:
        return self.epoch_ns + (mono_ns - self.mono_ns)

    def to_mono_ns(self, epoch_ns: int) -> int:
        return self.mono_ns + (epoch_ns - self.epoch_ns)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClockAnchor:
        return cls(
            epoch_ns=int(data["epoch_ns"]),
            mono_ns=int(data["mono_ns"]),
            boot_id=str(data.get("boot_id", "")),
            uncertainty_ns=int(data.get("uncertainty_ns", 0)),
        )


# An event loop whose timers fire to the microsecond, for everything that acts at absolute deadlines
# (the runner's sends, the shaping proxy's releases). asyncio's default selector waits with
# `epoll_wait`, whose timeout has a resolution of one millisecond and is rounded *up*: a timer due in
# 0.2 ms fires after 1 ms, so every deadline would be met up to a millisecond late (p99 ~1 ms from this
# alone). `PreciseSelector` waits on the epoll descriptor with `select()` instead, which takes
# microseconds, then collects the events with a non-blocking epoll call. (uvloop would not help:
# libuv's timers count whole milliseconds.)
class PreciseSelector(selectors.EpollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0 and self.fileno() < 1024:  # select() takes fds < FD_SETSIZE
            # The epoll fd is readable as soon as any registered fd has an event (signals included,
            # through asyncio's self-pipe), so this wakes exactly like epoll_wait would, but on time.
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop(precise: bool = True) -> asyncio.AbstractEventLoop:
    if precise and hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(PreciseSelector())
    return asyncio.new_event_loop()
