"""Text Generation Inference's native `/generate` and `/generate_stream` (with `details`).

TGI streams one event per token, `data:{"index","token":{"id","text","logprob","special"},
"generated_text","details"}`; the last event carries `generated_text` and, with `details`, the finish
reason, `generated_tokens` and (TGI >= 2) `input_length`. The non-streaming response reports prompt
and generated token counts and server-side timings in `x-*` headers (kept by the client).
TGI has no `ignore_eos`: `max_new_tokens` is only an upper bound on the output length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foundation.errors import InputError
from harness.backends.base import CONTENT, END, Api, Prompt, StreamFault, as_int, error_text, load_json
from harness.records import RequestRecord


class TGIGenerate(Api):
    name = "tgi-generate"

    def path(self, stream: bool) -> str:
        return "/generate_stream" if stream else "/generate"

    def check(self, prompt: Prompt, where: str) -> None:
        if prompt.prompt is None:
            raise InputError(f"{where}: has only chat messages; --backend tgi needs prompt text")

    def body(self, prompt: Prompt, stream: bool) -> dict[str, Any]:
        parameters: dict[str, Any] = {"details": True}
        if prompt.max_tokens is not None:
            parameters["max_new_tokens"] = prompt.max_tokens
        if prompt.temperature is not None:
            # TGI rejects temperature 0; greedy decoding is do_sample=false.
            if prompt.temperature > 0:
                parameters.update(temperature=prompt.temperature, do_sample=True)
            else:
                parameters["do_sample"] = False
        return {"inputs": prompt.prompt, "parameters": parameters}

    def read_headers(self, headers: Mapping[str, str], rec: RequestRecord) -> None:
        rec.prompt_tokens = _header_int(headers, "x-prompt-tokens")
        rec.output_tokens = _header_int(headers, "x-generated-tokens")

    def read_body(self, data: Any, headers: Mapping[str, str], rec: RequestRecord) -> None:
        if isinstance(data, list) and data:  # TGI's compat route answers a one-element list
            data = data[0]
        if not isinstance(data, dict) or "generated_text" not in data:
            raise StreamFault(f"response is not a generation: {error_text(data)}"[:300])
        self._details(data.get("details"), rec)

    def read_event(self, data: str, rec: RequestRecord) -> int:
        obj = load_json(data, "SSE data")
        if not isinstance(obj, dict):
            raise StreamFault(f"SSE data is not a JSON object: {data[:80]!r}")
        if obj.get("error"):
            raise StreamFault(f"server error in stream: {error_text(obj)}"[:300])
        token = obj.get("token") or {}
        flags = CONTENT if token.get("text") and not token.get("special") else 0
        self._details(obj.get("details"), rec)
        if obj.get("generated_text") is not None:
            flags |= END
        return flags

    @staticmethod
    def _details(details: Any, rec: RequestRecord) -> None:
        if isinstance(details, dict):
            rec.finish_reason = details.get("finish_reason", rec.finish_reason)
            for field, key in (("output_tokens", "generated_tokens"), ("prompt_tokens", "input_length")):
                value = as_int(details.get(key))
                if value is not None:
                    setattr(rec, field, value)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
