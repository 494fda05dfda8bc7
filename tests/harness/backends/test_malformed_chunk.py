"""What a stream with a malformed event keeps (docs/runner.md, `stream_error`): the event is skipped,
not counted, and reading goes on, so the well-formed chunks on both sides of it and the token counts
reported after it are kept; the status is `stream_error` naming the fault. (The recorded fixture
generic/chat_stream_malformed_chunk pins the same for a vLLM stream.)"""

from __future__ import annotations

import asyncio
import time

import pytest
from fixture_replay import Fixture, ReplayServer

from harness.backends import APIS, Prompt, make_client, perform
from harness.records import RequestRecord

PROMPT = Prompt(prompt="hi", messages=None, max_tokens=8, ignore_eos=False, temperature=None)
BROKEN = '{"index":2,"token":{"id":7,"text":" bro'  # an event's JSON cut in half, as the mock's fault does

STREAMS = {
    "openai-chat": "".join(
        f"data: {event}\n\n"
        for event in (
            '{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
            '{"choices":[{"index":0,"delta":{"content":"before"},"finish_reason":null}]}',
            BROKEN,
            '{"choices":[{"index":0,"delta":{"content":" after"},"finish_reason":"length"}]}',
            '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}',
            "[DONE]",
        )
    ),
    "tgi-generate": "".join(
        f"data:{event}\n\n"
        for event in (
            '{"index":1,"token":{"id":5,"text":"before","special":false},"generated_text":null,"details":null}',
            BROKEN,
            '{"index":3,"token":{"id":9,"text":" after","special":false},"generated_text":"before bro after",'
            '"details":{"finish_reason":"length","generated_tokens":3,"seed":null,"input_length":1}}',
        )
    ),
}


def _fixture(api: str) -> Fixture:
    meta = {
        "api": api,
        "stream": True,
        "response": {"status": 200, "headers": [["content-type", "text/event-stream"]]},
    }
    return Fixture(f"inline/{api}", meta, STREAMS[api].encode())


@pytest.mark.parametrize("api", STREAMS)
def test_a_malformed_event_is_skipped_and_the_rest_of_the_stream_kept(api: str) -> None:
    async def run() -> RequestRecord:
        # One write per SSE event, 20 ms apart: each chunk has its own arrival time.
        async with (
            ReplayServer(_fixture(api), delay_s=0.02) as server,
            make_client(server.url, pool=1, timeout_s=5) as client,
        ):
            backend = APIS[api]("m")
            rec = RequestRecord(0, "a", 0, "p", warmup=False, api=api, stream=True)
            rec.sent_ns = time.monotonic_ns()
            await perform(client, backend, backend.encode(PROMPT, True), rec, 5.0)
            return rec

    rec = asyncio.run(run())
    assert rec.status == "stream_error" and rec.error.startswith("malformed SSE data"), rec.error
    assert len(rec.chunk_ns) == 2  # "before" and " after": the broken event is not a chunk
    assert rec.first_token_ns == rec.chunk_ns[0] < rec.last_token_ns == rec.chunk_ns[1]
    assert rec.output_tokens == 3 and rec.finish_reason == "length"  # reported after the fault
