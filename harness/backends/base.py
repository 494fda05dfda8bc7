"""What every protocol client shares: the request a plan row describes, and the parsing contract.

A protocol (`Api` subclass) only knows its wire format: the path and JSON body of a request, and how
to read a response body or one SSE event into a `RequestRecord`. Timing, HTTP and error taxonomy live
in `harness.backends.client`, the same for every protocol.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.records import RequestRecord

# Flags returned by `Api.read_event`.
CONTENT = 1  # the event carried generated text (a "content-bearing chunk")
END = 2  # the protocol's end-of-stream marker (OpenAI `[DONE]`, TGI's final event)


class StreamFault(Exception):
    """The server sent something this protocol cannot accept (malformed data, an error event)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """The part of a plan row that goes on the wire."""

    prompt: str | None
    messages: list[dict[str, Any]] | None
    max_tokens: int | None
    ignore_eos: bool
    temperature: float | None


class Api(ABC):
    """One wire protocol. Subclasses set `name` and implement the four abstract methods below."""

    name: ClassVar[str]
    streams: ClassVar[bool] = True  # whether it has a streaming variant

    def __init__(self, model: str | None = None) -> None:
        self.model = model

    @abstractmethod
    def path(self, stream: bool) -> str:
        """The request path."""

    @abstractmethod
    def body(self, prompt: Prompt, stream: bool) -> dict[str, Any]:
        """The request's JSON body."""

    @abstractmethod
    def read_body(self, data: Any, headers: Mapping[str, str], rec: RequestRecord) -> None:
        """Fill tokens and finish reason from a complete (non-streaming) JSON response."""

    @abstractmethod
    def read_event(self, data: str, rec: RequestRecord) -> int:
        """Read one SSE event's data; return CONTENT and/or END flags, raise StreamFault if unusable."""

    def read_headers(self, headers: Mapping[str, str], rec: RequestRecord) -> None:  # noqa: B027 (a hook)
        """Fill what a protocol reports in response headers (default: nothing)."""

    def check(self, prompt: Prompt, where: str) -> None:  # noqa: B027 (a hook: most accept any prompt)
        """Raise InputError when this protocol cannot send `prompt` (checked before the run starts)."""

    def encode(self, prompt: Prompt, stream: bool) -> bytes:
        return json.dumps(self.body(prompt, stream), separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: str | bytes, what: str) -> Any:
    # strict=False accepts raw control characters inside strings: a server that forgets to escape a
    # generated \x0b should cost a warning-free parse, not a lost measurement.
    try:
        return json.loads(data, strict=False)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        snippet = data[:80] if isinstance(data, str) else data[:80].decode("utf-8", "replace")
        raise StreamFault(f"malformed {what} ({reason}): {snippet!r}") from None


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def error_text(error: Any) -> str:
    """The message of an error object as OpenAI, vLLM, TGI or FastAPI shape it."""
    if not isinstance(error, dict):
        return str(error)
    inner = error.get("error")
    if isinstance(inner, dict):  # OpenAI, vLLM >= 0.6: {"error": {"message", "type", "code"}}
        message, kind = inner.get("message"), inner.get("type")
    elif inner is not None:  # TGI: {"error": "...", "error_type": "..."}
        message, kind = inner, error.get("error_type")
    else:  # older vLLM: {"object": "error", "message", "type"}; FastAPI: {"detail": ...}
        message, kind = error.get("message") or error.get("detail"), error.get("type")
    text = str(message) if message is not None else json.dumps(error)[:200]
    return f"{kind}: {text}" if kind else text
