"""Sending on time: an event loop whose timers fire to the microsecond, and absolute deadlines.

asyncio's default selector waits with `epoll_wait`, whose timeout has a resolution of one millisecond
and is rounded *up*: a timer due in 0.2 ms fires after 1 ms, so every request would be sent up to a
millisecond late, uniformly spread (p99 lateness ~1 ms from this alone). `PreciseSelector` waits on
the epoll descriptor with `select()` instead, which takes microseconds, then collects the events with
a non-blocking epoll call. (uvloop would not help: libuv's timers count whole milliseconds.)
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time

_now = time.monotonic_ns


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


async def sleep_until(deadline_ns: int) -> None:
    """Sleep until an absolute monotonic time (the loop's clock is time.monotonic)."""
    delay = (deadline_ns - _now()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
