"""A hostile OpenAI-compatible server for the credential tests: it echoes the caller's API key back
in response headers (ones named like credentials, and the allow-listed `x-request-id`), in a cookie,
in the generated text and, every third chat request, in an error (HTTP 403).

    python tests/e2e/echo_server.py      # prints its base URL (a free loopback port), then serves

GET /v1/models lists one model; GET /info describes the server TGI-style, the key and a URL with
userinfo inside (joulebench copies what a server says about itself into the manifest); POST
/v1/chat/completions answers streaming or not. A request with no
`Authorization: Bearer ...` is refused (401), so a run that gets answers did send its key.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

MODEL = "echo-model"
_served = 0


def _key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") and len(auth) > 7 else None


def _echo(key: str) -> dict[str, str]:
    return {
        "x-api-key-echo": key,
        "x-authorization-echo": f"Bearer {key}",
        "authorization": f"Bearer {key}",
        "www-authenticate": f'Bearer realm="{key}"',
        "x-echo-token": key,
        "x-request-id": f"req-{key}",  # allow-listed: kept, the key inside it redacted
        "x-queue-time": "3",  # allow-listed, harmless: kept as a number
        "server-timing": "app;dur=1.5",
        "set-cookie": f"session={key}; HttpOnly",
    }


async def models(request: web.Request) -> web.Response:
    if _key(request) is None:
        return web.json_response({"error": {"message": "no key"}}, status=401)
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def info(request: web.Request) -> web.Response:
    key = _key(request) or "no-key"
    return web.json_response({"model_id": MODEL, "docker_label": f"built-with-{key}",
                              "router": f"http://admin:{key}@127.0.0.1:1/", key: "as a key"})  # fmt: skip


async def chat(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    if key is None:
        return web.json_response({"error": {"message": "no key"}}, status=401)
    global _served
    _served += 1
    body = await request.json()
    headers = _echo(key)
    if _served % 3 == 0:
        message = f"Incorrect API key provided: {key}"
        return web.json_response({"error": {"message": message}}, status=403, headers=headers)
    text = f"your key is {key}"
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if not body.get("stream"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        return web.json_response({"id": f"cmpl-{key}", "object": "chat.completion", "model": MODEL,
                                  "choices": [choice], "usage": usage}, headers=headers)  # fmt: skip
    response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
    await response.prepare(request)
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {"choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": "length"}]},
        {"choices": [], "usage": usage},
    ]
    for event in events:
        await response.write(f"data: {json.dumps({'id': f'cmpl-{key}', **event})}\n\n".encode())
        await asyncio.sleep(0.001)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def main() -> None:
    app = web.Application()
    app.add_routes(
        [web.get("/v1/models", models), web.get("/info", info), web.post("/v1/chat/completions", chat)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
