"""Objective shorthand parsing, composition and validation against a model."""

import tracemalloc

import pytest
import torch

from dream_core import channel, layer, parse_objective
from dream_core.errors import ChannelOutOfRangeError, InvalidParameterError, ObjectiveSyntaxError, UnknownLayerError
from dream_core.objectives import LayerObjective, ScaledObjective, SumObjective


@pytest.mark.parametrize(
    "text, expected",
    [
        ("block10_dw", "block10_dw"),
        ("block8:12, block11", "block8:12, block11"),
        ("block8:10-13", "block8:10-13"),
        ("block8:[1,3,4,5,9]", "block8:[1,3-5,9]"),
        ("0.5*inception_4c/output + layer3.0:2", "0.5*inception_4c/output, layer3.0:2"),
    ],
)
def test_shorthand_round_trip(text, expected):
    obj = parse_objective(text)
    assert obj.to_string() == expected
    assert parse_objective(obj.to_string()).to_string() == expected


def test_structure_of_parsed_objective():
    obj = parse_objective("a:2, 0.5*b")
    assert isinstance(obj, SumObjective)
    first, second = obj.terms
    assert first == LayerObjective("a", (2,))
    assert isinstance(second, ScaledObjective) and second.factor == 0.5
    assert obj.layers() == ["a", "b"]


def test_objects_compose_like_strings():
    obj = layer("a") + 0.5 * channel("b", [1, 2])
    assert obj.to_string() == "a, 0.5*b:1-2"


def test_values_follow_definition():
    feats = {"a": torch.arange(8.0).view(1, 2, 2, 2), "b": torch.ones(1, 3, 1, 1)}
    assert torch.allclose(parse_objective("a")(feats), (torch.arange(8.0) ** 2).mean().view(1))
    assert torch.allclose(parse_objective("a:1")(feats), (torch.arange(4.0, 8.0) ** 2).mean().view(1))
    assert torch.allclose(parse_objective("a:1 + 2*b")(feats), torch.tensor([(torch.arange(4.0, 8.0) ** 2).mean() + 2]))


@pytest.mark.parametrize("text", ["", "   ", "a:", "a:x", "a:5-2", "3*", "a:[1,,b]"])
def test_bad_syntax(text):
    with pytest.raises(ObjectiveSyntaxError):
        parse_objective(text)


def test_unknown_layer_lists_close_matches(tiny_model):
    with pytest.raises(UnknownLayerError) as info:
        parse_objective("conv4", tiny_model)
    msg = str(info.value)
    assert "Did you mean: 'conv3'" in msg and "Its layers: conv1, conv2, conv3." in msg
    assert info.value.parameter == "objective"


def test_channel_out_of_range_names_valid_range(tiny_model):
    with pytest.raises(ChannelOutOfRangeError, match=r"0\.\.15"):
        parse_objective("conv2:16", tiny_model)
    parse_objective("conv2:15", tiny_model)  # last valid channel is fine


def test_channel_ranges_and_lists_select_the_right_channels():
    act = torch.randn(2, 6, 3, 3)
    feats = {"a": act}
    for chans in ([1, 2, 3], [0, 2, 5], [4]):
        expected = act[:, chans].pow(2).mean(dim=(1, 2, 3))
        obj = channel("a", chans)
        assert torch.allclose(obj(feats), expected)
        assert torch.allclose(obj(feats), expected)  # second call reuses the cached index


@pytest.mark.parametrize("text", ["1e400*block10_dw", "0*block10_dw", "-1e7*block10_dw", "a, 0*b"])
def test_non_finite_zero_and_huge_weights_are_refused(text):
    # 1e400 reads as inf (a black dream); 0 returns the input unchanged.
    with pytest.raises(InvalidParameterError, match="weight") as info:
        parse_objective(text)
    assert info.value.parameter == "objective"


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), 0.0])
def test_objects_refuse_the_same_weights(factor):
    with pytest.raises(InvalidParameterError, match="weight"):
        factor * layer("a")
    with pytest.raises(InvalidParameterError, match="weight"):
        layer("a", weight=factor)
    assert (-1.0 * layer("a")).to_string() == "-1*a"  # a negative weight suppresses: allowed


def test_huge_channel_range_is_refused_without_building_it():
    tracemalloc.start()
    try:
        for text in ("block10_dw:0-99999999", "block10_dw:[3, 5-99999999999999999999]", "block10_dw:" + "9" * 5000):
            with pytest.raises(ChannelOutOfRangeError, match="beyond any layer"):
                parse_objective(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # was: 12 GB while making the list of indices
    with pytest.raises(ObjectiveSyntaxError, match="characters long"):
        parse_objective("a:[" + ",".join(["1"] * 20000) + "]")
