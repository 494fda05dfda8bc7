"""The `--prompts` value: `synthetic[:key=value,...]`, `hf:NAME[,split=S][,config=C]`, or a file path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traffic.prompts.synthetic import parse_options

FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # synthetic | hf | jsonl | json | csv | parquet
    text: str  # as the user wrote it
    path: Path | None = None  # file sources
    name: str | None = None  # hf dataset name
    options: dict[str, Any] = field(default_factory=dict)


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
    path = Path(raw)
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FILE_FORMATS))
        raise ValueError(
            f"{raw}: unknown prompt file type {path.suffix!r} (use {known}, 'synthetic' or hf:NAME)"
        )
    if not path.is_file():
        raise ValueError(f"{raw}: prompt file not found")
    return SourceSpec(kind, raw, path=path)


def _parse_hf(raw: str, rest: str) -> SourceSpec:
    name, *items = [part.strip() for part in rest.split(",")]
    if not name or name.count("/") > 1:
        raise ValueError(f"{raw}: expected hf:NAME or hf:OWNER/NAME[,split=S][,config=C]")
    options: dict[str, Any] = {"split": "train", "config": None}
    for item in filter(None, items):
        key, sep, value = item.partition("=")
        if not sep or key not in options or not value:
            raise ValueError(f"{raw}: unknown option {item!r} (hf sources take split=... and config=...)")
        options[key] = value
    return SourceSpec("hf", raw, name=name, options=options)
