"""What the proxy reads from the traffic it relays (never changing a byte of it), and its own answers.

- Which requests are shaped: generation requests of the OpenAI API (vLLM) and of TGI, by method and
  path; everything else (/v1/models, /info, /health, /metrics, ...) passes straight through.
- From a shaped request's JSON body: whether it streams, its max tokens (what slo-slack's E2E
  prediction needs) and its prompt tokens where the body holds token ids (the proxy does not
  tokenize text, so otherwise None).
- From the end of a response, after it was relayed: the output tokens the server reported (OpenAI
  `usage`, which a stream carries only with `stream_options.include_usage`; TGI `details` or its
  `x-generated-tokens` header), for policies that learn the time per token.
- Headers: hop-by-hop ones are the proxy's own business (RFC 9110, 7.6.1) and are not forwarded.
- The proxy's own error answers, worded as each API words errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Api = Literal["openai", "tgi"]

# POST paths that generate. TGI's `POST /` is its compatibility route to /generate and
# /generate_stream: shaped too, or a client could pass the policy by using it.
SHAPED: dict[str, Api] = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai",
    "/generate": "tgi",
    "/generate_stream": "tgi",
    "/": "tgi",
}
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "trailers", "transfer-encoding", "upgrade"}
)  # fmt: skip
# Not forwarded on requests either: the client library sets them for the upstream connection.
_REQUEST_OWN = frozenset({"host", "content-length"})
TAIL_BYTES = 64 * 1024  # the end of a response kept to read its token count from


def shaped_api(method: str, path: str) -> Api | None:
    return SHAPED.get(path) if method == "POST" else None


@dataclass(frozen=True)
class RequestFacts:
    stream: bool | None = None
    max_tokens: int | None = None
    prompt_tokens: int | None = None


def request_facts(api: Api, path: str, body: bytes) -> RequestFacts:
    """What a policy may know of a generation request; a body that is not a JSON object is the
    upstream's to refuse, and tells the policy nothing."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        return RequestFacts(stream=True if path == "/generate_stream" else None)
    if api == "openai":
        max_tokens = _count(doc.get("max_completion_tokens"))
        prompt = doc.get("prompt")
        token_ids = isinstance(prompt, list) and bool(prompt) and all(_count(t) is not None for t in prompt)
        return RequestFacts(
            stream=doc.get("stream") is True,
            max_tokens=max_tokens if max_tokens is not None else _count(doc.get("max_tokens")),
            prompt_tokens=len(prompt) if token_ids and isinstance(prompt, list) else None,
        )
    params = doc.get("parameters")
    max_new = _count(params.get("max_new_tokens")) if isinstance(params, dict) else None
    return RequestFacts(stream=path == "/generate_stream" or doc.get("stream") is True, max_tokens=max_new)


def output_tokens(tail: bytes, headers: Mapping[str, str]) -> int | None:
    """The output tokens a response reported, from its last TAIL_BYTES: a JSON body's `usage` or
    `details`, or the last SSE event that has them; TGI's header otherwise; None when unreported."""
    try:
        doc = json.loads(tail)
    except (ValueError, UnicodeDecodeError):
        doc = None
    counted = _reported(doc) if isinstance(doc, dict) else None
    if doc is None:  # not one JSON document: a stream, whose last events say it
        for line in reversed(tail.split(b"\n")):
            counted = _event_tokens(line)
            if counted is not None:
                break
    return counted if counted is not None else _count(_header(headers, "x-generated-tokens"))


def _event_tokens(line: bytes) -> int | None:
    if not line.startswith(b"data:"):
        return None
    try:
        doc = json.loads(line[5:])
    except (ValueError, UnicodeDecodeError):
        return None
    return _reported(doc) if isinstance(doc, dict) else None


def _reported(doc: dict[str, Any]) -> int | None:
    usage, details = doc.get("usage"), doc.get("details")
    if isinstance(usage, dict):
        return _count(usage.get("completion_tokens"))
    if isinstance(details, dict):
        return _count(details.get("generated_tokens"))
    return None


def _count(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def forwarded(headers: Iterable[tuple[str, str]], request: bool) -> list[tuple[str, str]]:
    """Headers to pass on: all but hop-by-hop ones (and those named in Connection); on a request,
    also not Host and Content-Length. Authorization and the like are end-to-end: they pass."""
    pairs = list(headers)
    named = {token.strip().lower() for k, v in pairs if k.lower() == "connection" for token in v.split(",")}
    dropped = HOP_BY_HOP | named | (_REQUEST_OWN if request else frozenset())
    return [(k, v) for k, v in pairs if k.lower() not in dropped]


def error_body(path: str, status: int, message: str, kind: str) -> bytes:
    """The proxy's own error answer: OpenAI's error object on /v1/ paths, TGI's shape elsewhere."""
    if path.startswith("/v1/"):
        doc: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    else:
        doc = {"error": message, "error_type": kind}
    return json.dumps(doc).encode()
