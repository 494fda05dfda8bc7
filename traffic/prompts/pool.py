"""The prompt pool of a plan: load a source, render, measure, filter, sample — then draw sequences.

Order of operations (each step seeded from the plan seed):
1. read the source (file, hf dataset) and render each record (field mapping, conversation mode,
   polite variant), or generate synthetic prompts;
2. measure characters, and tokens when a tokenizer is given;
3. drop prompts outside the length filter;
4. keep a random subset of `sample` prompts if asked;
5. draw the request sequence from the pool: a random order without replacement (default), or
   i.i.d. draws with replacement — or, for a trace with token lengths, the prompt nearest to each
   request's input length.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundation.errors import InputError
from traffic.prompts import synthetic
from traffic.prompts.content import polite_text, render_table
from traffic.prompts.hf import read_hf
from traffic.prompts.source import SourceSpec
from traffic.prompts.tables import files_sha256, read_table
from traffic.prompts.tokenizer import TokenCounter, load_tokenizer

# Without a tokenizer, lengths for trace matching are estimated at 4 characters per token.
CHARS_PER_TOKEN_ESTIMATE = 4
# Trace matching picks at random among prompts within this relative distance of the wanted length.
MATCH_TOLERANCE = 0.10
_SYNTHETIC_ROUNDS = 20


@dataclass(frozen=True)
class PromptOptions:
    source: SourceSpec
    fields: dict[str, str] = field(default_factory=dict)
    conversation: str = "first"
    polite: bool = False
    tokenizer: str | None = None
    sample: int | None = None
    replace: bool = False
    min_chars: int | None = None
    max_chars: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None

    @property
    def filtered(self) -> bool:
        return any(v is not None for v in (self.min_chars, self.max_chars, self.min_tokens, self.max_tokens))


@dataclass
class PromptPool:
    ids: np.ndarray  # object: str
    prompts: np.ndarray  # object: str or None
    messages: np.ndarray  # object: JSON text or None
    chars: np.ndarray  # int64
    tokens: np.ndarray | None  # int64, when a tokenizer was given

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> PromptPool:
        return PromptPool(
            self.ids[index],
            self.prompts[index],
            self.messages[index],
            self.chars[index],
            None if self.tokens is None else self.tokens[index],
        )

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for pid, prompt, messages in zip(self.ids, self.prompts, self.messages, strict=True):
            digest.update(json.dumps([pid, prompt, messages], ensure_ascii=False).encode())
            digest.update(b"\n")
        return f"sha256:{digest.hexdigest()}"


@dataclass
class PromptSource:
    options: PromptOptions
    pool: PromptPool
    counter: TokenCounter | None
    info: dict[str, Any]  # the plan header's prompt_source

    def sequence(self, count: int, rng: np.random.Generator) -> PromptPool:
        """`count` prompts in request order."""
        size = len(self.pool)
        if self.options.replace:
            return self.pool.take(rng.integers(0, size, count))
        if count > size:
            raise InputError(
                f"{self.options.source.text}: only {size} prompts (after filters and sample) for {count} "
                "requests without replacement; pass --replace or ask for fewer requests"
            )
        return self.pool.take(rng.permutation(size)[:count])

    def matching(self, input_tokens: np.ndarray, rng: np.random.Generator) -> PromptPool:
        """For each wanted input length, a prompt of about that many tokens.

        Synthetic sources generate each prompt at the wanted length; other sources pick, at random,
        a pool prompt within MATCH_TOLERANCE of it, or the nearest one when none is that close.
        """
        wanted = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        if self.options.source.kind == "synthetic":
            pool = _synthetic_pool(self.options, rng, self.counter, lengths=wanted)
            self.info.update(content_hash=pool.content_hash(), records=len(pool), pool=len(pool))
            return pool
        lengths = self.pool.tokens
        if lengths is None:
            lengths = -(-self.pool.chars // CHARS_PER_TOKEN_ESTIMATE)
        order = np.argsort(lengths, kind="stable")
        ordered = lengths[order]
        lo = np.searchsorted(ordered, wanted * (1 - MATCH_TOLERANCE), side="left")
        hi = np.searchsorted(ordered, wanted * (1 + MATCH_TOLERANCE), side="right")
        first_not_below = np.searchsorted(ordered, wanted)
        left = np.clip(first_not_below - 1, 0, len(ordered) - 1)
        right = np.clip(first_not_below, 0, len(ordered) - 1)
        nearest = np.where(np.abs(ordered[left] - wanted) <= np.abs(ordered[right] - wanted), left, right)
        within = lo + np.floor(rng.random(len(wanted)) * np.maximum(hi - lo, 1)).astype(np.int64)
        picks = np.where(hi > lo, within, nearest)
        return self.pool.take(order[picks])


def load_source(options: PromptOptions, demand: int, rng: np.random.Generator) -> PromptSource:
    """Load the pool; `demand` sizes a synthetic pool (the number of prompts the plan needs)."""
    counter = load_tokenizer(options.tokenizer) if options.tokenizer else None
    spec = options.source
    info: dict[str, Any] = {"spec": spec.text, "kind": spec.kind}
    if spec.kind == "synthetic":
        size = options.sample or demand
        pool = _synthetic_pool(options, rng, counter, size=size)
        info.update(generator=synthetic.GENERATOR, settings=spec.options, content_hash=pool.content_hash())
        records = len(pool)
    else:
        if spec.kind == "hf":
            table = read_hf(
                spec.name or "", spec.options["split"], spec.options["config"], offline=spec.offline
            )
            info.update(spec.options, content_hash=table.extra["content_hash"])
        else:
            assert spec.path is not None
            table = read_table(spec.path, spec.kind)
            info["content_hash"] = files_sha256([spec.path])
        if table.provenance:
            info["provenance"] = table.provenance
        if table.rows == 0:
            raise InputError(f"{spec.text}: no prompts in the source (it has no records)")
        rendered = render_table(table, options.fields, options.conversation, options.polite)
        info.update(fields=rendered.fields, skipped=rendered.skipped)
        pool = _pool_from(rendered.ids, rendered.prompts, rendered.messages, counter)
        records = len(pool)
        if records == 0:
            raise InputError(f"{spec.text}: no prompts in the source ({table.rows} records, none with text)")
        pool = pool.take(np.flatnonzero(_keep(pool, options)))
        if len(pool) == 0:
            raise InputError(f"{spec.text}: no prompt passes the length filter ({records} before filtering)")
        if options.sample is not None:
            if options.sample > len(pool):
                raise InputError(
                    f"{spec.text}: --sample {options.sample} exceeds the {len(pool)} prompts available"
                )
            pool = pool.take(rng.choice(len(pool), options.sample, replace=False))
    info.update(
        records=records,
        pool=len(pool),
        options={
            "conversation": options.conversation,
            "polite": options.polite,
            "tokenizer": counter.describe() if counter else None,
            "sample": options.sample,
            "replace": options.replace,
            "min_chars": options.min_chars,
            "max_chars": options.max_chars,
            "min_tokens": options.min_tokens,
            "max_tokens": options.max_tokens,
        },
    )
    return PromptSource(options, pool, counter, info)


def _synthetic_pool(
    options: PromptOptions,
    rng: np.random.Generator,
    counter: TokenCounter | None,
    *,
    lengths: np.ndarray | None = None,
    size: int = 0,
) -> PromptPool:
    """Synthetic prompts at the given lengths, or `size` prompts from the configured distribution.

    With a length filter, prompts are generated in rounds until `size` of them pass it.
    """
    if lengths is not None:
        return _synthetic_batch(options, lengths, rng, counter)
    pool: PromptPool | None = None
    for _ in range(_SYNTHETIC_ROUNDS):
        have = 0 if pool is None else len(pool)
        if have >= size:
            break
        # With a filter some prompts are dropped, so each round makes more than are missing.
        count = (size - have) * (2 if options.filtered else 1)
        batch = _synthetic_batch(
            options, synthetic.draw_lengths(count, options.source.options, rng), rng, counter
        )
        batch = batch.take(np.flatnonzero(_keep(batch, options)))
        pool = batch if pool is None else _concat(pool, batch)
    if pool is None or len(pool) < size:
        raise InputError(
            f"{options.source.text}: too few synthetic prompts pass the length filter; "
            "bring the synthetic length distribution (mean, min, max) inside the filter"
        )
    pool = pool.take(np.arange(size))
    pool.ids = np.array([str(i) for i in range(size)], dtype=object)  # renumbered after filtering
    return pool


def _synthetic_batch(
    options: PromptOptions, lengths: np.ndarray, rng: np.random.Generator, counter: TokenCounter | None
) -> PromptPool:
    texts = synthetic.generate(lengths, rng)
    if counter is not None:
        # Lengths are in tokens with a tokenizer: every pseudo-word is at least one token, so cutting
        # `lengths` words to `lengths` tokens gives exact lengths.
        texts = counter.truncate(texts, lengths)
    if options.polite:
        texts = [polite_text(t) for t in texts]
    return _pool_from([str(i) for i in range(len(texts))], texts, [None] * len(texts), counter)


def _pool_from(
    ids: list[str], prompts: Sequence[str | None], messages: list[Any], counter: TokenCounter | None
) -> PromptPool:
    chat = [None if m is None else json.dumps(m, ensure_ascii=False) for m in messages]
    # Messages are measured by their contents alone (no chat template).
    texts = [
        p if p is not None else "\n".join(turn["content"] for turn in m)
        for p, m in zip(prompts, messages, strict=True)
    ]
    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    tokens = counter.count(texts) if counter is not None else None
    return PromptPool(
        np.array(ids, dtype=object),
        np.array(prompts, dtype=object),
        np.array(chat, dtype=object),
        chars,
        tokens,
    )


def _concat(a: PromptPool, b: PromptPool) -> PromptPool:
    tokens = None if a.tokens is None or b.tokens is None else np.concatenate((a.tokens, b.tokens))
    return PromptPool(
        np.concatenate((a.ids, b.ids)),
        np.concatenate((a.prompts, b.prompts)),
        np.concatenate((a.messages, b.messages)),
        np.concatenate((a.chars, b.chars)),
        tokens,
    )


def _keep(pool: PromptPool, options: PromptOptions) -> np.ndarray:
    keep = np.ones(len(pool), dtype=bool)
    if options.min_chars is not None:
        keep &= pool.chars >= options.min_chars
    if options.max_chars is not None:
        keep &= pool.chars <= options.max_chars
    if options.min_tokens is not None or options.max_tokens is not None:
        if pool.tokens is None:
            raise InputError("--min-prompt-tokens/--max-prompt-tokens need --tokenizer")
        if options.min_tokens is not None:
            keep &= pool.tokens >= options.min_tokens
        if options.max_tokens is not None:
            keep &= pool.tokens <= options.max_tokens
    return keep
