"""Drives the simulator in real time (or `speed` times faster) inside the server's event loop.

Simulated time is `speed` x the monotonic time since the server started. Nothing polls: one timer is
armed for the simulator's next event; when it fires, the simulator catches up to the present and
wakes the requests that got tokens. Every handler that reads or changes the simulation first brings
it up to the present, so what it sees (tokens, queue lengths, the energy counter) is exact at the
moment it reads. If the process cannot keep up (a very high speed), simulated events are handled
late in wall time, never skipped or reordered.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from harness.clock import boot_id
from harness.mock.engine import DONE, RequestSpec, SimRequest, Simulator, Step
from harness.mock.gpu import GpuReading


class Waiter:
    """What a request handler awaits: woken on each token (streaming) or when the request is done."""

    __slots__ = ("_event", "streaming")

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


@dataclass(frozen=True)
class Clocked:
    """A GPU reading with the server clocks at the instant it describes."""

    epoch_ns: int
    mono_ns: int
    sim_time_s: float
    gpu: GpuReading


class LiveSim:
    def __init__(self, sim: Simulator, speed: float, listeners: list) -> None:
        if not speed > 0 or math.isinf(speed):
            raise ValueError("speed must be a positive finite number")
        self.sim = sim
        self.speed = speed
        self.listeners = listeners
        self.boot_id = boot_id()
        self._t0_ns = time.monotonic_ns()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        sim.listener = self

    def now(self) -> float:
        return (time.monotonic_ns() - self._t0_ns) * 1e-9 * self.speed

    def sync(self) -> float:
        """Bring the simulation up to the present; returns the simulated time."""
        t = self.now()
        self.sim.advance_to(t)
        self._arm()
        return t

    def submit(self, spec: RequestSpec, waiter: Waiter) -> SimRequest:
        t = self.now()
        self.sim.advance_to(t)
        req = self.sim.submit(spec, at=t, handle=waiter)
        self._arm()
        return req

    def abort(self, req: SimRequest) -> None:
        if req.state == DONE:
            return
        t = self.now()
        self.sim.advance_to(t)
        self.sim.abort(req, t)
        for listener in self.listeners:
            listener.request_done(req)
        self._arm()

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(sim_seconds / self.speed)

    def wall_s(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed

    def read_gpu(self) -> Clocked:
        epoch_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        t = (mono_ns - self._t0_ns) * 1e-9 * self.speed
        self.sim.advance_to(t)
        self._arm()
        return Clocked(epoch_ns, mono_ns, t, self.sim.read_gpu())

    def step_done(self, step: Step) -> None:
        for listener in self.listeners:
            listener.step_done(step)
        for req in step.emitted:
            waiter = req.handle
            if waiter is not None and (waiter.streaming or req.state == DONE):
                waiter.wake()

    def _arm(self) -> None:
        nxt = self.sim.next_event_time()
        if nxt is None or nxt >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, (nxt - self.now()) / self.speed), self._fire)
        self._timer_at = nxt

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self.sync()
