"""Whose fault a failed exchange was: the server's or the network's, or the client's own.

A load generator that runs out of something must not blame the server. With an open-files limit
below the connection pool, `socket()` fails with EMFILE, and httpcore and aiohttp both hand that up
as a *connect* error, the errno only on the exception's cause chain; such a request measured the
client, so it gets `client_error` (and the run an error flag: harness/energy/client_faults.py).
The same holds for anything our own stack raises that no server or network can cause.
"""

from __future__ import annotations

import errno

import httpx

from harness.backends.base import StreamFault

# errno values by which the client's own host says it ran out of something: whatever the server does,
# these come from our side of the socket.
CLIENT_ERRNOS = {
    errno.EMFILE: "the process's open-files limit is reached: raise `ulimit -n`",
    errno.ENFILE: "the system's open-files table is full",
    errno.ENOBUFS: "the kernel has no buffer space for another socket",
    errno.ENOMEM: "out of memory",
    errno.EADDRNOTAVAIL: "no free local port: the ephemeral port range is exhausted",
}
# What a server or the network does to an exchange. An exception of any other kind raised while
# sending (httpx's LocalProtocolError, a closed session, a bug) is the client's own.
_SERVER_OR_NETWORK = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.DecodingError, OSError)
_CHAIN_LIMIT = 32  # exception chains are short; this only bounds a pathological one


def failure(exc: Exception, responded: bool) -> tuple[str, str]:
    """The terminal status and error text of an exchange that raised `exc` (other than the runner's
    own per-request deadline). `responded`: whether response headers had arrived."""
    where = "during the response" if responded else "before the response"
    own = _client_cause(exc)
    if own is not None:
        return "client_error", f"{_resource(own)} (in the client, not the server): {describe(exc)}"
    if isinstance(exc, httpx.PoolTimeout):  # a TimeoutException, but the wait was in our own pool
        return "client_error", f"no free connection in the client's own pool: {describe(exc)}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect_error", describe(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", describe(exc)
    if isinstance(exc, StreamFault):
        return "stream_error", str(exc)
    if isinstance(exc, _SERVER_OR_NETWORK):  # cut connections, protocol violations, bad encodings
        return "stream_error", f"{describe(exc)} ({where})"
    return "client_error", f"the client failed, not the server: {describe(exc)} ({where})"


def _client_cause(exc: BaseException) -> BaseException | None:
    """The first exception on `exc`'s chain (itself, causes, contexts) that says the client ran out
    of a resource of its own; None if none does."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _CHAIN_LIMIT:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MemoryError) or (
            isinstance(current, OSError) and current.errno in CLIENT_ERRNOS
        ):
            return current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def _resource(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in CLIENT_ERRNOS:
        return f"{errno.errorcode[exc.errno]}: {CLIENT_ERRNOS[exc.errno]}"
    return "MemoryError: out of memory"


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
