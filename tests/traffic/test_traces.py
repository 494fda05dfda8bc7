"""Trace replay: the real Azure and Mooncake samples, a generic CSV, windows, time_scale, bad rows."""

import numpy as np
import pytest

from foundation.errors import InputError
from traffic.traces import load_trace, replay_offsets, window_indices, window_rate


def test_azure_trace_keeps_all_seven_fractional_digits(azure_trace):
    trace = load_trace(azure_trace)  # format detected from the header
    assert trace.format == "azure"
    assert len(trace.times_s) == 19_366
    # 18:15:46.6805900 -> 18:15:50.9951690 -> 18:15:51.2224670 (see the file's first rows)
    assert trace.times_s[0] == 0.0
    assert trace.times_s[1] == pytest.approx(4.314579, abs=1e-9)
    assert trace.times_s[2] == pytest.approx(4.541877, abs=1e-9)
    assert np.all(np.diff(trace.times_s) >= 0)
    assert trace.times_s[-1] == pytest.approx(58.4 * 60, rel=0.01)  # about 58.4 minutes
    assert trace.input_tokens[:2].tolist() == [374, 396]
    assert trace.output_tokens[:2].tolist() == [44, 109]
    assert trace.input_tokens.mean() == pytest.approx(1155, rel=0.01)
    assert trace.sha256 == "sha256:2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"


def test_mooncake_timestamps_are_milliseconds(mooncake_trace):
    trace = load_trace(mooncake_trace)
    assert trace.format == "mooncake"
    assert len(trace.times_s) == 12_031
    assert trace.times_s[-1] == pytest.approx(3536.999)
    assert trace.input_tokens[0] == 6758 and trace.output_tokens[0] == 500
    assert trace.has_lengths


def test_window_and_time_scale(azure_trace):
    trace = load_trace(azure_trace, "azure")
    offsets, rows = replay_offsets(trace, time_scale=0.5, start=600.0, end=660.0)
    in_window = (trace.times_s >= 600) & (trace.times_s < 660)
    assert len(rows) == in_window.sum()
    np.testing.assert_allclose(offsets, (trace.times_s[in_window] - 600.0) * 0.5)
    assert offsets.max() < 30.0  # 60 s of trace replayed twice as fast
    # The realized rate doubles when time is halved.
    realized = (len(offsets) - 1) / (offsets[-1] - offsets[0])
    assert realized == pytest.approx(2 * window_rate(trace, window_indices(trace, 600.0, 660.0)))
    # n and duration cut the replay (plan seconds, after scaling).
    cut, _ = replay_offsets(trace, time_scale=2.0, duration=60.0)
    assert cut.max() < 60.0 and np.all(trace.times_s[: len(cut)] * 2.0 < 60.0)
    first_ten, _ = replay_offsets(trace, time_scale=1.0, n=10)
    assert len(first_ten) == 10


def test_generic_csv_with_time_unit_and_token_columns(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_ms,in_tok,out_tok\n1500,10,5\n500,20,6\n2500,30,7\n")
    trace = load_trace(
        path, "csv", time_col="arrival_ms", unit="ms", input_col="in_tok", output_col="out_tok"
    )
    # Rows are put in time order; times count from the first arrival.
    assert trace.times_s.tolist() == [0.0, 1.0, 2.0]
    assert trace.input_tokens.tolist() == [20, 10, 30]
    assert trace.output_tokens.tolist() == [6, 5, 7]


def test_generic_csv_detects_columns_and_datetimes(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(
        "timestamp,input_tokens,output_tokens\n2024-01-01T00:00:00.5,1,2\n2024-01-01T00:00:02,3,4\n"
    )
    trace = load_trace(path)
    assert trace.format == "csv"
    assert trace.times_s.tolist() == [0.0, 1.5]
    assert trace.has_lengths
    bare = tmp_path / "bare.csv"
    bare.write_text("time\n0\n0.25\n")
    only_times = load_trace(bare)
    assert only_times.times_s.tolist() == [0.0, 0.25] and not only_times.has_lengths


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "expected"),
    [
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,3,4\nnot-a-time,5,6\n",
            {},
            "line 3: TIMESTAMP 'not-a-time' is not a timestamp",
        ),
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,-3,4\n",
            {},
            "line 2: ContextTokens '-3' is not a non-negative integer",
        ),
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,3,x\n",
            {},
            "line 2: GeneratedTokens 'x' is not a non-negative integer",
        ),
        (
            "a.csv",
            "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,3\n",
            {"format": "azure"},
            "column 'GeneratedTokens' not found",
        ),
        ("a.csv", "when,x\n1,2\n", {}, "no time column"),
        (
            "a.csv",
            "time,x\n1,2\n2,oops\n",
            {"input_col": "x"},
            "line 3: x 'oops' is not a non-negative integer",
        ),
        ("a.csv", "time\n", {}, "trace has no requests"),
        (
            "m.jsonl",
            '{"timestamp": 0, "input_length": 1, "output_length": 2}\n{"timestamp": 5\n',
            {},
            "line 2: not valid JSON",
        ),
        ("m.jsonl", '{"timestamp": 0, "input_length": 1}\n', {}, "line 1: Mooncake record needs"),
        (
            "m.jsonl",
            '{"timestamp": -1, "input_length": 1, "output_length": 2}\n',
            {},
            "line 1: timestamp -1 is not a non-negative number",
        ),
        (
            "m.jsonl",
            '{"timestamp": 1, "input_length": 1.5, "output_length": 2}\n',
            {},
            "line 1: input_length 1.5 is not a non-negative integer",
        ),
    ],
)
def test_malformed_traces_name_file_and_line(tmp_path, name, content, kwargs, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        load_trace(path, **kwargs)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_missing_trace_and_empty_window(tmp_path, azure_trace):
    with pytest.raises(InputError, match="trace file not found"):
        load_trace(tmp_path / "nope.csv")
    trace = load_trace(azure_trace)
    with pytest.raises(InputError, match="holds no requests"):
        window_indices(trace, 1e6)
