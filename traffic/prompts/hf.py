"""Hugging Face `datasets` by name, from the local cache only.

joulebench never downloads prompts while building a plan: the hub is forced offline, so a dataset
that is not already in the local `datasets` cache fails at once with a clear message instead of
hanging on the network. Cache a dataset beforehand with `datasets.load_dataset(NAME)` on a machine
with network access (or copy its cache folder, `$HF_HOME/datasets`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from traffic.prompts.tables import Table, files_sha256

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def read_hf(name: str, split: str, config: str | None) -> Table:
    origin = f"hf:{name}"
    with _offline():
        try:
            datasets = importlib.import_module("datasets")
        except ImportError:
            raise InputError(
                f"{origin}: the `datasets` package is not installed (pip install datasets)"
            ) from None
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        try:
            with _offline_flags(datasets):
                dataset = datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # datasets raises many unrelated types for "not available offline"
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"{origin}: not in the local Hugging Face cache (offline; split {split!r}): {reason}"
            ) from None
    names = list(dataset.column_names)
    return Table(
        origin=origin,
        names=names,
        rows=len(dataset),
        column=lambda column: list(dataset[column]),
        where=lambda i: f"row {i}",
        # The Arrow files of the local cache are the dataset's content as loaded.
        extra={"content_hash": files_sha256(Path(f["filename"]) for f in dataset.cache_files)},
    )


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    # The hub client logs retries and cache misses as warnings; the InputError says what matters.
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _offline_flags(datasets: Any) -> Iterator[None]:
    # Both libraries read the offline switch from the environment at import time; when they were
    # imported before (e.g. by another part of the process), set the flags they consult directly.
    targets = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE")]
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        targets.append((hub_constants, "HF_HUB_OFFLINE"))
    saved = [(module, attr, getattr(module, attr, None)) for module, attr in targets]
    for module, attr in targets:
        setattr(module, attr, True)
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
