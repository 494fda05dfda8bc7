"""Blocking work called from a thread that runs an event loop (Jupyter's): done on a thread of its own.

`joulebench run` drives event loops of its own (asyncio.run, the runner's loop), and asyncio refuses to
start one in a thread whose loop is running, as Jupyter's kernel thread's always is. Such calls go to a
fresh thread with no loop, while the caller waits (`call_blocking`) or awaits (`call_in_thread`).

Signal handlers belong to the main thread, so on the worker the runner installs none (it checks):
an interrupt reaches the waiting caller, not the run. The caller then waits for the run to end (its
processes stopped, its folder complete) and raises KeyboardInterrupt after, rather than leave a run
going on behind its back; `time_limit` bounds a run from the start. For the same reason cancelling
`call_in_thread`'s awaitable does not stop a run that has started (the runner's graceful stop is reached
through the main thread's signals only): it goes on to the end, and only its result is dropped.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def call_blocking(function: Callable[[], T]) -> T:
    """`function()` on this thread where no event loop runs here (signals and all, as the command
    line), else on a worker thread, waiting for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    return _wait(_start(function))


async def call_in_thread(function: Callable[[], T]) -> T:
    """`function()` on a worker thread, awaited: the caller's loop goes on meanwhile."""
    return await asyncio.wrap_future(_start(function))


def _start(function: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    # Not a daemon: an interpreter that exits waits for the run to stop its processes and close its
    # folder. A thread per run: the embedded servers get SIGTERM when the thread that started them ends.
    threading.Thread(target=work, args=(future, function), name="joulebench-run").start()
    return future


def work(future: Future[T], function: Callable[[], T]) -> None:
    """The worker thread's body: `function()` into `future`, unless the future was cancelled first."""
    if not future.set_running_or_notify_cancel():
        return  # cancelled before it started (an awaiting task cancelled at once): nothing runs
    try:
        future.set_result(function())
    except BaseException as exc:  # KeyboardInterrupt too: the caller re-raises whatever it was
        future.set_exception(exc)


def _wait(future: Future[T]) -> T:
    interrupted = False
    while True:
        try:
            result = future.result()
            break
        except KeyboardInterrupt:
            if future.done():  # the run's own, raised by it
                raise
            if not interrupted:
                print(
                    "joulebench: the run is on a worker thread, which interrupts cannot reach; waiting "
                    "for it to end (bound a run with time_limit=SECONDS)",
                    file=sys.stderr,
                )
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    return result
