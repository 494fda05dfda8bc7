"""The mock server: an OpenAI (vLLM) and TGI compatible HTTP server that simulates a GPU serving an LLM.

Parts, from the inside out:

- `profile`   — the calibration profile (a JSON file): step times, power, frontend, scheduler limits.
- `engine`    — a pure discrete-event simulator of continuous batching (no I/O, virtual clock).
- `gpu`       — the simulated GPU: piecewise-constant power, exact energy integral, temperature.
- `replay`    — replays calibration experiments (waves of requests) against the simulator.
- `calibrate` — fits a profile to measurements (`python -m harness.mock.calibrate`).
- `tokens`, `faults` — prompt token counts and generated text; per-request fault draws.
- `live`      — drives the simulator in real time (or `speed` times faster) inside the event loop.
- `state`, `metrics` — the server's shared state and one request's life in it; /metrics.
- `asgi`, `openai_api`, `tgi_api`, `server` — the HTTP front: vLLM's and TGI's APIs, /sim/gpu.
- `delivery`  — how either API's tokens reach the client: streaming, whole answers, injected faults.

User documentation: docs/mock.md.
"""
