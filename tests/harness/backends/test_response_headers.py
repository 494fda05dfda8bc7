"""Which response headers a record keeps: an allow-list (docs/contracts.md), names that look like
credentials never, and the run's own API key redacted from whatever is kept, over real loopback HTTP
(both transports, streaming and not, an error that quotes the key)."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest
from fixture_replay import PROMPT, Fixture, ReplayServer, load_fixtures

from foundation.redact import is_secret_header, redact_secret
from harness.backends import APIS, make_client, perform
from harness.backends.client import KEPT_HEADERS, TRANSPORTS, server_timing
from harness.records import RequestRecord

FIXTURES = {f.name: f for f in load_fixtures()}
KEY = "sk-live-0123456789abcdef"
ECHO = [
    ("x-api-key-echo", KEY),
    ("X-Api-Key", KEY),
    ("authorization", f"Bearer {KEY}"),
    ("proxy-authenticate", f'Basic realm="{KEY}"'),
    ("set-cookie", f"session={KEY}"),
    ("x-access-token", KEY),
    ("x-client-secret", KEY),
    ("x-debug", KEY),  # named like nothing at all: dropped because it is not on the list
    ("x-request-id", f"req-{KEY}"),  # on the list: kept, the key inside it redacted
    ("openai-processing-ms", "7"),
    ("server-timing", "app;dur=12.5"),
]


@pytest.mark.parametrize(
    "name",
    ["authorization", "Proxy-Authorization", "www-authenticate", "cookie", "set-cookie", "x-api-key",
     "api-key", "x-goog-api-key", "openai-api-key", "x-apikey", "x-access-token", "x-amz-security-token",
     "x-auth-token", "x-client-secret", "x-session-id", "x-password", "x-signature", "x-csrf-token",
     "x-key", "x_api_key"],
)  # fmt: skip
def test_names_of_credentials_are_secret(name: str) -> None:
    assert is_secret_header(name)


@pytest.mark.parametrize(
    "name", ["x-time-per-token", "x-generated-tokens", "x-prompt-tokens", "x-request-id", "server-timing",
             "content-type", "x-queue-time", "x-keyword-count"],
)  # fmt: skip
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_header(name)


def test_no_allow_listed_header_is_named_like_a_credential() -> None:
    assert [name for name in KEPT_HEADERS if is_secret_header(name)] == []
    assert all(name == name.lower() for name in KEPT_HEADERS)


def test_server_timing_keeps_only_the_allow_list_and_redacts_the_key() -> None:
    kept = server_timing(dict(ECHO), KEY)
    assert kept == {"x-request-id": "req-***", "openai-processing-ms": 7, "server-timing": "app;dur=12.5"}
    assert server_timing({"x-api-key-echo": KEY, "content-type": "application/json"}, KEY) is None
    assert server_timing({"x-request-id": KEY}, None) == {
        "x-request-id": KEY
    }  # no key known: nothing to redact


def test_redact_secret() -> None:
    assert redact_secret(f"bad key {KEY}, again {KEY}", KEY) == "bad key ***, again ***"
    assert redact_secret("nothing here", KEY) == "nothing here"
    assert redact_secret(f"{KEY}", None) == KEY and redact_secret("x", "") == "x"


def _echoing(name: str, extra_body: bytes = b"") -> Fixture:
    fixture = FIXTURES[name]
    meta = copy.deepcopy(fixture.meta)
    meta["response"]["headers"] = [*meta["response"]["headers"], *([k, v] for k, v in ECHO)]
    return Fixture(name, meta, fixture.body.replace(b'"message": "', b'"message": "' + extra_body, 1))


async def _send(fixture: Fixture, transport: str, api_key: str | None) -> RequestRecord:
    api = APIS[fixture.api]("m")
    rec = RequestRecord(0, "arm", 0, "p0", warmup=False, api=api.name, stream=fixture.stream)
    async with (
        ReplayServer(fixture) as server,
        make_client(server.url, pool=2, timeout_s=5.0, api_key=api_key, transport=transport) as client,
    ):
        rec.sent_ns = time.monotonic_ns()
        await perform(client, api, api.encode(PROMPT, fixture.stream), rec, 5.0)
    assert server.received[0].headers.get("authorization") == (f"Bearer {api_key}" if api_key else None)
    return rec


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", ["vllm/chat", "vllm/chat_stream", "tgi/generate", "tgi/generate_stream"])
def test_a_server_echoing_the_key_leaves_it_out_of_the_record(name: str, transport: str) -> None:
    rec = asyncio.run(_send(_echoing(name), transport, KEY))
    assert rec.status == "ok", rec.error
    assert KEY not in repr(rec.to_row())
    expected = FIXTURES[name].expect.get("server_timing") or {}
    assert rec.server_timing == {**expected, "x-request-id": "req-***", "openai-processing-ms": 7,
                                 "server-timing": "app;dur=12.5"}  # fmt: skip


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_error_quoting_the_key_is_redacted(transport: str) -> None:
    fixture = _echoing("vllm/error_400", f"Incorrect API key provided: {KEY}. ".encode())
    assert KEY.encode() in fixture.body
    rec = asyncio.run(_send(fixture, transport, KEY))
    assert rec.status == "http_error" and "Incorrect API key provided: ***." in rec.error
    assert KEY not in repr(rec.to_row())
