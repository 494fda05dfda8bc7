"""Prompt sources: UltraChat and AI Energy Score files, generic JSONL/JSON/CSV/Parquet, Hugging Face
datasets by name (downloaded into their cache, or read from it with --offline), and the built-in
synthetic source (the embedded default)."""

from traffic.prompts.pool import PromptOptions, PromptPool, PromptSource, load_source
from traffic.prompts.source import SourceSpec, parse_source

__all__ = ["PromptOptions", "PromptPool", "PromptSource", "SourceSpec", "load_source", "parse_source"]
