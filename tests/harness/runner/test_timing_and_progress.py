"""The precise timer wakes within a millisecond where epoll cannot, and the live counters add up."""

from __future__ import annotations

import selectors
import time

import numpy as np
from rich.console import Console

from harness.clock import PreciseSelector
from harness.runner.progress import ProgressDisplay, Stats


def wake_delays_ms(selector: selectors.BaseSelector, timeout_s: float, tries: int = 40) -> np.ndarray:
    delays = []
    with selector:
        for _ in range(tries):
            t0 = time.monotonic_ns()
            selector.select(timeout_s)
            delays.append((time.monotonic_ns() - t0) / 1e6)
    return np.array(delays)


def test_precise_selector_honours_sub_millisecond_timeouts() -> None:
    stock = wake_delays_ms(selectors.EpollSelector(), 0.0003)
    precise = wake_delays_ms(PreciseSelector(), 0.0003)
    assert stock.min() >= 1.0  # epoll_wait rounds 0.3 ms up to a whole millisecond
    assert precise.min() >= 0.3 and np.median(precise) < 0.9


def test_stats_and_display() -> None:
    stats = Stats(planned=10)
    stats.start_arm("fixed", time.monotonic_ns() - 1_000_000_000)
    for lateness in (100_000, 200_000, 5_000_000):
        stats.on_sent(lateness)
    stats.on_done("ok")
    stats.on_done("http_error")
    assert (stats.sent, stats.done, stats.errors, stats.in_flight) == (3, 2, 1, 1)
    assert 4.5 < stats.lateness_p99_ms() <= 5.0
    assert 2.5 < stats.arm_rate(time.monotonic_ns()) < 3.1
    console = Console(record=True, width=200)
    console.print(ProgressDisplay(stats, enabled=False)._render())
    text = console.export_text()
    assert "fixed" in text and "sent 3/10" in text and "in flight 1" in text and "errors 1" in text
    assert "client" not in text
    stats.on_sent(0)
    stats.on_done("client_error")  # the runner's own failure is told apart where errors are shown
    console.print(ProgressDisplay(stats, enabled=False)._render())
    assert "errors 2 (client 1" in console.export_text()
