"""Hugging Face `datasets` by name: downloaded through the `datasets` cache, or read from it offline.

Online (the default), `datasets` resolves the dataset on the Hub (HF_ENDPOINT), downloads what its cache
(HF_HOME, HF_DATASETS_CACHE) lacks and shows its own progress bars on stderr. Offline (`offline=True`,
the `--offline` flag, or HF_HUB_OFFLINE=1 set by the user) only the local cache is read: a dataset that
is not there fails at once with one line saying how to cache it, instead of waiting on the network.

Without a split, the split is chosen from the dataset's split names (metadata, no download): `train`,
else the only split, else a known preference (PREFERRED_SPLITS), else a one-line error listing them. A
split may carry `datasets`' slice syntax (`train_sft[:500]`, `train[10%:20%]`): the split's name is
checked, the slice goes to the load.

`--offline` switches the libraries' offline flags for this load only (they read the environment once,
when imported; setting it would freeze them offline for the rest of the process).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from foundation.errors import InputError
from traffic.prompts.tables import Table, files_sha256

INSTALL_HINT = "pip install 'joulebench[hf]'"
# Splits taken when no split is given and there is neither `train` nor a single split: SFT-style sets
# (UltraChat 200k: train_sft, test_sft, train_gen, ...) name their training split so.
PREFERRED_SPLITS = ("train_sft",)
_SLICE = re.compile(r"\[[^\]]*\]$")  # `datasets`' split slice: train[:100], train[10%:20%]


def read_hf(name: str, split: str | None, config: str | None, offline: bool = False) -> Table:
    """The split `split` (None: chosen by the rule above) of dataset `name`; its provenance says what
    was loaded: dataset, config, split and the Hub revision (commit) the cache entry came from."""
    origin = f"hf:{name}"
    datasets = import_datasets(origin)
    # HF_HUB_OFFLINE=1 set by the user makes the libraries offline on their own; say so the same way.
    how = "--offline" if offline else "HF_HUB_OFFLINE=1" if datasets.config.HF_HUB_OFFLINE else None
    with _quiet_hub_logs(), _offline_flags(datasets) if offline else contextlib.nullcontext():
        try:
            builder = datasets.load_dataset_builder(name, config)
        except Exception as exc:  # datasets raises many unrelated types for "cannot get it"
            raise _load_error(origin, datasets, exc, how) from None
        chosen = choose_split(origin, split_names(builder), split)
        try:
            # Every split of the config: `datasets` prepares a config as a whole (docs/plans.md).
            builder.download_and_prepare()
            dataset = builder.as_dataset(split=chosen)
        except Exception as exc:
            raise _load_error(origin, datasets, exc, how) from None
    return Table(
        origin=origin,
        names=list(dataset.column_names),
        rows=len(dataset),
        column=lambda column: list(dataset[column]),
        where=lambda i: f"row {i}",
        provenance={
            "dataset": name,
            "config": builder.config.name,
            "split": chosen,
            "revision": builder.hash,
        },
        # The Arrow files of the local cache are the dataset's content as loaded.
        extra={"content_hash": files_sha256(Path(f["filename"]) for f in dataset.cache_files)},
    )


def import_datasets(origin: str) -> ModuleType:
    """The `datasets` package, or an InputError saying how to install it (it is an optional extra)."""
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise InputError(f"{origin}: the `datasets` package is not installed ({INSTALL_HINT})") from None
    datasets.utils.logging.set_verbosity_error()  # its warnings; the InputError says what matters
    return datasets


def split_names(builder: Any) -> list[str]:
    """The dataset's splits without downloading it: from its card's or cache's dataset info, else the
    splits its data files are declared for (what the builder will generate)."""
    if builder.info.splits:
        return list(builder.info.splits)
    return list(builder.config.data_files or {})


def choose_split(origin: str, names: list[str], split: str | None) -> str:
    """`split` if the dataset has it (a slice after it kept: `train[:100]`); without one, `train`, the only
    split, or a preferred one."""
    listed = ", ".join(names) or "none"
    if split is not None:
        base = _SLICE.sub("", split)
        if base not in names:
            raise InputError(f"{origin}: no split {base!r} (splits: {listed})")
        return split
    if "train" in names:
        return "train"
    if len(names) == 1:
        return names[0]
    preferred = [s for s in PREFERRED_SPLITS if s in names]
    if preferred:
        return preferred[0]
    raise InputError(f"{origin}: which split? (splits: {listed}); choose one: {origin},split=S")


def _load_error(origin: str, datasets: ModuleType, exc: Exception, offline_by: str | None) -> InputError:
    text = str(exc).strip()
    reason = text.splitlines()[0][:200] if text else type(exc).__name__
    if offline_by is not None:
        # Most often not cached; the library's own first line says when it is something else.
        cache = datasets.config.HF_DATASETS_CACHE
        return InputError(
            f"{origin}: cannot load it from the local Hugging Face cache ({cache}), offline ({offline_by}): "
            f"{reason}; if it is not cached, cache it by running once without {offline_by}, with network"
        )
    return InputError(
        f"{origin}: cannot load it from the Hugging Face Hub ({datasets.config.HF_ENDPOINT}): {reason}"
    )


@contextlib.contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    # The hub client logs retries and cache misses as warnings; the InputError says what matters.
    # (After its import, which sets this logger's level.)
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


@contextlib.contextmanager
def _offline_flags(datasets: Any) -> Iterator[None]:
    # Both libraries read the offline switch from the environment at import time and consult these
    # module attributes on every request: set for this load, put back after it.
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
