"""Carrying a generation to the client, with the faults the HTTP layer injects (see faults.py).

Shared by the OpenAI and TGI APIs: they differ in what an event or a body says, not in when it is
sent, how a stream is cut, stalled or corrupted, or how a non-streaming answer is delayed.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.mock.asgi import Hangup, Send, send_whole
from harness.mock.faults import FaultPlan
from harness.mock.state import Generation, MockState


async def spike(state: MockState, plan: FaultPlan) -> None:
    """A latency spike: the request waits `spike_s` simulated seconds before it reaches the server."""
    if plan.spike:
        assert state.live is not None
        await state.live.sleep(state.profile.faults.spike_s)


async def stream(
    gen: Generation, send: Send, headers: list[tuple[bytes, bytes]], events: Callable[[int, int], list[str]]
) -> bool:
    """Stream the tokens as the simulator makes them; False when the client went away.

    Each engine step's new tokens `[start, stop)` go out in one body made of `events(start, stop)`
    (complete SSE events). The faults fall after a token count drawn per request: the last event
    of a body cut in half (malformed JSON), a hang-up, or a stall after which the tokens generated
    meanwhile arrive together.
    """
    state = gen.state
    stall, hangup, malformed = gen.plan.positions(gen.req.output_tokens)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while await gen.wait_tokens():
        start, stop = gen.take()
        parts = events(start, stop)
        if malformed is not None and stop >= malformed:
            parts[-1], malformed = parts[-1][: len(parts[-1]) // 2] + "\n\n", None
        await send({"type": "http.response.body", "body": "".join(parts).encode(), "more_body": True})
        if hangup is not None and stop >= hangup:
            raise Hangup
        if stall is not None and stop >= stall:
            stall = None
            assert state.live is not None
            await state.live.sleep(state.profile.faults.stall_s)
    return not gen.gone


async def finished(gen: Generation) -> bool:
    """Wait for the whole output (non-streaming answers); False when the client went away.

    A stall fault delays the answer by `stall_s` simulated seconds.
    """
    await gen.wait_done()
    if gen.gone:
        return False
    if gen.plan.stall_at is not None:
        state = gen.state
        assert state.live is not None
        await state.live.sleep(state.profile.faults.stall_s)
    return True


async def answer(gen: Generation, send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """The non-streaming answer: whole, or with its body cut in half, or headers then a hang-up."""
    plan = gen.plan
    await send_whole(send, body, headers, plan.malformed_at is not None, plan.disconnect_at is not None)
