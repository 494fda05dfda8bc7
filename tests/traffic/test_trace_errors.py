"""A bad row of a CSV trace is named by its real line in the file and its own value.

A blank or `nan` time among numbers once switched the whole column to dates, so the error named
line 2 and its perfectly good `0.0`.
"""

from __future__ import annotations

import pytest

from foundation.errors import InputError
from traffic.traces import load_trace


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,input_tokens\n0.0,10\n0.5,10\n,10\n1.5,10\n", "line 4: timestamp is empty"),
        (
            "timestamp,input_tokens\n0.0,10\n0.5,10\nnan,10\n1.5,10\n",
            "line 4: timestamp 'nan' is not a number",
        ),
        ("timestamp\n0\n1\nNaN\n", "line 4: timestamp 'NaN' is not a number"),
        ("timestamp\n0\n1\ninf\n", "line 4: timestamp 'inf' is not a number"),
        # A blank line is still a line of the file: the row after it is line 5, not 4.
        ("timestamp,x\n0,1\n\n1,2\n,3\n", "line 5: timestamp is empty"),
        # Dates: one missing is named, the good ones are not.
        (
            "timestamp\n2024-01-01T00:00:00\n2024-01-01T00:00:02\nNaT\n",
            "line 4: timestamp 'NaT' is not a timestamp",
        ),
        ("timestamp,x\n2024-01-01T00:00:00,1\n\n,2\n", "line 4: timestamp is empty"),
        ("timestamp,input_tokens\n0,5\n1,\n", "line 3: input_tokens is empty"),
    ],
)
def test_bad_time_or_length_names_its_line_and_value(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_trace(path, "csv")
    assert str(caught.value).startswith(f"{path}: {message}"), caught.value
    assert "\n" not in str(caught.value)


def test_blank_lines_are_skipped_and_good_rows_kept(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,input_tokens\n\n0.5,10\n\n0.0,20\n\n")
    trace = load_trace(path, "csv")
    assert trace.times_s.tolist() == [0.0, 0.5] and trace.input_tokens.tolist() == [20, 10]
