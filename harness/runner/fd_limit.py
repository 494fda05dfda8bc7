"""Enough open files for the run's connections: the soft limit raised to cover the pool, the
connections capped to what it allows, or a refusal before anything is written.

Every connection is a descriptor. Below the pool, `socket()` fails with EMFILE part-way through the
run, and those requests measure the client, not the server (they end `client_error`).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from foundation.errors import InputError

# Descriptors the runner needs besides its connections. A `joulebench run` of the embedded default
# peaked at 12 (stdin/out/err, the event loop's epoll descriptor and self-pipe, the request log, the
# embedded stack's pipes and logs, the power and metrics pollers' connections); 64 leaves room for
# more power sources (Prometheus, dcgm-exporter) and for transient ones (a lookup's socket, a
# connection opened while a closing one still holds its descriptor).
FD_MARGIN = 64


@dataclass(frozen=True)
class FdBudget:
    """The open-files limit as the run starts, and the connections it allows at once."""

    soft: int
    hard: int
    cap: int | None  # None: the limit covers the pool; else the most connections it leaves room for


def ensure_fd_limit(pool: int, least: int) -> FdBudget:
    """Raise the soft open-files limit to cover `pool` connections plus FD_MARGIN; failing that, cap
    the connections at what the limit leaves room for, or refuse when that is under `least`.

    `pool` is a worst case (an open-loop arm's requests that could overlap within one timeout), so a
    cap usually costs nothing: requests beyond it wait in the client, before they are sent, and their
    wait counts in lateness (which is flagged past its bound), never in the server's latency. `least`
    is what cannot be capped without changing the load: closed-loop users, a shaped arm's requests in
    flight at once (a cap's wait would count in the policy's hold), or --max-concurrency as given.
    Below that, `socket()` would fail with EMFILE part-way through the run and those requests would
    measure the client, not the server: refused with one line (InputError)."""
    needed = pool + FD_MARGIN
    soft, hard = _raise_soft_limit(needed)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return FdBudget(soft, hard, None)
    room = soft - FD_MARGIN
    if room >= max(least, 1):
        return FdBudget(soft, hard, room)
    fix = f"`ulimit -n {least + FD_MARGIN}` in the shell that starts joulebench"
    if hard != resource.RLIM_INFINITY and hard < least + FD_MARGIN:
        fix += f" (above the hard limit {hard}: as root, or in /etc/security/limits.conf)"
    raise InputError(
        f"open-files limit (ulimit -n) {soft}: this run needs at least {least + FD_MARGIN} descriptors, "
        f"{least} connections at once (closed-loop users, shaped arms or --max-concurrency) + {FD_MARGIN} "
        f"for the runner itself; raise it with {fix}"
    )


def _raise_soft_limit(needed: int) -> tuple[int, int]:
    """Raise the soft open-files limit towards `needed`, as far as the hard one allows (each
    connection is a descriptor). Returns (soft limit now, hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft, hard
    # An unlimited hard limit cannot be the soft one on every system (macOS caps it): ask for `needed`.
    want = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft, hard
