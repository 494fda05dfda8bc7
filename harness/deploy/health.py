"""Waiting for an inference server to be ready, and asking it which version it is.

vLLM, TGI and our mock all answer `GET /health` with 200 once they serve requests. The version comes
from the server itself where it says it (vLLM: `GET /version`; TGI: `GET /info`), because an image tag
or a package on disk is not necessarily what is running.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class ServerError(RuntimeError):
    """The server did not start, died, or never became healthy; the message is one line for the CLI."""


def probe(url: str, timeout_s: float = 2.0) -> bool:
    """True when `url` answers 200."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_http_healthy(
    url: str,
    timeout_s: float,
    failed: Callable[[], str | None] = lambda: None,
    poll_s: float = 0.5,
    on_wait: Callable[[float], None] = lambda waited_s: None,
) -> float:
    """Poll `url` until it answers 200; return the seconds waited.

    `failed` is asked on every round whether the server is already beyond hope (process exited,
    container unhealthy): it returns the reason, and we stop waiting at once instead of at the timeout.
    """
    start = time.monotonic()
    while True:
        if probe(url):
            return time.monotonic() - start
        reason = failed()
        if reason:
            raise ServerError(reason)
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise ServerError(f"{url} not healthy after {timeout_s:g} s")
        on_wait(waited)
        time.sleep(poll_s)


def server_version(base_url: str, timeout_s: float = 5.0) -> dict[str, object]:
    """What the server says about itself: `{"version": ..., "source": "/version" | "/info", ...}`.

    `{"version": None}` when it says nothing (e.g. an endpoint without either route).
    """
    base = base_url.rstrip("/")
    with httpx.Client(timeout=timeout_s) as client:
        for path in ("/version", "/info"):
            try:
                response = client.get(base + path)
                body = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                continue
            if isinstance(body, dict) and body.get("version"):
                info: dict[str, object] = {"version": str(body["version"]), "source": path}
                # TGI's /info also names the exact build and the model it loaded.
                for key in ("sha", "docker_label", "model_id", "model_dtype", "max_batch_total_tokens"):
                    if body.get(key) is not None:
                        info[key] = body[key]
                return info
    return {"version": None}
