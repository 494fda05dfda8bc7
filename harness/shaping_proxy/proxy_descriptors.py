"""Enough descriptors for the proxy's queue. (Its event loop is `harness.clock.new_event_loop`, whose
timers fire to the microsecond: a policy's releases are absolute deadlines.)"""

from __future__ import annotations

import resource


def raise_fd_limit() -> int:
    """The soft open-files limit raised to the hard one: every held request keeps its client's
    connection open, and every forwarded one two. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an unlimited hard limit the kernel caps lower: keep the soft one
            pass
    return soft
