"""The shaping proxy (`joulebench shape`): an HTTP proxy that holds clients' generation requests and
releases them to an OpenAI-compatible (vLLM) or TGI server when a shaping policy says so.

Parts, from the inside out:

- `proxy_config`   — the command's settings (each field declares its flag), checked in one place.
- `proxy_executor` — drives one `traffic.shaping` policy on the event loop: events in, releases out,
                     wake-ups at the policy's absolute deadlines.
- `proxy_descriptors` — enough open files for the queue.
- `proxy_bodies`   — what the proxy reads from the traffic (shaped paths, max tokens, token counts)
                     and its own error answers.
- `proxy_relay`    — the aiohttp handler: hold, relay untouched, end every request exactly once.
- `proxy_log`, `proxy_metrics` — the JSON-lines request log and the Prometheus exposition.
- `proxy_server`   — sockets, start-up line, signals and the drain at shutdown.

User documentation: docs/shaping.md, "The proxy".
"""
