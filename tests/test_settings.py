"""dream_core.settings: DreamSettings.validate refuses non-finite, degenerate and out-of-range values by name."""

from __future__ import annotations

import math

import pytest

from conftest import textured_image
from dream_core import DreamSettings, dream_image
from dream_core.errors import InvalidParameterError

FAST = DreamSettings(num_octaves=1, num_iterations=1, jitter=2)


@pytest.mark.parametrize(
    "change, parameter",
    [
        ({"learning_rate": math.inf}, "learning_rate"),  # was: a dream of 0/1 noise
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"learning_rate": 5.0}, "learning_rate"),  # a step beyond the whole 0..1 range
        ({"gradient_smoothing": math.inf}, "gradient_smoothing"),  # was: OverflowError
        ({"gradient_smoothing": 1e6}, "gradient_smoothing"),
        ({"octave_scale": math.inf}, "octave_scale"),
        ({"colour_decorrelation": math.nan}, "colour_decorrelation"),
        ({"seed": 2**70}, "seed"),  # was: ValueError "Overflow when unpacking long long"
        ({"seed": -1}, "seed"),
        ({"jitter": 10**9}, "jitter"),
        ({"num_octaves": 2.5}, "num_octaves"),
        ({"num_iterations": True}, "num_iterations"),
    ],
)
def test_bad_values_are_refused_naming_the_field(change, parameter):
    with pytest.raises(InvalidParameterError) as info:
        FAST.with_(**change).validate()
    assert info.value.parameter == parameter and str(info.value).startswith(parameter)


def test_largest_seed_dreams(tiny_model):
    out = dream_image(tiny_model, textured_image(32, 32), "conv2", FAST.with_(seed=2**64 - 1))
    assert out.isfinite().all()


def test_small_tile_size_names_both_ways_out():
    with pytest.raises(InvalidParameterError) as info:
        FAST.with_(tile_size=100).validate()  # the default overlap of 64 px needs tiles of 130 px
    text = str(info.value)
    assert info.value.parameter == "tile_overlap"
    assert "tile_size of at least 130" in text and "at most 49" in text and "raise tile_size" in text
