"""OpenAI-compatible `/v1/chat/completions` and `/v1/completions`, as vLLM and TGI's Messages API serve them.

Streaming asks for `stream_options.include_usage`, so the server's own token counts arrive in a last
chunk with empty `choices`. A chunk is content-bearing when it carries generated text (the first chat
chunk, with only `role`, and the usage chunk are not).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from foundation.errors import InputError
from harness.backends.base import CONTENT, END, Api, Prompt, StreamFault, as_int, error_text, load_json
from harness.records import RequestRecord


class _OpenAI(Api):
    def body(self, prompt: Prompt, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, **self._input(prompt), "stream": stream}
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        if prompt.ignore_eos:
            body["ignore_eos"] = True  # a vLLM extension: fixed output length for energy comparisons
        if prompt.temperature is not None:
            body["temperature"] = prompt.temperature
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def read_body(self, data: Any, headers: Mapping[str, str], rec: RequestRecord) -> None:
        if not isinstance(data, dict) or "error" in data:
            raise StreamFault(f"response is not a completion: {error_text(data)}"[:300])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise StreamFault("response has no choices")
        self._usage(data.get("usage"), rec)
        rec.finish_reason = choices[0].get("finish_reason")

    def read_event(self, data: str, rec: RequestRecord) -> int:
        if data == "[DONE]":
            return END
        obj = load_json(data, "SSE data")
        if not isinstance(obj, dict):
            raise StreamFault(f"SSE data is not a JSON object: {data[:80]!r}")
        if obj.get("error"):
            raise StreamFault(f"server error in stream: {error_text(obj)}"[:300])
        self._usage(obj.get("usage"), rec)
        flags = 0
        for choice in obj.get("choices") or ():
            if choice.get("finish_reason"):
                rec.finish_reason = choice["finish_reason"]
            if self._has_content(choice):
                flags = CONTENT
        return flags

    @staticmethod
    def _usage(usage: Any, rec: RequestRecord) -> None:
        if isinstance(usage, dict):
            rec.prompt_tokens = as_int(usage.get("prompt_tokens"))
            rec.output_tokens = as_int(usage.get("completion_tokens"))

    @abstractmethod
    def _input(self, prompt: Prompt) -> dict[str, Any]:
        """The prompt part of the body: `messages` (chat) or `prompt` (completions)."""

    @abstractmethod
    def _has_content(self, choice: dict[str, Any]) -> bool:
        """Whether a stream chunk's choice carries generated text."""


class OpenAIChat(_OpenAI):
    name = "openai-chat"

    def path(self, stream: bool) -> str:
        return "/v1/chat/completions"

    def _input(self, prompt: Prompt) -> dict[str, Any]:
        if prompt.messages is not None:
            return {"messages": prompt.messages}
        return {"messages": [{"role": "user", "content": prompt.prompt}]}

    def _has_content(self, choice: dict[str, Any]) -> bool:
        delta = choice.get("delta") or {}
        return bool(
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("tool_calls")
        )


class OpenAICompletions(_OpenAI):
    name = "openai-completions"

    def path(self, stream: bool) -> str:
        return "/v1/completions"

    def check(self, prompt: Prompt, where: str) -> None:
        if prompt.prompt is None:
            raise InputError(f"{where}: has only chat messages; --backend {self.name} needs prompt text")

    def _input(self, prompt: Prompt) -> dict[str, Any]:
        return {"prompt": prompt.prompt}

    def _has_content(self, choice: dict[str, Any]) -> bool:
        return bool(choice.get("text"))
