"""`--transport auto` (the default) made concrete for one run, with the reason the manifest records.

The sender process writes each open-loop request at its time, so parsing other responses cannot delay
it (docs/runner.md: with the sender thread it replaced, 0.88 ms p99 at the wire against aiohttp's
3.33 ms at 100 requests/s of 128-token streams from vLLM). It applies only where the schedule is
known ahead and nothing makes a request wait: an open-loop arm, an http:// target, no cap, and an
open-files limit that covers its connections without capping them; and on Linux (AF_UNIX
SOCK_SEQPACKET). Anywhere else auto takes aiohttp, which every earlier energy figure in docs/results
used; closed-loop and shaped arms are sent by the event loop whichever
transport carries them, so a plan of only those gains nothing from it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from urllib.parse import urlsplit

from harness.backends.client import Transport
from harness.backends.sender_process import sender_available
from harness.runner.dispatcher import least_connections, pool_size, staged_at_once
from harness.runner.fd_limit import ensure_fd_limit
from harness.runner.options import RunOptions
from traffic.plan import Plan


def resolve_transport(plan: Plan, url: str, options: RunOptions) -> RunOptions:
    """`options` with a concrete `transport`; for auto, `transport_reason` says why that one."""
    if options.transport != "auto":
        return options
    chosen, why = _choose(plan, url, options)
    return replace(options, transport=chosen, transport_reason=f"auto: {chosen}, {why}")


def _choose(plan: Plan, url: str, options: RunOptions) -> tuple[Transport, str]:
    scheme = urlsplit(url).scheme
    if scheme != "http":
        return "aiohttp", f"the target is {scheme}:// (the sender writes http:// only)"
    if not sender_available():
        return "aiohttp", f"{sys.platform} has no AF_UNIX SOCK_SEQPACKET (the sender process needs it)"
    caps = {"--max-concurrency": options.max_concurrency, "--max-in-flight": options.max_in_flight}
    for name, cap in {**caps, "--max-rate": options.max_rate}.items():
        if cap is not None:
            return "aiohttp", f"{name} is set (a request waiting for it cannot be written at its time)"
    sender = replace(options, transport="sender")
    staged = staged_at_once(plan, sender)
    if staged == 0:
        return "aiohttp", "no open-loop request in this run (only closed-loop or shaped arms)"
    needed = pool_size(plan, sender) + staged
    budget = ensure_fd_limit(needed, least_connections(plan, sender))
    if budget.cap is not None:
        return "aiohttp", (
            f"the open-files limit leaves room for {budget.cap} of the {needed} connection descriptors "
            "the sender needs (it cannot make a request wait for one; aiohttp can)"
        )
    return "sender", "an open-loop plan to an http:// target with no cap"
