"""Sending on time: absolute deadlines (the loop itself, with timers that fire to the microsecond, is
`harness.clock.new_event_loop`)."""

from __future__ import annotations

import asyncio
import time

_now = time.monotonic_ns


async def sleep_until(deadline_ns: int) -> None:
    """Sleep until an absolute monotonic time (the loop's clock is time.monotonic)."""
    delay = (deadline_ns - _now()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
