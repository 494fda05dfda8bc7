"""The OpenAI API as vLLM serves it: /v1/models, /v1/completions, /v1/chat/completions, /version.

Bodies, stream chunks and errors follow vLLM's OpenAI server (pydantic models serialized compactly):
streams are `data: {json}` events, one chunk per engine step and request (tokens produced while the
client was not reading are merged into one chunk, as vLLM v1 does), a usage chunk with empty
`choices` when `stream_options.include_usage`, then `data: [DONE]`. Errors are
`{"error": {"message", "type", "param", "code"}}` with vLLM's status codes: 400 for invalid JSON,
wrong types or missing fields ("Bad Request"), values out of range and prompts too long
("BadRequestError"), 404 for an unknown model ("NotFoundError"; the TGI flavour ignores the model
name, as TGI's Messages API does).

Limits of the mock: one prompt and one choice per request (n=1); sampling parameters other than
the length controls are accepted and ignored; logprobs are not produced.
"""

from __future__ import annotations

import re
import time
from typing import Any

from harness.mock import delivery
from harness.mock.asgi import (
    GONE,
    JSON_HEADERS,
    SSE_HEADERS,
    HttpError,
    Receive,
    Send,
    dumps,
    read_json,
    respond_json,
)
from harness.mock.engine import RequestSpec
from harness.mock.state import Generation, MockState
from harness.mock.token_text import request_id

_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")


# ------------------------------------------------------------------------------------------ errors
def bad_request(message: str, param: str | None = None) -> HttpError:
    return error(400, "BadRequestError", message, param)


def error(status: int, kind: str, message: str, param: str | None = None, headers=None) -> HttpError:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return HttpError(status, body, headers)


def invalid(loc: tuple, kind: str, msg: str, value: Any) -> HttpError:
    """A request-validation failure, worded like FastAPI's (vLLM answers them with 400 'Bad Request')."""
    shown = repr(value)
    detail = {
        "type": kind,
        "loc": ("body", *loc),
        "msg": msg,
        "input": value if len(shown) <= 200 else shown[:200],
    }
    return error(400, "Bad Request", f"1 validation error:\n  {detail!r}")


def injected(status: int) -> HttpError:
    kinds = {
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailableError",
        504: "GatewayTimeout",
    }
    return error(status, kinds[status], f"Injected fault: HTTP {status}")


# ------------------------------------------------------------------------------------------ fields
async def json_body(scope: dict, receive: Receive) -> dict | None:
    wrong_type = invalid(
        ("content-type",), "value_error", "Unsupported Media Type: Only 'application/json' is allowed", None
    )
    body = await read_json(
        scope, receive, wrong_type, lambda exc: invalid((0,), "json_invalid", "JSON decode error", {})
    )
    if body is GONE:
        return None
    if not isinstance(body, dict):
        raise invalid((), "model_attributes_type", "Input should be a valid dictionary or object", body)
    return body


def get_int(body: dict, key: str, default: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise invalid((key,), "int_type", "Input should be a valid integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.match(value):
        return int(value)
    raise invalid((key,), "int_parsing", "Input should be a valid integer", value)


def get_float(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise invalid((key,), "float_type", "Input should be a valid number", value)


def get_bool(body: dict, key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in (0, 1) and isinstance(value, int):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise invalid((key,), "bool_parsing", "Input should be a valid boolean", value)


def check_model(state: MockState, body: dict) -> None:
    model = body.get("model")
    if model is None:
        return
    if not isinstance(model, str):
        raise invalid(("model",), "string_type", "Input should be a valid string", model)
    # TGI's Messages API ignores `model` (huggingface_hub's InferenceClient sends a placeholder id).
    if model != state.settings.model_name and state.settings.flavour != "tgi":
        raise error(404, "NotFoundError", f"The model `{model}` does not exist.", "model")


class Sampling:
    """The length and streaming controls of a completion or chat request, validated."""

    def __init__(self, state: MockState, body: dict, prompt_tokens: int, max_tokens: int | None) -> None:
        limit = state.max_model_len
        if prompt_tokens >= limit:
            raise error(
                400,
                "BadRequestError",
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
                "input_tokens",
            )
        if max_tokens is None:
            max_tokens = limit - prompt_tokens
        elif max_tokens < 1:
            raise bad_request(f"max_tokens must be at least 1, got {max_tokens}.")
        elif prompt_tokens + max_tokens > limit:
            raise bad_request(
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
                f"context length is {limit} tokens and your request has {prompt_tokens} input tokens "
                f"({max_tokens} > {limit} - {prompt_tokens}).",
                "max_tokens",
            )
        min_tokens = get_int(body, "min_tokens", 0)
        assert min_tokens is not None
        if min_tokens < 0:
            raise bad_request(f"min_tokens must be greater than or equal to 0, got {min_tokens}.")
        if min_tokens > max_tokens:
            raise bad_request(
                f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
            )
        n = get_int(body, "n", 1)
        if n != 1:
            raise bad_request(f"n={n}: the mock server generates one choice per request (n=1)", "n")
        temperature = get_float(body, "temperature")
        if temperature is not None and temperature < 0:
            raise bad_request(f"temperature must be non-negative, got {temperature}.")
        self.stream = get_bool(body, "stream", False)
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise invalid(("stream_options",), "model_type", "Input should be a valid dictionary", options)
        if options is not None and not self.stream:
            raise bad_request("Stream options can only be defined when `stream=True`.", "stream_options")
        self.include_usage = options is not None and get_bool(options, "include_usage", True)
        self.continuous_usage = options is not None and get_bool(options, "continuous_usage_stats", False)
        self.prompt_tokens = prompt_tokens
        self.spec = RequestSpec(prompt_tokens, max_tokens, get_bool(body, "ignore_eos", False), min_tokens)


def _prompt_tokens(state: MockState, prompt: Any) -> int:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt:
            raise bad_request("Prompt cannot be empty.")
        return state.counter.text(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str | list) for p in prompt):
        raise bad_request("the mock server serves one prompt per request", "prompt")
    raise invalid(("prompt",), "string_type", "Input should be a valid string or a list of token ids", prompt)


def _chat_tokens(state: MockState, messages: Any) -> int:
    if not isinstance(messages, list):
        raise invalid(("messages",), "list_type", "Input should be a valid list", messages)
    if not messages:
        raise bad_request("messages must not be empty", "messages")
    contents = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(("messages", i), "model_type", "Input should be a valid dictionary", message)
        if not isinstance(message.get("role"), str):
            raise invalid(("messages", i, "role"), "missing", "Field required", message)
        content = message.get("content")
        if content is None or isinstance(content, str):
            contents.append(content or "")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise invalid(
                        ("messages", i, "content", j), "value_error", "only text parts are supported", part
                    )
                contents.append(part["text"])
        else:
            raise invalid(
                ("messages", i, "content"), "string_type", "Input should be a valid string", content
            )
    return state.counter.chat(contents)


# ------------------------------------------------------------------------------------------ routes
async def models(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    name = state.settings.model_name
    if state.settings.flavour == "tgi":
        card = {"id": name, "object": "model", "created": 0, "owned_by": name}
    else:
        card = {
            "id": name,
            "object": "model",
            "created": state.created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": state.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{state.settings.seed:032x}",
                    "object": "model_permission",
                    "created": state.created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
    await respond_json(send, 200, {"object": "list", "data": [card]})


async def version(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    await respond_json(send, 200, {"version": state.profile.engine_version or "mock"})


async def completions(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    body = await json_body(scope, receive)
    if body is None:
        return
    check_model(state, body)
    if body.get("prompt") is None:
        raise bad_request("Either prompt or prompt_embeds must be provided and non-empty.")
    sampling = Sampling(state, body, _prompt_tokens(state, body["prompt"]), get_int(body, "max_tokens", 16))
    await _generate(state, receive, send, sampling, chat=False)


async def chat_completions(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    body = await json_body(scope, receive)
    if body is None:
        return
    if "messages" not in body:
        raise invalid(("messages",), "missing", "Field required", body)
    check_model(state, body)
    prompt_tokens = _chat_tokens(state, body["messages"])
    max_tokens = get_int(body, "max_completion_tokens", None)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", None)
    await _generate(state, receive, send, Sampling(state, body, prompt_tokens, max_tokens), chat=True)


async def _generate(state: MockState, receive: Receive, send: Send, sampling: Sampling, chat: bool) -> None:
    plan = state.faults.draw()
    if plan.rate_limited:
        retry = str(state.profile.faults.retry_after_s).encode()
        raise error(
            429, "RateLimitError", "Injected fault: too many requests", headers=[(b"retry-after", retry)]
        )
    if plan.error_status is not None:
        raise injected(plan.error_status)
    await delivery.spike(state, plan)
    gen = Generation(state, sampling.spec, sampling.stream, plan, receive)
    try:
        if sampling.stream:
            await _stream(state, gen, send, sampling, chat)
        else:
            await _whole(state, gen, send, sampling, chat)
    finally:
        gen.finish()


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}


async def _stream(state: MockState, gen: Generation, send: Send, sampling: Sampling, chat: bool) -> None:
    req, model = gen.req, dumps(state.settings.model_name)
    rid = request_id("chatcmpl" if chat else "cmpl", state.settings.seed, req.rid)
    kind = "chat.completion.chunk" if chat else "text_completion"
    head = f'data: {{"id":"{rid}","object":"{kind}","created":{int(time.time())},"model":{model},"choices":['

    def events(start: int, stop: int) -> list[str]:
        text = dumps("".join(gen.texts(start, stop)))
        finish = req.finish_reason if gen.done else None
        end = "null}" if finish is None else f'"{finish}","stop_reason":null}}'
        if chat:
            choice = f'{{"index":0,"delta":{{"content":{text}}},"logprobs":null,"finish_reason":{end}'
        else:
            choice = f'{{"index":0,"text":{text},"logprobs":null,"finish_reason":{end}'
        usage = f',"usage":{dumps(_usage(sampling.prompt_tokens, stop))}' if sampling.continuous_usage else ""
        chunk = f"{head}{choice}]{usage}}}\n\n"
        if chat and start == 0:
            role = (
                '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}'
            )
            return [f"{head}{role}]}}\n\n", chunk]
        return [chunk]

    if not await delivery.stream(gen, send, [*SSE_HEADERS, _id_header(rid)], events):
        return
    tail = "data: [DONE]\n\n"
    if sampling.include_usage and not gen.plan.no_usage:
        usage = dumps(_usage(sampling.prompt_tokens, req.generated))
        tail = f'{head}],"usage":{usage}}}\n\n{tail}'
    await send({"type": "http.response.body", "body": tail.encode(), "more_body": False})


async def _whole(state: MockState, gen: Generation, send: Send, sampling: Sampling, chat: bool) -> None:
    if not await delivery.finished(gen):
        return
    req = gen.req
    text = "".join(gen.texts(0, req.generated))
    usage = {**_usage(sampling.prompt_tokens, req.generated), "prompt_tokens_details": None}
    if chat:
        message = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [],
            "reasoning_content": None,
        }
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": req.finish_reason,
            "stop_reason": None,
        }
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": req.finish_reason,
            "stop_reason": None,
            "prompt_logprobs": None,
        }
    rid = request_id("chatcmpl" if chat else "cmpl", state.settings.seed, req.rid)
    doc = {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": state.settings.model_name,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": usage,
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    if gen.plan.no_usage:
        del doc["usage"]
    await delivery.answer(gen, send, dumps(doc).encode(), [*JSON_HEADERS, _id_header(rid)])


def _id_header(rid: str) -> tuple[bytes, bytes]:
    """vLLM's `X-Request-Id` (with --enable-request-id-headers): here the response's id, whose last 16
    hex digits are the simulator's request number, the key of the mock's `GET /sim/requests`."""
    return (b"x-request-id", rid.encode())
