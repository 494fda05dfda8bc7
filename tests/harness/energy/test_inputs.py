"""The join's inputs: request lifetimes and the token model, power intervals, windows from the manifest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from energy_synth import MS, Req, S, frame

from foundation.errors import InputError
from harness.energy import ArmWindow, arm_windows_from_manifest, idle_windows_from_manifest
from harness.energy.grid import cut, energy_at
from harness.energy.lifetimes import chunk_arrays, lifetimes, tokens
from harness.energy.windows import derive_arm_windows, run_window
from harness.power.series import EnergySeries


def test_chunk_column_as_arrow_list_or_object_arrays_gives_the_same_arrays():
    chunks = [[1, 2, 3], [], None, [7]]
    obj = pd.DataFrame({"chunk_ns": [np.asarray(c if c is not None else [], dtype=np.int64) for c in chunks]})
    arrow = pa.array(chunks, type=pa.list_(pa.int64()))
    arw = pd.DataFrame({"chunk_ns": pd.Series(arrow, dtype=pd.ArrowDtype(arrow.type))})
    offset_view = pa.array([[9], *chunks], type=arrow.type)[1:]  # a slice: offsets do not start at 0
    sliced = pd.DataFrame({"chunk_ns": pd.Series(offset_view, dtype=arw.dtypes.iloc[0])})
    for df in (obj, arw, sliced):
        flat, offsets = chunk_arrays(df)
        assert flat.tolist() == [1, 2, 3, 7] and offsets.tolist() == [0, 3, 3, 3, 4]


def test_lifetimes_drop_unsent_and_bad_rows():
    reqs = [
        Req(0, 10, 20, first=15),
        Req(1, None, None, status="not_sent"),
        Req(2, 30, 25),  # done before sent: unusable
        Req(3, 40, 50, first=60),  # first token after done: ignored
    ]
    life = lifetimes(frame(reqs))
    assert life.row.tolist() == [0, 3] and life.bad_rows == 1
    assert life.first.tolist() == [15, 50] and life.has_first.tolist() == [True, False]


def test_token_model():
    reqs = [
        # 3 chunks carry 9 output tokens: 3 tokens at each chunk; 100 prompt tokens before the first.
        Req(0, 0, 10 * S, first=S, chunks=[S, 2 * S, 3 * S], prompt_tokens=100, output_tokens=9),
        # Not streamed: prompt and output tokens over the whole lifetime.
        Req(1, 0, 4 * S, first=4 * S, chunks=[4 * S], prompt_tokens=10, output_tokens=20, stream=False),
        # Failed before its first token: prompt tokens over its lifetime.
        Req(2, 0, 2 * S, prompt_tokens=50, status="timeout"),
        # No counts from the server: one token per chunk, prompt unknown (0), flagged as missing.
        Req(3, 0, 5 * S, first=S, chunks=[S, 2 * S], prompt_tokens=None, output_tokens=None),
        # Chunks out of order and outside the lifetime.
        Req(4, S, 3 * S, first=S, chunks=[2 * S, 5 * S, S], output_tokens=3),
    ]
    life = lifetimes(frame(reqs))
    tok = tokens(frame(reqs), life)
    assert tok.stretch_end.tolist() == [S, 4 * S, 2 * S, S, S]
    assert tok.stretch_tokens.tolist() == [100, 30, 50, 0, 100]
    assert tok.prefill.tolist() == [True, False, False, True, True]
    assert tok.masses.per_chunk.tolist() == [3.0, 0.0, 0.0, 1.0, 1.0]
    assert tok.missing == 1 and tok.unsorted == 1
    assert tok.masses.flat[tok.masses.offsets[4] :].tolist() == [S, 2 * S, 3 * S]  # sorted, clipped


def test_point_mass_blocks_cover_every_chunk_once():
    reqs = [Req(i, 0, 10 * S, first=S, chunks=list(range(S, S + i)), output_tokens=i) for i in range(1, 40)]
    life = lifetimes(frame(reqs))
    masses = tokens(frame(reqs), life).masses
    masses.block = 50  # force many blocks
    ranges = list(masses.ranges())
    assert len(ranges) > 5
    assert [r[0] for r in ranges[1:]] == [r[1] for r in ranges[:-1]]  # contiguous whole requests
    assert [r[2] for r in ranges[1:]] == [r[3] for r in ranges[:-1]]
    assert (ranges[0][0], ranges[0][2], ranges[-1][1], ranges[-1][3]) == (0, 0, 39, len(masses))


def test_cut_interpolates_window_edges_and_splits_at_arm_boundaries():
    s = EnergySeries("0", np.array([0, 10, 20, 30]) * S, np.array([0.0, 100.0, 300.0, 600.0]))
    iv = cut(s, 5 * S, 25 * S, np.array([15 * S]))
    assert iv.tau.tolist() == [5 * S, 10 * S, 15 * S, 20 * S, 25 * S]
    assert iv.energy.tolist() == pytest.approx([50, 100, 100, 150])
    assert iv.total_j == pytest.approx(
        energy_at(s, np.array([25 * S]))[0] - energy_at(s, np.array([5 * S]))[0]
    )


def test_repeated_counter_readings_within_the_update_lag_are_merged():
    # A counter updating every 100 ms read every 20 ms: 4 of 5 readings repeat the last value.
    t = np.arange(0, 1001, 20) * MS
    e = np.floor(t / (100 * MS)) * 10.0
    iv = cut(EnergySeries("0", t, e), 0, S, np.zeros(0, dtype=np.int64))
    assert iv.repeats > 0
    assert np.all(iv.energy > 0)  # no zero-power intervals followed by double ones
    # A real pause (the value stays put for 2 s, far longer than the lag) keeps its readings.
    t = np.arange(0, 4001, 100) * MS
    e = np.where(t < 1 * S, t / S, np.where(t < 3 * S, 1.0, 1.0 + (t - 3 * S) / S))
    iv = cut(EnergySeries("0", t, e), 0, 4 * S, np.zeros(0, dtype=np.int64))
    assert (iv.energy == 0).sum() >= 15


def test_gaps_are_marked():
    t = np.concatenate([np.arange(0, 10, 0.1), np.arange(15, 20, 0.1)]) * S
    iv = cut(EnergySeries("0", t.astype(np.int64), t / S), 0, 20 * S, np.zeros(0, dtype=np.int64))
    assert iv.gaps == 1 and iv.gap_s == pytest.approx(5.1, abs=0.01)


def test_windows_from_the_manifest():
    manifest = {
        "arms": [
            {"name": "fixed", "start_ns": 10, "end_ns": 20, "kind": "fixed"},
            {"name": "bursty", "start_ns": 20, "end_ns": None},  # never finished: no window
        ],
        "idle": {"pre": {"start_ns": 0, "end_ns": 5}, "post": None},
    }
    assert arm_windows_from_manifest(manifest) == [ArmWindow("fixed", 10, 20)]
    idle = idle_windows_from_manifest(manifest, mode="pre")
    assert idle.pre.start_ns == 0 and idle.post is None and idle.mode == "pre"
    assert arm_windows_from_manifest({}) == []
    with pytest.raises(InputError, match=r"arms\[0\]"):
        arm_windows_from_manifest({"arms": [{"name": "x", "start_ns": "soon", "end_ns": 3}]})
    with pytest.raises(InputError, match=r"idle\.pre"):
        idle_windows_from_manifest({"idle": {"pre": {"start_ns": 1}}})
    with pytest.raises(InputError, match="idle mode"):
        idle_windows_from_manifest({}, mode="median")


def test_derived_windows_fill_in_missing_arms_in_time_order():
    reqs = [
        Req(0, 50, 60, arm="b", planned=45),
        Req(1, 10, 30, arm="a"),
        Req(2, 70, 80, arm="b", warmup=True),
    ]
    arms = derive_arm_windows(frame(reqs), [ArmWindow("b", 40, 65)])
    assert [(a.name, a.start_ns, a.end_ns, a.derived) for a in arms] == [
        ("a", 10, 30, True),
        ("b", 40, 65, False),
    ]
    assert run_window(arms).start_ns == 10 and run_window(arms).end_ns == 65
