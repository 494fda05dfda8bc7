"""The proxy's HTTP side: hold each generation request until the policy releases it, then relay it.

One aiohttp handler serves every request. A shaped one (proxy_bodies.SHAPED) is read whole, reported
to the policy and held until released; then it goes upstream with its headers (Authorization too) and
body unchanged, and the answer comes back as it arrives: status, headers less hop-by-hop ones, and
body bytes written on as they are read, with no re-chunking or parsing (the end of a shaped answer
is kept to read its token count afterwards). Any other request is relayed the same way at once.

Every request ends exactly once (`_finish`): one log line, one count in the metrics and, for a
released request, `finished` to the policy. A policy that raises is a fault the executor records:
what it held, and any shaped request after, is answered 503 `policy_fault`. The server runs with
handler cancellation, so a client that leaves cancels its handler: while held, the request is
withdrawn from the policy and never sent.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web
from yarl import URL

from harness.shaping_proxy.proxy_bodies import (
    TAIL_BYTES,
    Api,
    forwarded,
    output_tokens,
    request_facts,
    shaped_api,
)
from harness.shaping_proxy.proxy_bodies import error_body as proxy_error_body
from harness.shaping_proxy.proxy_executor import PolicyExecutor
from harness.shaping_proxy.proxy_log import Cause, Exchange, Outcome, ProxyLog
from harness.shaping_proxy.proxy_metrics import ProxyMetrics
from traffic.shaping import Arrival

MAX_BODY_BYTES = 64 * 2**20  # a request body over this is answered 413


class ShapingProxy:
    def __init__(
        self, upstream: str, executor: PolicyExecutor, session: aiohttp.ClientSession, log: ProxyLog,
        max_held: int, policy_name: str,
    ) -> None:  # fmt: skip
        self.upstream = upstream
        self.executor = executor
        self.session = session
        self.log = log
        self.max_held = max_held
        self.stopping = False
        # Set as shutdown's grace ends: from then on nothing goes upstream, even a request released
        # just before whose handler has not resumed yet, or one whose body was still coming in.
        self.grace_over = False
        self.released: set[int] = set()  # released by the policy and not yet finished
        self.metrics = ProxyMetrics(policy_name, upstream, lambda: executor.held, lambda: len(self.released))
        self.received = 0  # requests so far; each one's id is its number, from 0
        self._live: dict[asyncio.Task[object], Exchange] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        api = shaped_api(request.method, request.path)
        exchange = Exchange(
            self.received, request.method, request.rel_url.raw_path, api is not None, time.monotonic_ns()
        )
        self.received += 1
        task = asyncio.current_task()
        assert task is not None
        self._live[task] = exchange
        self._idle.clear()
        try:
            return await self._serve(request, api, exchange)
        finally:
            del self._live[task]
            if not self._live:
                self._idle.set()

    async def _serve(self, request: web.BaseRequest, api: Api | None, ex: Exchange) -> web.StreamResponse:
        if self.stopping:
            return self._answer(ex, 503, "rejected_stopping", "the proxy is stopping", "proxy_stopping")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            message = f"request body over {MAX_BODY_BYTES} bytes"
            return self._answer(ex, 413, "rejected_too_large", message, "request_too_large")
        except asyncio.CancelledError:
            self._finish(ex, "cancelled", cause="client", error="the client left while sending its request")
            raise
        if self.grace_over:
            return self._answer(ex, 503, "rejected_stopping", "the proxy is stopping", "proxy_stopping")
        if api is None:
            return await self._relay(request, ex, body)
        if self.executor.held >= self.max_held:
            message = f"the proxy holds {self.executor.held} requests, its limit (--max-held); retry later"
            return self._answer(ex, 503, "rejected_queue_full", message, "queue_full")
        if self.executor.fault is not None:
            return self._policy_fault(ex)
        facts = request_facts(api, request.path, body)
        ex.stream, ex.max_tokens = facts.stream, facts.max_tokens
        ex.arrived_ns, release = self.executor.arrive(
            Arrival(ex.request_id, facts.prompt_tokens, facts.max_tokens)
        )
        self.log.arrived(ex)
        try:
            ex.released_ns = await release
        except asyncio.CancelledError:
            if self.executor.cancel(ex.request_id, release) == "released":
                # Released as its client left: the policy counts it in flight until told it ended.
                ex.released_ns = release.result() if release.done() and not release.cancelled() else None
                self.released.add(ex.request_id)
            self._finish(ex, "cancelled_while_held", cause=ex.cause or "client", error="the client left")
            raise
        if ex.released_ns is None:
            if self.executor.fault is not None:
                return self._policy_fault(ex)
            return self._stopped_while_held(ex, "the proxy stopped before the policy released this request")
        self.released.add(ex.request_id)
        self.metrics.released(ex.released_ns - ex.arrived_ns)
        if self.grace_over:  # released as the grace ended, resumed after: it is never sent
            return self._stopped_while_held(ex, "the proxy stopped as the policy released this request")
        return await self._relay(request, ex, body)

    def _stopped_while_held(self, ex: Exchange, message: str) -> web.Response:
        ex.cause = "shutdown"
        return self._answer(ex, 503, "cancelled_while_held", message, "cancelled_at_shutdown")

    def _policy_fault(self, ex: Exchange) -> web.Response:
        message = f"{self.executor.fault}; the proxy answers shaped requests 503 until it is restarted"
        return self._answer(ex, 503, "policy_fault", message, "policy_fault")

    async def _relay(self, request: web.BaseRequest, ex: Exchange, body: bytes) -> web.StreamResponse:
        ex.sent_ns = self.executor.sent(ex.request_id) if ex.shaped else time.monotonic_ns()
        try:
            upstream = await self.session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),
                data=body if request.body_exists else None,
                headers=forwarded(request.headers.items(), request=True),
                allow_redirects=False,  # a 3xx is the client's to follow (or not), relayed untouched
            )
        except asyncio.CancelledError:
            self._finish(ex, "cancelled", cause=ex.cause or "client", error="the client left")
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            message = f"the upstream did not answer ({_describe(exc)})"
            return self._answer(ex, 502, "upstream_down", message, "upstream_down")
        async with upstream:  # gives the connection back (or closes it) however the relay ends
            return await self._stream(request, ex, upstream)

    async def _stream(
        self, request: web.BaseRequest, ex: Exchange, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        ex.status = upstream.status
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in forwarded(upstream.headers.items(), request=False):
            response.headers.add(name, value)
        tail = bytearray()
        try:
            await response.prepare(request)
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    # The client must see a cut answer, not a complete one: close its connection.
                    if request.transport is not None:
                        request.transport.close()
                    self._finish(ex, "upstream_error", error=f"the upstream broke off ({_describe(exc)})")
                    return response
                if not chunk:
                    break
                if ex.first_byte_ns is None:
                    ex.first_byte_ns = self.executor.first_token(ex.request_id) if ex.shaped else _now()
                if ex.shaped:
                    tail += chunk
                    if len(tail) > 2 * TAIL_BYTES:
                        del tail[:-TAIL_BYTES]
                await response.write(chunk)
            await response.write_eof()
        except asyncio.CancelledError:
            self._finish(ex, "cancelled", cause=ex.cause or "client", error="the client left")
            raise
        except ConnectionResetError:
            self._finish(ex, "cancelled", cause="client", error="the client left")
            return response
        ok = 200 <= upstream.status < 300
        tokens = output_tokens(bytes(tail[-TAIL_BYTES:]), upstream.headers) if ex.shaped else None
        self._finish(ex, "ok" if ok else "upstream_error", output_tokens=tokens)
        return response

    def _answer(self, ex: Exchange, status: int, outcome: Outcome, message: str, kind: str) -> web.Response:
        """The proxy's own answer to a request it does not relay."""
        ex.status = status
        self._finish(ex, outcome, error=message)
        headers = {"Retry-After": "1"} if status == 503 else {}
        if self.stopping:
            headers["Connection"] = "close"
        body = proxy_error_body(ex.path, status, message, kind)
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)

    def _finish(
        self, ex: Exchange, outcome: Outcome, *, cause: Cause | None = None, error: str | None = None,
        output_tokens: int | None = None,
    ) -> None:  # fmt: skip
        if ex.outcome is not None:
            return
        ok = outcome == "ok"
        if ex.request_id in self.released:
            self.released.discard(ex.request_id)
            ex.done_ns = self.executor.finished(ex.request_id, ok, output_tokens)
        else:
            ex.done_ns = _now()
        ex.outcome, ex.error, ex.output_tokens = outcome, error, output_tokens
        if cause is not None:
            ex.cause = cause
        self.log.ended(ex)
        self.metrics.ended(ex)

    async def drain(self, deadline_ns: int, hurry: asyncio.Event) -> dict[str, int]:
        """Stop taking requests, let the policy release and in-flight requests end until `deadline_ns`
        (or until `hurry` is set); then answer what is still held 503 and cut what is in flight. Every
        request ends recorded. Returns what happened, for the log's last line."""
        self.stopping = True
        held, in_flight = self.executor.held, len(self.released)
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline_ns / 1e9, hurry.set)
        idle, late = asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(hurry.wait())
        await asyncio.wait([idle, late], return_when=asyncio.FIRST_COMPLETED)
        timer.cancel()
        for waiter in (idle, late):
            waiter.cancel()
        self.grace_over = True
        abandoned = self.executor.abandon_held()
        cut = [task for task, ex in self._live.items() if ex.sent_ns is not None and ex.outcome is None]
        for task in cut:
            self._live[task].cause = "shutdown"
            task.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=2.0)
        except asyncio.TimeoutError:
            for ex in self._live.values():  # a handler that would not end: recorded all the same
                outcome: Outcome = "cancelled" if ex.sent_ns is not None else "cancelled_while_held"
                self._finish(ex, outcome, cause="shutdown", error="still running when the proxy stopped")
        return {"held_at_stop": held, "held_cancelled": abandoned, "in_flight_at_stop": in_flight,
                "in_flight_cut": len(cut)}  # fmt: skip


def _now() -> int:
    return time.monotonic_ns()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
