"""`server_metrics.parquet`: written in row groups, read back by name, and the batch-size series the
report draws under the power curve."""

from __future__ import annotations

import pandas as pd
import pytest

from foundation.errors import InputError
from harness.runfolder.server_metrics_file import (
    SERVER_METRICS_FILE,
    read_server_metrics,
    server_load,
    write_server_metrics,
)


def test_server_load_sums_engines_and_reads_tgi(tmp_path) -> None:
    rows = [
        (1, "vllm:num_requests_running", '{"engine":"0"}', 2.0),
        (1, "vllm:num_requests_running", '{"engine":"1"}', 3.0),
        (1, "vllm:num_requests_waiting", '{"engine":"0"}', 1.0),
        (2, "vllm:num_requests_running", '{"engine":"0"}', 0.0),
        (2, "vllm:num_requests_running", '{"engine":"1"}', 1.0),
        (2, "vllm:num_requests_waiting", '{"engine":"0"}', 0.0),
    ]
    assert write_server_metrics(tmp_path, [rows[:2], [], rows[2:]], {"url": "u"}) == 6
    load = server_load(tmp_path)
    assert load["running"].tolist() == [5.0, 1.0] and load["waiting"].tolist() == [1.0, 0.0]
    write_server_metrics(tmp_path, [[(7, "tgi_batch_current_size", "{}", 4.0)]], {"url": "u"})
    load = server_load(tmp_path)
    assert load["running"].tolist() == [4.0] and load["waiting"].isna().all()


def test_no_rows_no_file_and_a_foreign_file_is_one_line(tmp_path) -> None:
    assert write_server_metrics(tmp_path, [[], []], {"url": "u"}) == 0
    assert not (tmp_path / SERVER_METRICS_FILE).exists() and read_server_metrics(tmp_path) is None
    pd.DataFrame({"t_ns": [1], "name": ["x"], "labels": ["{}"], "value": [1.0]}).to_parquet(
        tmp_path / SERVER_METRICS_FILE
    )
    with pytest.raises(InputError, match="no joulebench server metrics header"):
        server_load(tmp_path)
