"""The proxy's request log (`--log FILE`): JSON lines, appended, one unbuffered write per line.

Each line is one `os.write` on an O_APPEND descriptor, as the runner's request log does
(harness/runfolder/request_log.py): a SIGKILL loses nothing the kernel has accepted, and lines never
interleave. A proxy started again on the same file appends a new session, which begins with its
own header. Lines (times are monotonic ns of this host; the header's anchor maps them to epoch):

    {"k": "header", ...}     the session: policy, upstream (no userinfo), listen URL, clock anchor,
                             the policy's start (window boundaries count from it), limits
    {"k": "arrived", ...}    a shaped request reached the policy (id, path, arrived_ns, its epoch twin)
    {"k": "request", ...}    any request, once, when it ended: the `Exchange` fields below
    {"k": "end", ...}        the session ended: why, and what became of what was held and in flight

No header or body of a request or response is written, so no credential.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.clock import ClockAnchor

LOG_SCHEMA_VERSION = 1

Outcome = Literal[
    "ok",  # a 2xx answer relayed whole
    "upstream_error",  # the upstream answered non-2xx, or broke off mid-answer
    "upstream_down",  # no answer from the upstream at all: 502
    "cancelled_while_held",  # never sent upstream: the client left while held, or shutdown's grace ran out
    "cancelled",  # sent upstream, then the client left (or shutdown's grace ran out) before the end
    "rejected_queue_full",  # --max-held requests were held already: 503
    "rejected_stopping",  # arrived after Ctrl-C/SIGTERM on a kept-alive connection: 503
    "rejected_too_large",  # a request body over the proxy's limit: 413
    "policy_fault",  # a shaped request held when the policy raised, or arriving after: 503
]
Cause = Literal["client", "shutdown"]  # who ended a cancelled request: its client, or the proxy stopping


@dataclass
class Exchange:
    """One request through the proxy, from its arrival to its end (monotonic ns; None: never reached)."""

    request_id: int
    method: str
    path: str
    shaped: bool
    arrived_ns: int
    stream: bool | None = None
    max_tokens: int | None = None
    released_ns: int | None = None
    sent_ns: int | None = None
    first_byte_ns: int | None = None
    done_ns: int | None = None
    status: int | None = None  # the upstream's status, or the proxy's own answer (502, 503, 413)
    outcome: Outcome | None = None
    cause: Cause | None = None  # for the cancelled outcomes
    output_tokens: int | None = None
    error: str | None = None

    @property
    def hold_ns(self) -> int | None:
        return None if self.released_ns is None else self.released_ns - self.arrived_ns

    def line(self, anchor: ClockAnchor) -> dict[str, Any]:
        return {
            "k": "request",
            "id": self.request_id,
            "method": self.method,
            "path": self.path,
            "shaped": self.shaped,
            "stream": self.stream,
            "max_tokens": self.max_tokens,
            "arrived_ns": self.arrived_ns,
            "arrived_epoch_ns": anchor.to_epoch_ns(self.arrived_ns),
            "released_ns": self.released_ns,
            "hold_ns": self.hold_ns,
            "sent_ns": self.sent_ns,
            "first_byte_ns": self.first_byte_ns,
            "done_ns": self.done_ns,
            "status": self.status,
            "outcome": self.outcome,
            "cause": self.cause,
            "output_tokens": self.output_tokens,
            "error": self.error,
        }


class ProxyLog:
    """The log file, or nothing without --log (the metrics count either way)."""

    def __init__(self, path: Path | None, anchor: ClockAnchor, header: dict[str, Any]) -> None:
        self.anchor = anchor
        self._fd = None if path is None else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._write(
            {"k": "header", "schema_version": LOG_SCHEMA_VERSION, "anchor": anchor.as_dict(), **header}
        )

    def arrived(self, exchange: Exchange) -> None:
        self._write(
            {
                "k": "arrived",
                "id": exchange.request_id,
                "path": exchange.path,
                "arrived_ns": exchange.arrived_ns,
                "arrived_epoch_ns": self.anchor.to_epoch_ns(exchange.arrived_ns),
            }
        )

    def ended(self, exchange: Exchange) -> None:
        self._write(exchange.line(self.anchor))

    def end(self, **fields: Any) -> None:
        self._write({"k": "end", **fields})

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fd is None:
            return
        data = memoryview((json.dumps(obj, separators=(",", ":")) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data) :]
