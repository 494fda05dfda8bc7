"""TGI's native API: POST /generate, POST /generate_stream, POST / (either), GET /info.

As TGI's router (axum) answers: non-streaming responses carry the `x-compute-type`, `x-compute-time`,
`x-compute-characters`, `x-total-time`, `x-validation-time`, `x-queue-time`, `x-inference-time`,
`x-time-per-token`, `x-prompt-tokens` and `x-generated-tokens` headers (times in milliseconds,
`x-compute-time` in seconds); streams are `data:{json}` events (no space after the colon), one per
token, the last with `generated_text` and `details`. Errors are `{"error", "error_type"}` with 422
for validation and 429 when more than `max_concurrent_requests` are in flight; bodies that are not
JSON, or do not deserialize, get axum's plain-text 400/415/422 answers.

Both also carry `x-request-id`, which TGI does not send: the simulator's request number in its last 16
hex digits, as the OpenAI API's responses do, so that a run's rows can be matched to the mock's ground
truth (`GET /sim/requests`).

Limits of the mock: `details.prefill` is empty (the prompt's tokens are counted, not materialized);
`best_of` > 1 and `top_n_tokens` are not supported.
"""

from __future__ import annotations

import json
import time
from typing import Any

from harness.mock import asgi, delivery
from harness.mock.asgi import JSON_HEADERS, HttpError, Receive, Send, dumps, respond_json
from harness.mock.engine import RequestSpec
from harness.mock.state import Generation, MockState
from harness.mock.token_text import request_id

COMPUTE_TYPE = b"gpu+optimized"
_TEXT = b"text/plain; charset=utf-8"
_FINISH = {"length": "length", "stop": "eos_token"}


def validation(message: str) -> HttpError:
    return HttpError(422, {"error": message, "error_type": "validation"})


def _rejection(status: int, message: str) -> HttpError:
    return HttpError(status, message.encode(), content_type=_TEXT)


def _deserialize(message: str) -> HttpError:
    return _rejection(422, f"Failed to deserialize the JSON body into the target type: {message}")


class Parameters:
    """A /generate request, validated as TGI's router does."""

    def __init__(self, state: MockState, body: dict, stream: bool) -> None:
        inputs = body.get("inputs")
        if "inputs" not in body:
            raise _deserialize("missing field `inputs`")
        if not isinstance(inputs, str):
            raise _deserialize(f"inputs: invalid type: {_kind(inputs)}, expected a string")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise _deserialize(
                f"parameters: invalid type: {_kind(params)}, expected struct GenerateParameters"
            )
        max_new = self._uint(params, "max_new_tokens")
        self.details = self._bool(params, "details")
        self.return_full_text = self._bool(params, "return_full_text")
        self.seed = self._uint(params, "seed")
        decoder_details = self._bool(params, "decoder_input_details")
        for key in ("temperature", "repetition_penalty", "top_p", "typical_p", "frequency_penalty"):
            value = params.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _deserialize(f"parameters.{key}: invalid type: {_kind(value)}, expected f32")
        for key in ("temperature", "repetition_penalty"):
            if params.get(key) is not None and params[key] <= 0:
                raise validation(f"`{key}` must be strictly positive")
        for key in ("top_p", "typical_p"):
            if params.get(key) is not None and not 0.0 < params[key] < 1.0:
                raise validation(f"`{key}` must be > 0.0 and < 1.0")
        top_k = params.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0):
            raise validation("`top_k` must be strictly positive")
        stop = params.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _deserialize("parameters.stop: invalid type, expected a sequence of strings")
        if len(stop) > 4:
            raise validation(f"`stop` supports up to 4 stop sequences. Given: {len(stop)}")
        best_of = params.get("best_of")
        if best_of is not None and best_of != 1:
            raise validation(
                "`best_of` != 1 is not allowed for this endpoint"
                if stream
                else "`best_of` > 1 is not supported by the mock server"
            )
        if stream and decoder_details:
            raise validation("`decoder_input_details` == true is not supported when streaming tokens")
        if not inputs:
            raise validation("`inputs` cannot be empty")
        if max_new is not None and max_new == 0:
            raise validation("`max_new_tokens` must be strictly positive")
        total = state.max_model_len
        prompt = state.counter.text(inputs)
        if prompt >= total:
            raise validation(f"`inputs` must have less than {total - 1} tokens. Given: {prompt}")
        if max_new is None:
            max_new = total - prompt
        if prompt + max_new > total:
            raise validation(
                f"`inputs` tokens + `max_new_tokens` must be <= {total}. Given: {prompt} `inputs` tokens "
                f"and {max_new} `max_new_tokens`"
            )
        self.inputs = inputs
        self.prompt_tokens = prompt
        self.spec = RequestSpec(prompt, max_new)

    @staticmethod
    def _uint(params: dict, key: str) -> int | None:
        value = params.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _deserialize(
                f"parameters.{key}: invalid value: {_kind(value)}, expected an unsigned integer"
            )
        return value

    @staticmethod
    def _bool(params: dict, key: str) -> bool:
        value = params.get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise _deserialize(f"parameters.{key}: invalid type: {_kind(value)}, expected a boolean")
        return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"number `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)[:40]}"
    return "sequence" if isinstance(value, list) else "map" if isinstance(value, dict) else "null"


async def _body(scope: dict, receive: Receive) -> dict | None:
    wrong_type = _rejection(415, "Expected request with `Content-Type: application/json`")
    body = await asgi.read_json(
        scope,
        receive,
        wrong_type,
        lambda exc: _rejection(400, f"Failed to parse the request body as JSON: {exc}"),
    )
    if body is asgi.GONE:
        return None
    if not isinstance(body, dict):
        raise _deserialize(f"invalid type: {_kind(body)}, expected struct GenerateRequest")
    return body


# ------------------------------------------------------------------------------------------ routes
async def info(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    sched = state.profile.scheduler
    doc = {
        "model_id": state.settings.model_name,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": sched.max_concurrent_requests,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_input_tokens": sched.max_model_len - 1,
        "max_total_tokens": sched.max_model_len,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": state.profile.engine_version or "mock",
        "sha": None,
        "docker_label": None,
    }
    await respond_json(send, 200, doc)


async def generate(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    await _handle(state, scope, receive, send, stream=False, wrap=False)


async def generate_stream(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    await _handle(state, scope, receive, send, stream=True, wrap=False)


async def compat_generate(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    """POST /: TGI's root route (what huggingface_hub's InferenceClient calls for a server URL)."""
    await _handle(state, scope, receive, send, stream=None, wrap=True)


async def _handle(
    state: MockState, scope: dict, receive: Receive, send: Send, stream: bool | None, wrap: bool
) -> None:
    body = await _body(scope, receive)
    if body is None:
        return
    state.metrics.request_received()
    if stream is None:
        flag = body.get("stream", False)
        if not isinstance(flag, bool):
            raise _deserialize(f"stream: invalid type: {_kind(flag)}, expected a boolean")
        stream = flag
    if state.settings.flavour == "tgi" and state.in_flight >= state.profile.scheduler.max_concurrent_requests:
        state.metrics.request_failed("overloaded")
        raise HttpError(429, {"error": "Model is overloaded", "error_type": "overloaded"})
    try:
        params = Parameters(state, body, stream)
    except HttpError:
        state.metrics.request_failed("validation")
        raise
    plan = state.faults.draw()
    if plan.rate_limited:
        retry = str(state.profile.faults.retry_after_s).encode()
        raise HttpError(
            429, {"error": "Model is overloaded", "error_type": "overloaded"}, [(b"retry-after", retry)]
        )
    if plan.error_status is not None:
        state.metrics.request_failed("generation")
        kind = "generation" if plan.error_status == 500 else "unavailable"
        raise HttpError(
            plan.error_status, {"error": f"Injected fault: HTTP {plan.error_status}", "error_type": kind}
        )
    await delivery.spike(state, plan)
    gen = Generation(state, params.spec, stream, plan, receive)
    try:
        if stream:
            await _stream(state, gen, send, params)
        else:
            await _whole(state, gen, send, params, wrap)
    finally:
        gen.finish()


def _token(gen: Generation, start: int, stop: int) -> list[str]:
    texts = gen.texts(start, stop)
    ids = gen.ids_logprobs(start, stop)
    return [
        f'{{"id":{tid},"text":{dumps(text)},"logprob":{logprob},"special":false}}'
        for text, (tid, logprob) in zip(texts, ids, strict=True)
    ]


async def _stream(state: MockState, gen: Generation, send: Send, params: Parameters) -> None:
    req = gen.req
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"x-compute-type", COMPUTE_TYPE),
        (b"x-compute-characters", str(len(params.inputs)).encode()),
        (b"x-accel-buffering", b"no"),
        _id_header(state, gen),
    ]

    def events(start: int, stop: int) -> list[str]:
        out = []
        for i, token in enumerate(_token(gen, start, stop), start=start + 1):
            text, details = "null", "null"
            if gen.done and i == stop:  # the last event carries the whole text and the details
                whole = "".join(gen.texts(0, stop))
                text = dumps(params.inputs + whole if params.return_full_text else whole)
                if params.details and not gen.plan.no_usage:
                    details = dumps(
                        {
                            "finish_reason": _FINISH[req.finish_reason or "length"],
                            "generated_tokens": stop,
                            "seed": params.seed,
                            "input_length": params.prompt_tokens,
                        }
                    )
            out.append(
                f'data:{{"index":{i},"token":{token},"generated_text":{text},"details":{details}}}\n\n'
            )
        return out

    if await delivery.stream(gen, send, headers, events):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _whole(state: MockState, gen: Generation, send: Send, params: Parameters, wrap: bool) -> None:
    if not await delivery.finished(gen):
        return
    plan, req = gen.plan, gen.req
    text = "".join(gen.texts(0, req.generated))
    doc: dict[str, Any] = {"generated_text": params.inputs + text if params.return_full_text else text}
    if params.details and not plan.no_usage:
        texts, ids = gen.texts(0, req.generated), gen.ids_logprobs(0, req.generated)
        doc["details"] = {
            "finish_reason": _FINISH[req.finish_reason or "length"],
            "generated_tokens": req.generated,
            "seed": params.seed,
            "prefill": [],
            "tokens": [
                {"id": tid, "text": text, "logprob": logprob, "special": False}
                for text, (tid, logprob) in zip(texts, ids, strict=True)
            ],
        }
    total_ms = (time.monotonic_ns() - gen.received_ns) // 1_000_000
    inference_ms = gen.wall_ms(req.scheduled, req.finished)
    headers = [
        (b"x-compute-type", COMPUTE_TYPE),
        (b"x-compute-time", repr(total_ms / 1000).encode()),
        (b"x-compute-characters", str(len(params.inputs)).encode()),
        (b"x-total-time", str(total_ms).encode()),
        (b"x-validation-time", str(gen.wall_ms(req.arrival, req.admitted)).encode()),
        (b"x-queue-time", str(gen.wall_ms(req.admitted, req.scheduled)).encode()),
        (b"x-inference-time", str(inference_ms).encode()),
        (b"x-time-per-token", str(inference_ms // max(req.generated, 1)).encode()),
        (b"x-prompt-tokens", str(params.prompt_tokens).encode()),
        (b"x-generated-tokens", str(req.generated).encode()),
        _id_header(state, gen),
    ]
    await delivery.answer(gen, send, dumps([doc] if wrap else doc).encode(), [*JSON_HEADERS, *headers])


def _id_header(state: MockState, gen: Generation) -> tuple[bytes, bytes]:
    """The request's id (the key of `GET /sim/requests` in its last 16 hex digits), as the OpenAI API
    sends it."""
    return (b"x-request-id", request_id("tgi", state.settings.seed, gen.req.rid).encode())
