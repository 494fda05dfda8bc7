"""power.parquet: round trip and one-line errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundation.errors import InputError
from harness.power.series import EnergySeries, PowerData
from harness.runfolder.power_file import load_power, save_power


def _power() -> PowerData:
    return PowerData(
        series=[
            EnergySeries("0", np.array([1, 2, 3]), np.array([0.0, 1.5, 4.0]), np.array([10.0, np.nan, 12.0]),
                         uuid="GPU-a", name="H100", source="sidecar", issues=["1 counter reset stitched"]),
            EnergySeries("1", np.array([1, 5]), np.array([7.0, 9.0]), None, uuid="GPU-b", integrated=True),
            EnergySeries("2", np.zeros(0, dtype=np.int64), np.zeros(0)),  # a GPU that gave nothing
        ],
        source="sidecar",
        clock={"mode": "offset", "offset_ns": 12, "uncertainty_ns": 3},
        issues=["sidecar restarted"],
    )  # fmt: skip


def test_round_trip(tmp_path):
    original = _power()
    path = save_power(tmp_path, original)
    assert path.name == "power.parquet"
    back = load_power(tmp_path)
    assert (back.source, back.clock, back.issues) == (original.source, original.clock, original.issues)
    assert [s.gpu for s in back.series] == ["0", "1", "2"]
    for a, b in zip(original.series, back.series, strict=True):
        assert np.array_equal(a.t_ns, b.t_ns) and np.array_equal(a.energy_j, b.energy_j)
        assert (a.uuid, a.name, a.integrated, a.issues) == (b.uuid, b.name, b.integrated, b.issues)
        if a.power_w is None:
            assert b.power_w is None
        else:
            np.testing.assert_array_equal(a.power_w, b.power_w)
    table = pq.read_table(path)
    assert table.column_names == ["gpu", "t_ns", "energy_j", "power_w"]  # the documented long format


def test_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="power file not found"):
        load_power(tmp_path)
    (tmp_path / "power.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file") as err:
        load_power(tmp_path)
    assert "\n" not in str(err.value)
    pq.write_table(pa.table({"gpu": ["0"], "t_ns": [1]}), tmp_path / "power.parquet")
    with pytest.raises(InputError, match="no joulebench power file header"):
        load_power(tmp_path)
    save_power(tmp_path, _power())
    table = pq.read_table(tmp_path / "power.parquet")
    broken = table.replace_schema_metadata({b"joulebench.power": b'{"schema_version": 99}'})
    pq.write_table(broken, tmp_path / "power.parquet")
    with pytest.raises(InputError, match="schema version 99"):
        load_power(tmp_path)
