"""Shards: the disjoint slices of a plan that parallel runners send."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.errors import InputError
from harness.records import Shard


def test_shards_split_requests_and_users_evenly() -> None:
    ids = np.arange(10)
    masks = [Shard(i, 3).mask(ids) for i in range(3)]
    assert sum(int(m.sum()) for m in masks) == 10 and not (masks[0] & masks[1]).any()
    assert [Shard(i, 3).users(2) for i in range(3)] == [1, 1, 0]
    assert [Shard(i, 2).users(5) for i in range(2)] == [3, 2]
    with pytest.raises(InputError, match="--shard 3/3"):
        Shard(3, 3)
    with pytest.raises(InputError, match="expected I/N"):
        Shard.parse("1-4")
