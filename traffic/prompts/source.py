"""The `--prompts` value: `synthetic[:key=value,...]`, `hf:NAME[,split=S][,config=C]`, a shortcut for a
well-known Hugging Face dataset (SHORTCUTS: `ultrachat`), or a file path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traffic.prompts.synthetic import parse_options

# Shortcut -> the hf source it stands for. UltraChat 200k's SFT prompts: its `prompt` column is the
# first user turn, which the default field mapping (traffic.prompts.content) takes.
SHORTCUTS = {"ultrachat": "hf:HuggingFaceH4/ultrachat_200k,split=train_sft"}
FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # synthetic | hf | jsonl | json | csv | parquet
    text: str  # as the user wrote it
    path: Path | None = None  # file sources
    name: str | None = None  # hf dataset name
    options: dict[str, Any] = field(default_factory=dict)
    offline: bool = False  # hf: the local `datasets` cache only (not part of the plan: how, not what)


def parse_source(text: str) -> SourceSpec:
    """Parse and check a prompt source; raises ValueError with a one-line reason."""
    raw = text.strip()
    if not raw:
        raise ValueError("prompt source is empty")
    head, _, rest = raw.partition(":")
    if head == "synthetic":
        return SourceSpec("synthetic", raw, options=parse_options(rest))
    if head == "hf":
        return _parse_hf(raw, rest)
    if raw in SHORTCUTS:
        return _parse_hf(raw, SHORTCUTS[raw].removeprefix("hf:"))
    path = Path(raw)
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FILE_FORMATS))
        raise ValueError(
            f"{raw}: unknown prompt file type {path.suffix!r} (use {known}, 'synthetic', "
            f"{', '.join(SHORTCUTS)} or hf:NAME)"
        )
    if not path.is_file():
        raise ValueError(f"{raw}: prompt file not found")
    return SourceSpec(kind, raw, path=path)


def _parse_hf(raw: str, rest: str) -> SourceSpec:
    name, *items = [part.strip() for part in rest.split(",")]
    if not name or name.count("/") > 1:
        raise ValueError(f"{raw}: expected hf:NAME or hf:OWNER/NAME[,split=S][,config=C]")
    # No split: traffic.prompts.hf chooses one from the dataset's split names.
    options: dict[str, Any] = {"split": None, "config": None}
    for item in filter(None, items):
        key, sep, value = item.partition("=")
        if not sep or key not in options or not value:
            raise ValueError(f"{raw}: unknown option {item!r} (hf sources take split=... and config=...)")
        options[key] = value
    return SourceSpec("hf", raw, name=name, options=options)
