"""Segment plan arithmetic (dream_core.distributed.segments)."""

import pytest

from dream_core.distributed.segments import burn_in_for, crossfade_weights, plan_segments
from dream_core.errors import InvalidParameterError


def test_segments_cover_the_range_once_with_burn_in_and_blends():
    segs = plan_segments(range(10, 75), segment_length=20, burn_in=12, overlap=5)
    assert [s.keep for s in segs] == [range(10, 30), range(30, 50), range(50, 70), range(70, 75)]
    kept = [t for s in segs for t in s.keep]
    assert kept == list(range(10, 75))
    assert segs[0].dream == range(10, 30) and segs[0].blend_in == range(10, 10)
    assert segs[1].dream == range(18, 50) and segs[1].blend_in == range(25, 30)
    for prev, cur in zip(segs, segs[1:]):
        assert prev.blend_out == cur.blend_in and set(cur.blend_in) <= set(cur.dream)
        assert list(prev.body) + list(prev.blend_out) == list(prev.keep)
    assert segs[-1].blend_out == range(75, 75) and segs[-1].body == range(70, 75)


def test_burn_in_is_capped_at_the_range_start():
    segs = plan_segments(range(0, 30), segment_length=10, burn_in=25, overlap=3)
    assert [s.burn_in for s in segs] == [0, 10, 20] and [s.dream.start for s in segs] == [0, 0, 0]


def test_burn_in_from_carry():
    assert burn_in_for(0.95) == 59 and burn_in_for(0.9) == 29 and burn_in_for(0.0) == 0
    assert 0.95 ** burn_in_for(0.95) < 0.05 <= 0.95 ** (burn_in_for(0.95) - 1)
    with pytest.raises(InvalidParameterError, match="never fades"):
        burn_in_for(1.0)


def test_crossfade_ramps_strictly_inside():
    assert crossfade_weights(3) == [0.25, 0.5, 0.75] and crossfade_weights(0) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"segment_length": 0, "burn_in": 0, "overlap": 0}, "segment_length"),
    ({"segment_length": 5, "burn_in": 8, "overlap": 5}, "overlap"),
    ({"segment_length": 10, "burn_in": 2, "overlap": 4}, "burn_in"),
])
def test_bad_plans_are_refused(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        plan_segments(range(0, 40), **kwargs)
