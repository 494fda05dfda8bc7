"""`server_metrics.parquet`: the server's own Prometheus metrics, as scraped during a run.

Long format, one row per sample of a scrape:

| column | type | meaning |
|---|---|---|
| `t_ns` | int64 | harness monotonic clock: the midpoint of the scrape's request |
| `name` | string | sample name as exposed (`vllm:num_requests_running`, `..._bucket`, ...) |
| `labels` | string | the sample's labels as compact JSON with sorted keys (`le` included) |
| `value` | float64 | |

Header (Parquet metadata key `joulebench.server_metrics`): `{"schema_version": 1, "url",
"interval_s", "anchor"}`. A run whose scrapes all failed has no file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from foundation.tagged_parquet import TaggedFormat, read_tagged, schema_of, tagged_writer

SERVER_METRICS_FILE = "server_metrics.parquet"
SERVER_METRICS_FORMAT = TaggedFormat(
    "server metrics", "joulebench.server_metrics", version=1,
    schema=schema_of({"t_ns": (pa.int64(), False), "name": (pa.string(), False),
                      "labels": (pa.string(), False), "value": (pa.float64(), False)}),
)  # fmt: skip
# Batch size over time, for the report's power timeline: (running, waiting) per server flavour.
LOAD_METRICS = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size"),
}
Sample = tuple[int, str, str, float]  # t_ns, name, labels JSON, value


def write_server_metrics(
    run_dir: str | os.PathLike[str], batches: Iterable[list[Sample]], header: dict[str, Any]
) -> int:
    """Write the samples, one row group per batch (bounded memory); returns the rows written. The
    file appears only if there is at least one row, and only once it is complete."""
    rows = 0
    with ExitStack() as stack:
        append = None
        for batch in batches:
            if not batch:
                continue
            if append is None:
                path = Path(run_dir) / SERVER_METRICS_FILE
                append = stack.enter_context(tagged_writer(path, SERVER_METRICS_FORMAT, header))
            append(_table(batch))
            rows += len(batch)
    return rows


def _table(rows: list[Sample]) -> pa.Table:
    t, name, labels, value = zip(*rows, strict=True)
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "name": pa.array(name, pa.string()),
            "labels": pa.array(labels, pa.string()),
            "value": pa.array(value, pa.float64()),
        },
        schema=SERVER_METRICS_FORMAT.schema,
    )


def read_server_metrics(
    run_dir: str | os.PathLike[str], names: list[str] | None = None
) -> pd.DataFrame | None:
    """The samples (only `names` if given); None when the run has no server metrics."""
    path = Path(run_dir) / SERVER_METRICS_FILE
    if not path.is_file():
        return None
    filters = [("name", "in", names)] if names else None
    table, _ = read_tagged(path, SERVER_METRICS_FORMAT, filters=filters)
    frame: pd.DataFrame = table.to_pandas()  # pyarrow ships no type information
    return frame


def server_load(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Requests running and waiting on the server over time (`t_ns`, `running`, `waiting`), summed over
    engines/shards; None without server metrics or without a known batch metric."""
    names = [n for pair in LOAD_METRICS.values() for n in pair]
    frame = read_server_metrics(run_dir, names)
    if frame is None or frame.empty:
        return None
    for running, waiting in LOAD_METRICS.values():
        part = frame[frame["name"].isin([running, waiting])]
        if (part["name"] == running).any():
            wide = part.pivot_table(index="t_ns", columns="name", values="value", aggfunc="sum")
            # Annotated: pandas-stubs 3 types the constructor with typing.Self, which a 3.10 target lacks.
            load: pd.DataFrame = pd.DataFrame(
                {
                    "t_ns": wide.index.to_numpy(dtype=np.int64),
                    "running": wide[running].to_numpy(dtype=float),
                    "waiting": wide[waiting].to_numpy(dtype=float) if waiting in wide else np.nan,
                }
            )
            return load
    return None
