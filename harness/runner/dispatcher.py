"""Executes a plan on one event loop: warm-up, then the arms in plan order, open or closed loop.

Open loop: every request is due at `arm start + offset`, an absolute monotonic deadline; the sender
sleeps until the next deadline, starts the request as its own task and moves on, never waiting for a
response. Requests already due (a burst, or a late wake-up) start in the same turn. Closed loop
(`concurrency` arms): n users, each sending its next request when its previous one ends. Shaped arms
(a plan arm with a policy): the users arrive on those deadlines and the policy releases their
requests (`shaped_loop`).

Arm k+1 starts when arm k's last response is in (plus `arm_gap_s`). With `start_at` (shards), arms
after open-loop arms also have a fixed start on the shared clock — start of the previous arm + its
last offset + `arm_gap_s` — so that every shard starts them together; a shard still busy then starts
late, and its lateness shows it.

`--max-in-flight N` is a brake: a request due while N are in flight waits for one to end before it is
sent (`capped_ns`, its wait, counts as lateness; the arm is flagged). A loop probe (`loop_probe`) records
how late the event loop wakes, and each arm's CPU time is taken: both go into the manifest's `arms`.

Stopping (Ctrl-C, SIGTERM or the time limit): nothing more is sent (the rest stays `not_sent`; what a
policy holds is `cancelled`, never sent), in-flight requests may finish for `grace_s`, then they are
cancelled (`cancelled`). A second interrupt cancels them at once. Every path ends in `finish()`,
which writes a row for every request.

With `--workers K`, each worker process runs a Dispatcher over its share of the requests (`share`),
its arms started by the parent (harness/runner/workers.py).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from asyncio_throttle import Throttler

from harness.backends import Target, make_client, perform, senders_cpu_s
from harness.clock import ClockAnchor
from harness.records import RequestRecord
from harness.runfolder.request_log import RecordLog, expected_records, log_header, warmup_rows
from harness.runner.arm_clock import ArmClock
from harness.runner.loop_probe import LoopProbe, lag_figures
from harness.runner.options import RunOptions
from harness.runner.plan_prompts import prompts_from_plan
from harness.runner.progress import ProgressDisplay, Stats
from harness.runner.result import ArmRun
from harness.runner.shaped_loop import ShapedArm, Waker, arrivals_of, in_flight_bound, most_within, play
from harness.runner.timing import sleep_until
from harness.runner.warmup import report_warmup
from harness.runner.worker_share import SharedLog, WorkerShare
from traffic.plan import ArmSpec, Plan
from traffic.shaping import parse_policy

_now = time.monotonic_ns
_TICK_S = 0.5
# Lateness the open-loop pool allows for (pool_size); a run later than that is flagged anyway.
_POOL_SLACK_S = 1.0
_POLICY_STREAM = 4  # a shaped arm's policy draws from [seed, 4, crc32(arm name)] (traffic.builder's scheme)
# With `--transport sender`, how far ahead of its time an open-loop request is handed to the sender
# process: the loop may stall this long (parsing a burst) without the request going out late.
STAGE_AHEAD_NS = 50_000_000


class Dispatcher:
    def __init__(
        self,
        plan: Plan,
        target: Target,
        options: RunOptions,
        log_path: Path,
        anchor: ClockAnchor,
        api_key: str | None = None,
        share: WorkerShare | None = None,
    ) -> None:
        assert options.transport != "auto", "resolve_transport first (execute_plan does)"
        self.plan = plan
        self.target = target
        self.api = target.api
        self.options = options
        self.anchor = anchor
        self._api_key = api_key
        self.records = expected_records(
            plan, shard=options.shard, warmup=options.warmup, api=self.api.name, stream=options.stream
        )
        # A worker of `--workers K` (harness/runner/workers.py) sends only its share, into the log its
        # parent opened; the parent sequences the arms and writes their boundaries.
        self.share = share
        if share is not None:
            owner = share.owners(plan, self.records)
            self.records = [r for r, k in zip(self.records, owner, strict=True) if k == share.index]
        self._prompts = prompts_from_plan(plan)
        # Per plan row, what a shaping policy is told of a request beside its id (prompt, max tokens).
        self._plan_tokens = (
            [None if pd.isna(v) else int(v) for v in plan.rows["prompt_tokens"]],
            [p.max_tokens for p in self._prompts],
        )
        self._warmup_rows = warmup_rows(plan, options.warmup)
        offsets = plan.rows["offset_s"].to_numpy(dtype=float)
        self.offset_ns = np.where(np.isnan(offsets), 0, np.round(offsets * 1e9)).astype(np.int64)
        self.arm_last_offset_ns = {
            arm.name: int(self.offset_ns[(plan.rows["arm"] == arm.name).to_numpy()].max(initial=0))
            for arm in plan.header.arms
        }
        self.warmups = [r for r in self.records if r.warmup]
        self.by_arm: dict[str, list[RequestRecord]] = {arm.name: [] for arm in plan.header.arms}
        for rec in self.records:
            if not rec.warmup:
                self.by_arm[rec.arm].append(rec)
        self.stats = Stats(planned=sum(len(v) for v in self.by_arm.values()))
        self.pool_size = pool_size(plan, options)
        self.arm_windows: list[ArmRun] = []
        self.arm_lags: dict[str, list[int]] = {}  # each arm's raw loop-probe lags (a parent merges them)
        self.start_ns: int | None = None
        self.stop_reason: str | None = None

        self.log = (
            RecordLog(
                log_path,
                log_header(
                    anchor=anchor, plan=plan, shard=options.shard, warmup=options.warmup,
                    api=self.api.name, stream=options.stream,
                ),
            )
            if share is None
            else SharedLog(log_path)
        )  # fmt: skip
        self._client = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._departing: dict[asyncio.Task[None], _Departing] = {}  # with the sender process
        self._sending: asyncio.Future[Any] | None = None
        self._stopping = False
        self._cancel_reason = "cancelled"
        self._timers: list[asyncio.TimerHandle] = []
        self._semaphore = asyncio.Semaphore(options.max_concurrency) if options.max_concurrency else None
        self._throttler = _throttler(options.max_rate)
        self._cap = asyncio.Semaphore(options.max_in_flight) if options.max_in_flight else None
        self._probe = LoopProbe()

    # --- stopping ---------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop sending; in-flight requests get `grace_s` to finish. A second request stops at once."""
        if self._stopping:
            self.abort()
            return
        self._stopping = True
        self.stop_reason = reason
        if self._sending is not None:
            self._sending.cancel()
        for task, departing in list(self._departing.items()):  # taken back from the sender process
            if departing.unsent():  # (one it sent meanwhile finishes in the grace period)
                task.cancel()
        grace = self.options.grace_s
        loop = asyncio.get_running_loop()
        self._timers.append(
            loop.call_later(
                grace, self._cancel_inflight, f"still running {grace:g} s after the run stopped ({reason})"
            )
        )

    def _time_limit(self) -> None:
        if not self._stopping:  # a run already stopping by hand keeps its own course
            self.request_stop("time_limit")

    def abort(self) -> None:
        self._stopping = True
        self.stop_reason = "aborted"
        if self._sending is not None:
            self._sending.cancel()
        self._cancel_inflight("the run was stopped at once (second interrupt)")

    def _cancel_inflight(self, reason: str) -> None:
        self._cancel_reason = reason
        for task in list(self._inflight):
            task.cancel()

    # --- the run ----------------------------------------------------------------------------------

    async def run(
        self, progress: ProgressDisplay, arms: Callable[[Dispatcher], Awaitable[None]] | None = None
    ) -> None:
        """Warm up, then the arms: in plan order on this dispatcher's own clock, or as `arms` (a
        worker's parent) starts them."""
        loop = asyncio.get_running_loop()
        self._client = make_client(
            self.target.url, pool=self.pool_size, timeout_s=self.options.timeout_s, api_key=self._api_key,
            transport=self.options.transport,
        )  # fmt: skip
        ticker = loop.create_task(self._tick(progress))
        probe = loop.create_task(self._probe.run())
        try:
            async with self._client:
                await self._phase(self._warm_up())
                await (self._arms(loop) if arms is None else arms(self))
                await self._drain()
        finally:
            ticker.cancel()
            probe.cancel()
            for timer in self._timers:
                timer.cancel()

    def stage_lead_ns(self, arm: ArmSpec | None = None) -> int:
        """How long before an arm's start its sending begins: with the sender process, an open-loop
        arm's first requests are handed over ahead of their time like the rest (`STAGE_AHEAD_NS`);
        the others send at once, at the start. Without an arm: the most any arm takes."""
        if self.options.transport != "sender" or (arm is not None and (arm.closed_loop or arm.policy)):
            return 0
        return STAGE_AHEAD_NS

    async def _arms(self, loop: asyncio.AbstractEventLoop) -> None:
        start_at = self.options.start_at_epoch_s
        fixed_t0 = self.anchor.to_mono_ns(round(start_at * 1e9)) if start_at is not None else None
        t0 = fixed_t0 if fixed_t0 is not None else _now() + self.stage_lead_ns()
        if self._stopping:
            return
        await self._phase(sleep_until(t0 - self.stage_lead_ns(self.plan.header.arms[0])))
        if self._stopping:  # stopped while waiting for --start-at: nothing was measured
            return
        self.start_ns = t0
        if self.options.time_limit_s is not None:
            limit = (t0 + round(self.options.time_limit_s * 1e9)) / 1e9
            self._timers.append(loop.call_at(limit, self._time_limit))
        gap = round(self.options.arm_gap_s * 1e9)
        clock = ArmClock(t0, start_at is not None, gap, self.arm_last_offset_ns)
        for arm in self.plan.header.arms:
            if self._stopping:
                return
            lead = self.stage_lead_ns(arm)
            start = clock.start(_now())
            if not clock.fixed:
                start = max(start, _now() + lead)
            await self._phase(sleep_until(start - lead))
            if self._stopping:
                return
            clock.ended(arm, (await self.run_arm(arm, start)).end_ns)

    async def wait_until(self, deadline_ns: int) -> None:
        """Sleep until a monotonic time, unless and until the run stops."""
        await self._phase(sleep_until(deadline_ns))

    async def run_arm(self, arm: ArmSpec, start: int) -> ArmRun:
        """Send this dispatcher's requests of `arm` from `start` (monotonic ns) and wait for them."""
        recs = self.by_arm[arm.name]
        if self.share is None:
            self.log.event("arm", arm=arm.name, start_ns=start)
        self.stats.start_arm(arm.name, start)
        self._probe.take()  # the lags of the warm-up or the gap before: not this arm's
        cpu0, sender0 = time.process_time(), senders_cpu_s()
        if arm.closed_loop:
            sending = self._closed_loop(recs, start, self.options.shard.users(arm.user_count))
        elif arm.policy is not None:
            sending = self._shaped(arm, recs, start)
        else:
            sending = self._open_loop(recs, start)
        await self._phase(sending)
        await self._drain()
        # A stop before the start (run_arm is entered a lead ahead of it, or earlier) sent nothing:
        # its window is empty, never one that ends before it starts.
        end = max(_now(), start)
        cpu_s, sender_s = time.process_time() - cpu0, senders_cpu_s() - sender0
        if self.share is None:
            self.log.event("arm", arm=arm.name, end_ns=end)
        sent = sum(r.sent_ns is not None for r in recs)
        lags = self.arm_lags[arm.name] = self._probe.take()
        window = ArmRun(
            arm.name, start, end, len(recs), sent, cpu_s, lag_figures(lags),
            sender_cpu_s=sender_s if self.options.transport == "sender" else None,
        )  # fmt: skip
        self.arm_windows.append(window)
        return window

    async def _phase(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run one stoppable step of sending; a stop cancels it (and only it)."""
        if self._stopping:
            coro.close()
            return
        self._sending = asyncio.ensure_future(coro)
        try:
            await self._sending
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._sending = None

    async def _warm_up(self) -> None:
        for rec in self.warmups:
            rec.planned_ns = _now()
            await asyncio.shield(self._launch(rec))
        report_warmup(self.warmups)  # before the arms: a long run should not hide it until the end

    async def _open_loop(self, recs: list[RequestRecord], start: int) -> None:
        offsets = self.offset_ns
        for rec in recs:
            rec.planned_ns = start + int(offsets[rec.request_id])
        if self.options.transport == "sender":
            for rec in recs:  # each handed to the sender process ahead of its time, which writes it
                body = self._body(rec)
                await sleep_until(start + int(offsets[rec.request_id]) - STAGE_AHEAD_NS)
                self._launch(rec, body, departing=True)
            return
        i, n = 0, len(recs)
        while i < n:
            rec = recs[i]
            body = self._body(rec)  # encoded before the deadline, not after it
            await sleep_until(rec.planned_ns)
            self._launch(rec, body)
            i += 1
            now = _now()
            while i < n and recs[i].planned_ns <= now:
                self._launch(recs[i])
                i += 1

    async def _shaped(self, arm: ArmSpec, recs: list[RequestRecord], start: int) -> None:
        assert arm.policy is not None
        offsets = self.offset_ns
        for rec in recs:
            rec.planned_ns = start + int(offsets[rec.request_id])
        rng = np.random.default_rng([self.plan.header.seed, _POLICY_STREAM, zlib.crc32(arm.name.encode())])
        policy = parse_policy(arm.policy).create(rng)
        tokens = self._plan_tokens
        shaped = ShapedArm(
            arm.policy_name or arm.policy, policy, recs, arrivals_of(recs, *tokens), self.log.arrived
        )
        waker = Waker()
        try:
            await play(shaped, start, lambda rec: self._launch(rec, shaped=(shaped, waker)), waker)
        finally:  # completed, stopped or failed: what the policy still holds is never sent
            for rec in shaped.end(_now()):
                self.log.row(rec)
            if shaped.fault is not None:
                self.log.event("policy_fault", arm=arm.name, error=shaped.fault)

    async def _closed_loop(self, recs: list[RequestRecord], start: int, users: int) -> None:
        queue = deque(recs)

        async def user() -> None:
            free_at = start
            while queue and not self._stopping:
                rec = queue.popleft()
                rec.planned_ns = free_at
                # shield: a stop ends the user, not the request it has in flight
                await asyncio.shield(self._launch(rec))
                free_at = _now()

        await asyncio.gather(*(user() for _ in range(users)))

    def _launch(
        self,
        rec: RequestRecord,
        body: bytes | None = None,
        shaped: tuple[ShapedArm, Waker] | None = None,
        departing: bool = False,
    ) -> asyncio.Task[None]:
        body = body or self._body(rec)
        loop = asyncio.get_running_loop()
        if departing:
            scheduled = _Departing(rec, self.log, self.stats)
            task = loop.create_task(self._depart(rec, body, scheduled))
            self._departing[task] = scheduled
            task.add_done_callback(self._departing.pop)
        else:
            task = loop.create_task(self._request(rec, body, shaped))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def _body(self, rec: RequestRecord) -> bytes:
        row = self._warmup_rows[-rec.request_id - 1] if rec.warmup else rec.request_id
        return self.api.encode(self._prompts[row], rec.stream)

    async def _request(
        self, rec: RequestRecord, body: bytes, shaped: tuple[ShapedArm, Waker] | None = None
    ) -> None:
        """Send one request and log its row. In a shaped arm (`shaped`: its state and the waker of its
        loop), its sending, first token and end are reported to the policy as they happen."""
        acquired = False
        cap: asyncio.Semaphore | None = None  # --max-in-flight's, once this request holds a place in it
        try:
            if self._semaphore is not None or self._throttler is not None:
                t0 = _now()
                if self._semaphore is not None:
                    await self._semaphore.acquire()
                    acquired = True
                if self._throttler is not None:
                    await self._throttler.acquire()
                rec.queued_ns = _now() - t0
            else:
                rec.queued_ns = 0
            if self._cap is not None:
                held_from = _now() if self._cap.locked() else None
                try:
                    await self._cap.acquire()
                    cap = self._cap
                finally:  # a request cancelled while held is recorded as held too (and stays not_sent)
                    rec.capped_ns = 0 if held_from is None else _now() - held_from
            rec.sent_ns = _now()
            self.log.sent(rec)
            if not rec.warmup:
                self.stats.on_sent(rec.lateness_ns or 0)
            if shaped is not None:
                arm, waker = shaped
                arm.sent(rec)
                waker.set()
                if rec.stream:
                    arm.watch_stream(rec, waker.set)
            await perform(self._client, self.api, body, rec, self.options.timeout_s)
        except asyncio.CancelledError:
            if rec.sent_ns is not None:  # cancelled while still queued at the cap: never sent
                rec.finish("cancelled", _now(), self._cancel_reason)
        finally:
            if acquired:
                self._semaphore.release()
            if cap is not None:
                cap.release()
            if rec.terminal:
                if shaped is not None:
                    shaped[0].finished(rec)
                    shaped[1].set()
                if self._api_key and rec.error and self._api_key in rec.error:
                    rec.error = rec.error.replace(self._api_key, "***")
                self.log.row(rec)
                if not rec.warmup:
                    self.stats.on_done(rec.status)

    async def _depart(self, rec: RequestRecord, body: bytes, departing: _Departing) -> None:
        """An open-loop request handed to the sender process (`--transport sender`), which stamps it
        sent, logs its `sent` line and writes it at `planned_ns` (`_Departing`); its row as it ends.
        Caps are refused with that transport (`RunOptions.validate`), so nothing waits here."""
        rec.queued_ns = 0
        try:
            client: Any = self._client  # made by run() before any request
            await perform(client, self.api, body, rec, self.options.timeout_s, departing)
        except asyncio.CancelledError:  # a stop: sent (then cancelled), or withdrawn (never sent)
            if rec.sent_ns is not None:
                rec.finish("cancelled", _now(), self._cancel_reason)
        finally:
            if rec.terminal:
                if self._api_key and rec.error and self._api_key in rec.error:
                    rec.error = rec.error.replace(self._api_key, "***")
                self.log.row(rec)
                self.stats.on_done(rec.status)

    async def _drain(self) -> None:
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _tick(self, progress: ProgressDisplay) -> None:
        last_log = 0
        while True:
            await asyncio.sleep(_TICK_S)
            progress.refresh()
            now = _now()
            if now - last_log >= 1_000_000_000:
                self.log.event("tick", t=now)
                last_log = now

    def finish(self) -> None:
        """Write a row for every request that has none (never sent: `not_sent`), then the end line (a
        worker's parent writes that, once every worker has finished)."""
        now = _now()
        for rec in self.records:
            if rec.terminal:
                continue
            if rec.sent_ns is not None:  # unreachable after a drain; kept so no request can go missing
                rec.finish("cancelled", now, "the runner ended before the request did")
            self.log.row(rec)
        if self.share is None:
            self.log.event("end", t=now, reason=self.stop_reason or "completed")
        self.log.close()


class _Departing:
    """The `send_at` of an open-loop request with the sender process (`ScheduledSend`): its crash-safe
    `sent` line written by that process once it decided to send, before the write; stamped sent and
    on the wire from its stamps; counted as sent on the display once written."""

    __slots__ = ("_log", "_rec", "_stats", "due_ns", "withdraw")

    def __init__(self, rec: RequestRecord, log: RecordLog, stats: Stats) -> None:
        assert rec.planned_ns is not None
        self.due_ns = rec.planned_ns
        self.withdraw: Callable[[], bool] | None = None  # set once handed over (the transport's)
        self._rec, self._log, self._stats = rec, log, stats

    @property
    def sent_line(self) -> tuple[int, bytes, bytes]:
        return self._log.sent_line(self._rec)

    def sending(self, t_ns: int, logged: bool = False) -> None:  # or the loop's, for a failed attempt
        self._rec.sent_ns = t_ns
        if not logged:
            self._log.sent(self._rec)

    def on_wire(self, t_ns: int | None) -> None:
        self._rec.wire_ns = t_ns

    def written(self) -> None:  # on the loop
        self._stats.on_sent(self._rec.lateness_ns or 0)

    def unsent(self) -> bool:
        """True if it never will be sent (not handed over yet, or taken back now)."""
        return self.withdraw is None or self.withdraw()


def pool_size(plan: Plan, options: RunOptions) -> int:
    """Connections the run may need at once, so httpx's pool never queues a request: the cap, or per
    arm its users (closed loop) or the most of its requests (in this shard) planned within one
    `timeout_s + _POOL_SLACK_S` (open loop): a request is in flight for at most `timeout_s` after it
    is sent, so two planned further apart overlap only if the first went out over a second late."""
    if options.max_concurrency:
        return options.max_concurrency
    need = max(1, *_arm_needs(plan, options).values())
    return min(need, options.max_in_flight) if options.max_in_flight else need


def _arm_needs(plan: Plan, options: RunOptions) -> dict[str, int]:
    """Per arm, the connections it may need at once (see `pool_size`)."""
    shard = options.shard
    mine = shard.mask(plan.rows["request_id"].to_numpy(dtype=np.int64))
    arm_of = plan.rows["arm"].to_numpy(dtype=object)[mine]
    offsets = plan.rows["offset_s"].to_numpy(dtype=float)[mine]
    span = options.timeout_s + _POOL_SLACK_S

    def need(arm: ArmSpec) -> int:
        if arm.closed_loop:
            return shard.users(arm.user_count)
        mine = offsets[arm_of == arm.name]
        return most_within(mine, span) if arm.policy is None else in_flight_bound(arm.policy, mine, span)

    return {a.name: need(a) for a in plan.header.arms}


def staged_at_once(plan: Plan, options: RunOptions) -> int:
    """With the sender process, the most requests handed over and not yet written at once (each holds
    a duplicate of its connection's descriptor until written): per open-loop arm, the most of its
    requests planned within `STAGE_AHEAD_NS`; 0 with another transport."""
    if options.transport != "sender":
        return 0
    mine = options.shard.mask(plan.rows["request_id"].to_numpy(dtype=np.int64))
    arm_of = plan.rows["arm"].to_numpy(dtype=object)[mine]
    offsets = plan.rows["offset_s"].to_numpy(dtype=float)[mine]
    open_loop = [a.name for a in plan.header.arms if not a.closed_loop and a.policy is None]
    return max([0, *(most_within(offsets[arm_of == name], STAGE_AHEAD_NS / 1e9) for name in open_loop)])


def least_connections(plan: Plan, options: RunOptions) -> int:
    """The connections the run cannot do with fewer of: --max-concurrency as given, else the most
    closed-loop users of an arm or requests of a shaped arm in flight at once (capping those would
    change the load, or add a wait the policy did not cause to the hold), else one. A shaped arm
    refuses --max-concurrency and --max-rate (`RunOptions.check_shaped`)."""
    for arm in plan.header.arms:
        if arm.policy is not None:
            options.check_shaped(arm.name)
    if options.max_concurrency:
        return options.max_concurrency
    needs = _arm_needs(plan, options)
    uncappable = [needs[a.name] for a in plan.header.arms if a.closed_loop or a.policy is not None]
    least = max([1, *uncappable])
    return min(least, options.max_in_flight) if options.max_in_flight else least


def _throttler(max_rate: float | None) -> Throttler | None:
    """At most max_rate requests per second: `floor(rate)` per 1 s window, or 1 per 1/rate s below 1/s."""
    if max_rate is None:
        return None
    if max_rate >= 1:
        return Throttler(rate_limit=int(max_rate), period=1.0, retry_interval=0.001)
    return Throttler(rate_limit=1, period=1.0 / max_rate, retry_interval=0.001)
