"""Token counts for prompts, and the text of generated tokens.

Prompt tokens, by default a deterministic estimate that needs no model files: one token per 4 bytes
of UTF-8, rounded up (at least 1) — the usual rule of thumb for English BPE vocabularies. Chat
prompts add 4 tokens per message (role header and end-of-turn markers) and 3 for the assistant
header that opens the reply. With a tokenizer (`tokenizer.json`, loaded by `tokenizers`), text is
counted exactly with it; chat messages get the same per-message overhead (the chat template itself
is not rendered).

Generated tokens are words from a fixed list, chosen by a hash of (seed, request, position), so the
same request in the same server run always reads the same. With `linebreak_rate` > 0, some tokens
carry a character that `str.splitlines()` treats as a line break (U+2028, U+2029, U+0085, \\x0b,
\\x0c, \\x1c, \\x1d, \\x1e): real random-weight models emit such text, and an SSE client that splits
lines with `splitlines()` breaks on it. JSON escapes the control characters, but U+2028, U+2029
and U+0085 travel raw in the UTF-8 stream, as vLLM and TGI send them.
"""

from __future__ import annotations

import math
from pathlib import Path

from foundation.errors import InputError

CHAT_TOKENS_PER_MESSAGE = 4
CHAT_REPLY_TOKENS = 3

# str.splitlines() breaks on these (besides \n and \r, which cannot hide inside one SSE data line).
LINE_BREAKERS = ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")

_WORDS = (
    " the", " energy", " of", " a", " request", " batch", " token", " power", " and", " to", " GPU",
    " is", " in", " model", " server", " that", " latency", " for", " per", " joule", " with", " it",
    " arrival", " queue", " step", " decode", " prefill", " cache", " as", " on", " watts", " time",
    ",", ".", " we", " can", " measure", " each", " more", " than", " when", " load", " rate", " be",
)  # fmt: skip


class PromptCounter:
    """Counts prompt tokens: the documented estimate, or a real tokenizer."""

    def __init__(self, tokenizer_path: Path | None = None) -> None:
        self.tokenizer = None
        self.source = "estimate: ceil(utf8_bytes / 4)"
        if tokenizer_path is not None:
            try:
                from tokenizers import Tokenizer

                self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
            except Exception as exc:  # tokenizers raises its own Exception subclass for bad files
                raise InputError(f"--tokenizer {tokenizer_path}: cannot load ({exc})") from None
            self.source = f"tokenizer: {tokenizer_path.name}"

    def text(self, text: str, special: bool = True) -> int:
        if self.tokenizer is not None:
            return max(1, len(self.tokenizer.encode(text, add_special_tokens=special).ids))
        return max(1, math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4))

    def chat(self, contents: list[str]) -> int:
        body = sum(self.text(c, special=False) + CHAT_TOKENS_PER_MESSAGE for c in contents)
        bos = 1 if self.tokenizer is not None else 0
        return bos + body + CHAT_REPLY_TOKENS


def token_texts(seed: int, rid: int, start: int, stop: int, linebreak_rate: float) -> list[str]:
    """Texts of output tokens start..stop-1 of request `rid` (deterministic)."""
    out = []
    for i in range(start, stop):
        h = _mix(seed, rid, i)
        word = _WORDS[h % len(_WORDS)]
        if linebreak_rate > 0.0 and (h >> 20) % 1_000_000 < linebreak_rate * 1_000_000:
            word += LINE_BREAKERS[(h >> 40) % len(LINE_BREAKERS)]
        out.append(word)
    return out


def token_ids_logprobs(seed: int, rid: int, start: int, stop: int) -> list[tuple[int, float]]:
    """Made-up token ids (in a Llama-3-sized vocabulary) and log-probabilities for TGI's details."""
    out = []
    for i in range(start, stop):
        h = _mix(seed, rid, i)
        out.append(((h >> 8) % 128_000, -((h >> 32) % 4000) / 1000.0))
    return out


def request_id(prefix: str, seed: int, rid: int) -> str:
    """vLLM-like ids (`cmpl-` + 32 hex digits), deterministic for a seed and request number."""
    return f"{prefix}-{_mix(seed, rid, -1) & 0xFFFFFFFFFFFFFFFF:016x}{rid:016x}"


def _mix(seed: int, rid: int, i: int) -> int:
    """A 64-bit hash of three integers (splitmix64's finalizer): cheap, well spread, stable."""
    z = (seed * 0x9E3779B97F4A7C15 + rid * 0xBF58476D1CE4E5B9 + i * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)
