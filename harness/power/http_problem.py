"""An HTTP failure of a power reader in one line, for the one-line bad-input errors.

httpx's own text for a status error spans two lines (the second points at developer.mozilla.org),
which would break the `joulebench: error: ...` contract.
"""

from __future__ import annotations

import httpx


def http_problem(exc: Exception) -> str:
    """'HTTP 404 Not Found' for an error status; otherwise the error's first line (or its type)."""
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_not_found(exc: Exception) -> bool:
    """A 404: the server answers, but has no such endpoint (the URL names some other server)."""
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404
