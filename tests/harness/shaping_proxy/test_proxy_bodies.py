"""What the proxy reads from the traffic (shaped or not, max tokens, token counts), what headers it
passes on, and how it words its own errors."""

from __future__ import annotations

import json

import pytest

from harness.shaping_proxy.proxy_bodies import (
    RequestFacts,
    error_body,
    forwarded,
    output_tokens,
    request_facts,
    shaped_api,
)


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("POST", "/v1/chat/completions", "openai"),
        ("POST", "/v1/completions", "openai"),
        ("POST", "/generate", "tgi"),
        ("POST", "/generate_stream", "tgi"),
        ("POST", "/", "tgi"),
        ("GET", "/v1/models", None),
        ("GET", "/generate", None),
        ("POST", "/v1/embeddings", None),
        ("GET", "/metrics", None),
    ],
)
def test_only_generation_requests_are_shaped(method: str, path: str, api: str | None) -> None:
    assert shaped_api(method, path) == api


def test_openai_bodies_give_stream_and_max_tokens() -> None:
    chat = {"model": "m", "messages": [], "stream": True, "max_tokens": 64, "max_completion_tokens": 32}
    assert request_facts("openai", "/v1/chat/completions", json.dumps(chat).encode()) == RequestFacts(
        stream=True, max_tokens=32
    )  # vLLM reads max_completion_tokens first
    completion = {"model": "m", "prompt": [1, 2, 3, 4], "max_tokens": 8}
    assert request_facts("openai", "/v1/completions", json.dumps(completion).encode()) == RequestFacts(
        stream=False, max_tokens=8, prompt_tokens=4
    )
    text = {"model": "m", "prompt": "four words of text", "max_tokens": True}
    assert request_facts("openai", "/v1/completions", json.dumps(text).encode()) == RequestFacts(stream=False)


def test_tgi_bodies_give_stream_and_max_new_tokens() -> None:
    body = json.dumps({"inputs": "hi", "parameters": {"max_new_tokens": 20}}).encode()
    assert request_facts("tgi", "/generate", body) == RequestFacts(stream=False, max_tokens=20)
    assert request_facts("tgi", "/generate_stream", body) == RequestFacts(stream=True, max_tokens=20)
    compat = json.dumps({"inputs": "hi", "stream": True}).encode()
    assert request_facts("tgi", "/", compat) == RequestFacts(stream=True)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_no_json_object_tells_the_policy_nothing(body: bytes) -> None:
    assert request_facts("openai", "/v1/completions", body) == RequestFacts()
    assert request_facts("tgi", "/generate_stream", body) == RequestFacts(stream=True)


def test_output_tokens_from_a_whole_answer() -> None:
    openai = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 17}}
    assert output_tokens(json.dumps(openai).encode(), {}) == 17
    tgi = {"generated_text": "x", "details": {"generated_tokens": 5}}
    assert output_tokens(json.dumps(tgi).encode(), {}) == 5
    assert output_tokens(b'{"generated_text": "x"}', {"X-Generated-Tokens": "9"}) == 9  # TGI's header
    assert output_tokens(b'{"choices": []}', {}) is None


def test_output_tokens_from_the_last_events_of_a_stream() -> None:
    openai = (
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert output_tokens(openai, {}) == 2
    tgi = b'data:{"token":{},"details":null}\n\ndata:{"token":{},"details":{"generated_tokens":2}}\r\n\r\n'
    assert output_tokens(tgi, {}) == 2
    no_usage = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n'
    assert output_tokens(no_usage, {}) is None
    # The kept tail may start mid-event: the torn first line is skipped, not misread.
    assert output_tokens(b'ns":4}}\n\ndata: {"usage":{"completion_tokens":0}}\n\n', {}) == 0


def test_hop_by_hop_headers_stay_and_credentials_pass() -> None:
    request = [
        ("Host", "proxy:8080"),
        ("Content-Length", "12"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Authorization", "Bearer sk-1"),
        ("Content-Type", "application/json"),
        ("Accept-Encoding", "gzip"),
    ]
    assert forwarded(request, request=True) == [
        ("Authorization", "Bearer sk-1"),
        ("Content-Type", "application/json"),
        ("Accept-Encoding", "gzip"),
    ]
    response = [("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2")]  # fmt: skip
    assert forwarded(response, request=False) == [("Content-Length", "5"), ("Set-Cookie", "a=1"),
                                                  ("Set-Cookie", "b=2")]  # fmt: skip


def test_errors_are_worded_as_each_api_words_them() -> None:
    openai = json.loads(error_body("/v1/chat/completions", 502, "down", "upstream_down"))
    assert openai == {"error": {"message": "down", "type": "upstream_down", "param": None, "code": 502}}
    tgi = json.loads(error_body("/generate", 503, "full", "queue_full"))
    assert tgi == {"error": "full", "error_type": "queue_full"}
