"""`execute_plan`: run a plan against a target into a run folder, and hand back a `RunResult`.

This is the "execute" stage of `joulebench run` (plan -> [idle capture] -> execute -> [power fetch ->
join -> report]); the stages around it hook in through `harness.session.pipeline`.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from foundation.errors import InputError
from harness.backends import Target, senders_cpu_s
from harness.backends.sender_process import sender_available
from harness.clock import ClockAnchor, new_event_loop
from harness.records import Shard
from harness.runfolder import RunFolder, utc_iso
from harness.runfolder.request_log import warmup_rows
from harness.runner.dispatcher import Dispatcher, least_connections, pool_size, staged_at_once
from harness.runner.fd_limit import FdBudget, ensure_fd_limit
from harness.runner.options import RunOptions
from harness.runner.plan_prompts import prompts_from_plan
from harness.runner.progress import ProgressDisplay
from harness.runner.result import RunResult
from harness.runner.transport_choice import resolve_transport
from harness.runner.workers import WorkerPool
from traffic.plan import ArmSpec, Plan
from traffic.shaping import parse_policy


def check_run(plan: Plan, target: Target, options: RunOptions) -> FdBudget:
    """Everything that can be checked before anything is written (InputError, one line). Raises the
    open-files limit to cover the run's connections, or says how many it allows (`cap`), or refuses."""
    options = resolve_transport(plan, target.url, options.validate())
    shard = options.shard
    ids = plan.rows["request_id"].to_numpy(dtype=np.int64)
    prompts = prompts_from_plan(plan)
    for row in sorted({*np.flatnonzero(shard.mask(ids)).tolist(), *warmup_rows(plan, options.warmup)}):
        target.api.check(prompts[row], f"plan request {row}")
    arm_of = plan.rows["arm"].to_numpy(dtype=object)
    for arm in plan.header.arms:
        _check_policy(arm, shard)
        mine = shard.mask(ids[arm_of == arm.name])
        if arm.closed_loop and mine.any() and shard.users(arm.user_count) == 0:
            users = arm.user_count
            raise InputError(
                f"--shard {shard}: closed-loop arm {arm.name!r} has {users} user(s), fewer than the "
                f"{shard.count} shards; use at most {users} shards"
            )
    if options.transport == "sender" and urlsplit(target.url).scheme != "http":
        raise InputError(f"--transport sender: only http:// targets (got {target.url!r})")
    if options.transport == "sender" and not sender_available():
        raise InputError(f"--transport sender: {sys.platform} has no AF_UNIX SOCK_SEQPACKET for its process")
    pool = pool_size(plan, options)
    staged = staged_at_once(plan, options)  # their descriptors' duplicates, held by the sender process
    budget = ensure_fd_limit(pool + staged, least_connections(plan, options))
    if budget.cap is not None and options.transport == "sender":  # it cannot make a request wait for one
        raise InputError(
            f"--transport sender: the open-files limit (ulimit -n) leaves room for {budget.cap} descriptors "
            f"of connections, this plan needs {pool + staged}; raise it, or use --transport aiohttp "
            "(requests beyond the cap wait)"
        )
    return budget


def _check_policy(arm: ArmSpec, shard: Shard) -> None:
    """A shaped arm's policy must load here (a custom class from this machine's PYTHONPATH), and must
    see the whole arm: a shard would run a policy of its own over its slice, a different policy."""
    if arm.policy is None:
        return
    try:
        parse_policy(arm.policy)
    except ValueError as exc:
        raise InputError(f"plan arm {arm.name!r}: policy {arm.policy!r}: {exc}") from None
    if shard.count > 1:
        raise InputError(
            f"--shard {shard}: arm {arm.name!r} is shaped ({arm.policy_name}): a policy must see every "
            "request of its arm, so shaped arms cannot be sharded"
        )


def execute_plan(
    plan: Plan,
    target: Target,
    folder: RunFolder,
    options: RunOptions,
    *,
    api_key: str | None = None,
    anchor: ClockAnchor | None = None,
) -> RunResult:
    """Send `plan` to `target`, log every request into `folder`, compact the log to requests.parquet.

    Blocks until the run ends (completed, time limit, Ctrl-C/SIGTERM: graceful, a second one: at
    once); a row exists for every planned request whichever way it ends. `api_key` is sent as a
    bearer token and never written anywhere. `anchor`: the run's clock anchor, when the stages around
    the execution (idle capture, power sources) already took one; a fresh one otherwise.
    """
    options = resolve_transport(plan, target.url, options.validate())
    budget = check_run(plan, target, options)
    if budget.cap is not None:  # the limit cannot cover the worst case: the extra wait in the client
        options = replace(options, max_concurrency=budget.cap)
    anchor = anchor or ClockAnchor.now()
    dispatcher: Dispatcher | WorkerPool = (WorkerPool if options.workers > 1 else Dispatcher)(
        plan, target, options, folder.log_path, anchor, api_key
    )
    folder.update_manifest(
        clock={"anchor": anchor.as_dict(), "start_utc": utc_iso(anchor.epoch_ns)},
        options=options.as_manifest(),
        shard={
            "index": options.shard.index,
            "count": options.shard.count,
            "start_at_epoch_ns": None
            if options.start_at_epoch_s is None
            else round(options.start_at_epoch_s * 1e9),
        },
        connections={
            "pool": dispatcher.pool_size,
            "fd_limit": [budget.soft, budget.hard],
            "capped_by_fd_limit": budget.cap is not None,
        },
    )
    loop = new_event_loop(options.precise_timer)
    progress = ProgressDisplay(dispatcher.stats, options.progress)
    handled = _install_signals(loop, dispatcher)
    gc.freeze()  # the plan and records are long-lived: keep them out of every collection during the run
    cpu0, wall0 = time.process_time() + senders_cpu_s(), time.monotonic()
    try:
        with progress:
            loop.run_until_complete(dispatcher.run(progress))
    finally:
        cpu_s, wall_s = time.process_time() + senders_cpu_s() - cpu0, time.monotonic() - wall0
        if isinstance(dispatcher, WorkerPool):  # the workers' CPU too (the parent's is small)
            cpu_s += dispatcher.workers_cpu_s
        for sig, previous in handled.items():
            loop.remove_signal_handler(sig)
            if previous is not None:  # None: set outside Python, nothing to restore
                signal.signal(sig, previous)  # the caller's handlers, not asyncio's defaults
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        gc.unfreeze()
        dispatcher.finish()
    end_anchor = ClockAnchor.now()
    compacted = folder.compact(plan)
    end_ns = max((w.end_ns for w in dispatcher.arm_windows), default=end_anchor.mono_ns)
    start_ns = dispatcher.start_ns if dispatcher.start_ns is not None else end_ns
    reason = dispatcher.stop_reason or "completed"
    arms = {arm.name: arm for arm in plan.header.arms}
    folder.update_manifest(
        clock={
            "anchor": anchor.as_dict(),
            "end_anchor": end_anchor.as_dict(),
            "start_utc": utc_iso(anchor.epoch_ns),
        },
        run={
            "start_ns": start_ns,
            "end_ns": end_ns,
            "start_epoch_ns": anchor.to_epoch_ns(start_ns),
            "end_epoch_ns": anchor.to_epoch_ns(end_ns),
            "duration_s": (end_ns - start_ns) / 1e9,
            "stop_reason": reason,
            # The runner's own CPU while executing: a share near 1 means the load generator, not the
            # server, set the pace (lateness and realized rate will show it).
            "client_cpu_s": cpu_s,
            "client_cpu_share": cpu_s / wall_s if wall_s > 0 else None,
        },
        arms=[
            {
                "name": w.name,
                "kind": arms[w.name].kind,
                "spec": arms[w.name].spec,
                "start_ns": w.start_ns,
                "end_ns": w.end_ns,
                "start_epoch_ns": anchor.to_epoch_ns(w.start_ns),
                "end_epoch_ns": anchor.to_epoch_ns(w.end_ns),
                "planned": w.planned,
                "sent": w.sent,
                **({} if w.client() is None else {"client": w.client()}),
                **({} if arms[w.name].policy is None else {"policy": arms[w.name].policy}),
            }
            for w in dispatcher.arm_windows
        ],
        **({"workers": dispatcher.manifest()} if isinstance(dispatcher, WorkerPool) else {}),
    )
    return RunResult(
        folder=folder,
        anchor=anchor,
        start_ns=start_ns,
        end_ns=end_ns,
        arms=list(dispatcher.arm_windows),
        stop_reason=reason,
        requests=compacted.frame,
        client_cpu_s=cpu_s,
    )


def _install_signals(loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher | WorkerPool) -> dict[int, Any]:
    """Ctrl-C and SIGTERM (what Kubernetes sends) stop gracefully; a second one stops at once.

    Returns the handlers they replace, to be put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(sig: signal.Signals) -> None:
        if dispatcher.stop_reason is None:
            inflight = dispatcher.stats.in_flight
            print(
                f"\njoulebench: {sig.name}: stopping; {inflight} request(s) in flight may finish within "
                f"{dispatcher.options.grace_s:g} s (interrupt again to stop at once)",
                file=sys.stderr,
            )
            dispatcher.request_stop("interrupted")
        else:
            print(f"\njoulebench: {sig.name} again: cancelling what is in flight", file=sys.stderr)
            dispatcher.abort()

    handled = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handled[sig] = signal.getsignal(sig)
        loop.add_signal_handler(sig, on_signal, sig)
    return handled
