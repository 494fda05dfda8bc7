"""The runner's loop probe: wake-ups on an absolute grid, each one's lateness recorded; a stall of the
loop shows once, at its length (issue 19)."""

from __future__ import annotations

import asyncio
import time

import pytest

from foundation.errors import InputError
from harness.clock import new_event_loop
from harness.runner import RunOptions
from harness.runner.loop_probe import LoopProbe, lag_figures

STALL_S = 0.05


async def _probe_with_a_stall() -> list[int]:
    probe = LoopProbe(period_ns=2_000_000)
    task = asyncio.get_running_loop().create_task(probe.run())
    await asyncio.sleep(0.03)
    time.sleep(STALL_S)  # the loop blocked, as a slow callback or a CPU taken away would block it
    await asyncio.sleep(0.03)
    task.cancel()
    return probe.take()


def test_a_blocked_loop_shows_as_one_late_wake_up_of_the_stalls_length() -> None:
    loop = new_event_loop()
    try:
        lags = loop.run_until_complete(_probe_with_a_stall())
    finally:
        loop.close()
    late = [lag for lag in lags if lag > 10_000_000]
    assert len(late) == 1 and late[0] > 0.8 * STALL_S * 1e9  # skipped deadlines are not owed
    figures = lag_figures(lags)
    assert figures is not None and figures["max"] == pytest.approx(late[0] / 1e6)
    assert lag_figures([]) is None


@pytest.mark.parametrize(("options", "message"), [
    ({"max_in_flight": 0}, "--max-in-flight: must be >= 1 (got 0)"),
    ({"max_loop_lag_ms": 0.0}, "--max-loop-lag-ms: must be > 0 (got 0.0)"),
])  # fmt: skip
def test_bad_overload_options_are_one_line(options, message) -> None:
    with pytest.raises(InputError) as err:
        RunOptions(**options).validate()
    assert str(err.value) == message


def test_a_shaped_arm_refuses_the_in_flight_cap() -> None:
    with pytest.raises(InputError, match="--max-in-flight: not with --policy arms"):
        RunOptions(max_in_flight=4).check_shaped("pace")
