"""A discrete-event simulator of an LLM server with continuous batching, on a virtual clock.

Pure and deterministic: no I/O, no wall clock, randomness only from its seed. The HTTP server drives
it in real time (`live.LiveSim`); tests and the calibration fitter drive it directly.

The model, in the order a request meets it:

1. Frontend (the API server's event loop). After `frontend.latency_s` a request queues for admission;
   the frontend admits one request at a time, each admission taking `admit_cpu_s` plus
   `admit_cpu_s_per_request` for every request in flight (the loop serves all of them between two
   admissions). This is what makes TTFT grow, and energy per request stop falling, at large bursts.
2. Scheduler (vLLM v1 style): running requests first (decode, or the rest of a chunked prefill), then
   waiting requests in arrival order, within `max_num_batched_tokens` per step and `max_num_seqs`
   running. KV-cache blocks are allocated as tokens are computed; when a running request cannot grow,
   the most recently scheduled request is preempted (its KV freed, recomputed later).
3. Step: duration = base + per decode sequence + per prefill token; energy = busy power × duration +
   joules per decode and prefill token. A step that would draw more than the power limit is stretched
   until it does not (the clocks throttle). With host drift on (`host_drift.py`), the duration is
   then multiplied by the drift at the step's start, at the same power. Between steps the GPU draws
   idle power.
4. A request that completes its prefill or decodes samples one token at the end of the step.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.mock.gpu import GpuReading, SimGpu
from harness.mock.host_drift import HostDrift
from harness.mock.profile import Profile

# Event kinds, with the priority that orders events at the same instant: an admission starts once
# every request arriving at that instant has queued (they count as in flight), a request admitted at
# the moment a step ends joins the next step, and the next step is composed after everything else.
_READY, _ADMITTED, _ADMIT, _STEP_END, _TICK = 0, 1, 2, 3, 4
_PRIORITY = {_READY: 0, _ADMITTED: 0, _ADMIT: 1, _STEP_END: 2, _TICK: 3}

QUEUED, WAITING, RUNNING, DONE = "queued", "waiting", "running", "done"


@dataclass(frozen=True)
class RequestSpec:
    prompt_tokens: int
    max_tokens: int  # upper bound on output tokens (>= 1)
    ignore_eos: bool = False
    min_tokens: int = 0


@dataclass(eq=False)
class SimRequest:
    rid: int
    prompt_tokens: int
    output_tokens: int  # how many it will generate (resolved at submit)
    stops_at_eos: bool  # True: ends with finish_reason "stop"; False: "length"
    max_tokens: int
    arrival: float
    handle: Any = None  # the caller's object (the HTTP request waiting for tokens)
    state: str = QUEUED
    ready: float = math.nan  # joined the frontend's admission queue
    admitted: float = math.nan  # entered the scheduler's waiting queue
    scheduled: float = math.nan  # first scheduled
    first_token: float = math.nan
    last_token: float = math.nan
    prev_token: float = math.nan
    finished: float = math.nan
    finish_reason: str | None = None  # "length", "stop" or "abort"
    generated: int = 0
    computed: int = 0  # tokens whose KV is computed
    blocks: int = 0
    preemptions: int = 0
    in_step: bool = False
    aborted: bool = False


@dataclass
class Step:
    start: float
    end: float
    batch: list[tuple[SimRequest, int]]  # (request, tokens computed for it)
    n_decode: int
    n_prefill_tokens: int
    n_sampled: int
    power_w: float
    emitted: list[SimRequest] = field(default_factory=list)  # got a token at `end`
    decode: list[bool] = field(default_factory=list)  # per batch entry: a decode (else prefill) token
    finished: list[SimRequest] = field(default_factory=list)
    drift: float = 1.0  # the host-drift multiplier in this step's duration


class Listener(Protocol):
    def step_done(self, step: Step) -> None: ...


class Simulator:
    def __init__(
        self,
        profile: Profile,
        seed: int = 0,
        listener: Listener | None = None,
        t0: float = 0.0,
        trace_power: bool = False,
    ) -> None:
        self.profile = profile
        self.listener = listener
        self.now = t0
        self._rng = random.Random(seed)
        # None when off, so that a profile without drift computes exactly what it did before drift.
        self._drift = HostDrift(profile.step_time, seed, t0) if profile.step_time.drift_cv > 0 else None
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._seq = itertools.count()
        self._rids = itertools.count()
        self.power_trace: list[tuple[float, float]] | None = [] if trace_power else None
        self.gpu = SimGpu(profile.gpu, profile.power, t0, self.power_trace)
        sched = profile.scheduler
        self.total_blocks = sched.kv_cache_tokens // sched.block_size
        self.free_blocks = self.total_blocks
        # frontend
        self._fe_queue: deque[SimRequest] = deque()
        self._fe_current: SimRequest | None = None
        self._fe_pending = False  # an admission start is scheduled
        # engine
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.step: Step | None = None  # the step in flight
        self._tick_pending = False
        self.active = 0  # admitted and not done: the streams the frontend serves
        # totals (what /metrics reports)
        self.steps = 0
        self.preemptions = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0

    # ---------------------------------------------------------------- public
    def submit(self, spec: RequestSpec, at: float | None = None, handle: Any = None) -> SimRequest:
        """A request arrives at `at` (default: now; never before now)."""
        t = self.now if at is None else at
        if t < self.now:
            raise ValueError(f"arrival {t} is before the simulator's time {self.now}")
        if spec.max_tokens < 1 or spec.prompt_tokens < 1:
            raise ValueError("a request needs at least one prompt token and max_tokens >= 1")
        if spec.prompt_tokens + spec.max_tokens > self.profile.scheduler.max_model_len:
            raise ValueError("prompt_tokens + max_tokens exceeds the profile's max_model_len")
        output, stops = self._output_length(spec)
        req = SimRequest(
            rid=next(self._rids),
            prompt_tokens=spec.prompt_tokens,
            output_tokens=output,
            stops_at_eos=stops,
            max_tokens=spec.max_tokens,
            arrival=t,
            handle=handle,
        )
        self._push(t + self.profile.frontend.latency_s, _READY, req)
        return req

    def abort(self, req: SimRequest, at: float | None = None) -> None:
        """The client went away: drop the request (at the next step boundary if it is in a step)."""
        if req.aborted or req.state == DONE:
            return
        t = self.now if at is None else max(at, self.now)
        req.aborted = True
        if req.state == QUEUED and req in self._fe_queue:
            self._fe_queue.remove(req)
        if req.state == RUNNING and not req.in_step:
            self.running.remove(req)
            self._release(req)
        if req.state in (WAITING, RUNNING):
            self.active -= 1
        req.state = DONE
        req.finished = t
        req.finish_reason = "abort"

    def next_event_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def advance_to(self, t: float) -> None:
        """Process every event up to and including `t`; the simulator's time becomes `t`."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, _, kind, payload = heapq.heappop(heap)
            if kind == _STEP_END:
                self._on_step_end(payload, when)
            elif kind == _TICK:
                self._on_tick(when)
            elif kind == _ADMITTED:
                self._on_admitted(payload, when)
            elif kind == _ADMIT:
                self._fe_start(when)
            else:
                self._on_ready(payload, when)
        if t > self.now:
            self.now = t

    def run_until_idle(self) -> float:
        """Process all events; returns the time of the last one."""
        while (t := self.next_event_time()) is not None:
            self.advance_to(t)
        return self.now

    def read_gpu(self) -> GpuReading:
        return self.gpu.read(self.now)

    @property
    def num_waiting(self) -> int:
        return sum(1 for r in self.waiting if not r.aborted)

    @property
    def frontend_queue(self) -> int:
        return len(self._fe_queue) + (self._fe_current is not None)

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.total_blocks

    # ---------------------------------------------------------------- events
    def _push(self, t: float, kind: int, payload: Any) -> None:
        heapq.heappush(self._heap, (t, _PRIORITY[kind], next(self._seq), kind, payload))

    def _on_ready(self, req: SimRequest, t: float) -> None:
        if req.aborted:
            return
        req.ready = t
        self._fe_queue.append(req)
        self._fe_wake(t)

    def _on_admitted(self, req: SimRequest, t: float) -> None:
        self._fe_current = None
        if not req.aborted:
            req.admitted = t
            req.state = WAITING
            self.waiting.append(req)
            self.active += 1
            self._want_tick(t)
        self._fe_wake(t)

    def _on_tick(self, t: float) -> None:
        self._tick_pending = False
        if self.step is None:
            self._start_step(t)

    def _want_tick(self, t: float) -> None:
        if self.step is None and not self._tick_pending:
            self._tick_pending = True
            self._push(t, _TICK, None)

    # ---------------------------------------------------------------- frontend
    def _fe_wake(self, t: float) -> None:
        if self._fe_current is None and not self._fe_pending and self._fe_queue:
            self._fe_pending = True
            self._push(t, _ADMIT, None)

    def _fe_start(self, t: float) -> None:
        self._fe_pending = False
        queue = self._fe_queue
        while queue and queue[0].aborted:
            queue.popleft()
        if self._fe_current is not None or not queue:
            return
        req = self._fe_current = queue.popleft()
        fe = self.profile.frontend
        # Everything in flight, this one included: queued for admission, admitted, running.
        in_flight = len(queue) + 1 + self.active
        self._push(t + fe.admit_cpu_s + fe.admit_cpu_s_per_request * in_flight, _ADMITTED, req)

    # ---------------------------------------------------------------- engine
    def _output_length(self, spec: RequestSpec) -> tuple[int, bool]:
        dist = self.profile.output_length
        if spec.ignore_eos or dist.kind == "max_tokens":
            return spec.max_tokens, False
        draw = max(dist.min_tokens, spec.min_tokens, round(self._rng.lognormvariate(dist.mu, dist.sigma)))
        if draw >= spec.max_tokens:
            return spec.max_tokens, False
        return draw, True

    def _alloc(self, req: SimRequest, tokens: int) -> bool:
        need = -(-tokens // self.profile.scheduler.block_size) - req.blocks
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        req.blocks += need
        return True

    def _release(self, req: SimRequest) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0

    def _preempt(self, req: SimRequest) -> None:
        self._release(req)
        req.computed = 0
        req.preemptions += 1
        req.state = WAITING
        self.preemptions += 1
        self.waiting.appendleft(req)

    def _compose(self) -> tuple[list[tuple[SimRequest, int]], list[bool], int, int, int]:
        sched = self.profile.scheduler
        budget = sched.max_num_batched_tokens
        batch: list[tuple[SimRequest, int]] = []
        decode: list[bool] = []
        n_decode = n_prefill = n_sampled = 0
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            need = req.prompt_tokens + req.generated - req.computed
            n = min(need, budget)
            if not self._alloc(req, req.computed + n):
                while True:  # free KV by preempting from the tail (the latest scheduled)
                    victim = running.pop()
                    self._preempt(victim)
                    if victim is req or self._alloc(req, req.computed + n):
                        break
                if victim is req:
                    break
            batch.append((req, n))
            budget -= n
            decode.append(need == 1 and req.computed >= req.prompt_tokens)
            if decode[-1]:
                n_decode += 1
            else:
                n_prefill += n
            n_sampled += n == need
            i += 1
        waiting = self.waiting
        while waiting and budget > 0 and len(running) < sched.max_num_seqs:
            req = waiting[0]
            if req.aborted:
                waiting.popleft()
                continue
            need = req.prompt_tokens + req.generated - req.computed
            n = min(need, budget)
            if not self._alloc(req, req.computed + n):
                break
            waiting.popleft()
            req.state = RUNNING
            running.append(req)
            if math.isnan(req.scheduled):
                req.scheduled = self.now
            batch.append((req, n))
            decode.append(False)
            budget -= n
            n_prefill += n
            n_sampled += n == need
        return batch, decode, n_decode, n_prefill, n_sampled

    def _start_step(self, t: float) -> None:
        self.now = max(self.now, t)
        batch, decode, n_decode, n_prefill, n_sampled = self._compose()
        if not batch:
            return
        st, pw = self.profile.step_time, self.profile.power
        duration = st.base_s + st.per_decode_seq_s * n_decode + st.per_prefill_token_s * n_prefill
        energy = pw.busy_w * duration + pw.per_decode_token_j * n_decode + pw.per_prefill_token_j * n_prefill
        power = energy / duration
        limit = self.profile.gpu.power_limit_w
        if power > limit:
            duration, power = energy / limit, limit
        drift = 1.0
        if self._drift is not None:
            # A slower host keeps the GPU busy for longer at the same power: the step costs more.
            drift = self._drift.at(t)
            duration *= drift
        for req, _ in batch:
            req.in_step = True
        step = Step(t, t + duration, batch, n_decode, n_prefill, n_sampled, power, drift=drift, decode=decode)
        self.step = step
        self.steps += 1
        self.gpu.set_power(t, power, busy=True)
        self._push(step.end, _STEP_END, step)

    def _on_step_end(self, step: Step, t: float) -> None:
        self.now = max(self.now, t)
        self.step = None
        any_done = False
        for req, n in step.batch:
            req.in_step = False
            if req.aborted:
                self._release(req)
                any_done = True
                continue
            req.computed += n
            if req.computed < req.prompt_tokens + req.generated:
                continue  # a chunk of a longer prefill
            req.generated += 1
            req.prev_token, req.last_token = req.last_token, t
            if req.generated == 1:
                req.first_token = t
                self.prompt_tokens_total += req.prompt_tokens
            step.emitted.append(req)
            if req.generated >= req.output_tokens:
                req.state = DONE
                req.finished = t
                req.finish_reason = "stop" if req.stops_at_eos else "length"
                self._release(req)
                self.active -= 1
                step.finished.append(req)
                any_done = True
        self.generation_tokens_total += len(step.emitted)
        if any_done:
            self.running = [r for r in self.running if r.state != DONE]
        self.gpu.idle(t)
        if self.listener is not None:
            self.listener.step_done(step)
        if self.running or self.waiting:
            self._want_tick(t)
