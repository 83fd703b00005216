"""DeepDream Layers' pick, count, rank_on and loss widgets (nodes/model_nodes.py), called directly."""

from __future__ import annotations

import logging

import pytest

from pack_loader import load_pack

pack = load_pack()
core = pack.dream_core
M = pack.NODE_CLASS_MAPPINGS


def select(model, channels="", pick="listed", count=8, rank_on="clip", loss="l2", layer="block10_dw"):
    (objective,) = M["DDVLayerSelect"]().select(model, layer, channels, 1.0, None, pick, count, rank_on, loss)
    return objective.to_string()


def test_the_new_widgets_are_optional_and_come_after_the_old_ones():
    spec = M["DDVLayerSelect"].INPUT_TYPES()
    assert list(spec["required"]) == ["model", "layer", "channels", "weight"]  # saved workflows keep their values
    assert list(spec["optional"]) == ["objective", "pick", "count", "rank_on", "loss"]
    assert spec["optional"]["loss"][0] == list(core.LOSS_MODES)


def test_picks_become_the_shorthand(lite0):
    assert select(lite0) == "block10_dw"
    assert select(lite0, "3, 7") == "block10_dw:[3,7]"  # the channel list works as before
    assert select(lite0, "3, 7", pick="all but listed") == "block10_dw:![3,7]"
    assert select(lite0, pick="strong", count=8) == "block10_dw:strong8"
    assert select(lite0, pick="weak", count=4, rank_on="frame", loss="norm") == "block10_dw:weak4/frame@norm"
    assert select(lite0, pick="avg", count=16, rank_on="step", loss="abs_mean") == "block10_dw:avg16/step@abs_mean"


def test_a_ranked_pick_says_it_does_not_use_the_channel_list(lite0, caplog):
    with caplog.at_level(logging.WARNING):
        assert select(lite0, "3, 7", pick="strong", count=2) == "block10_dw:strong2"
    assert "is not used" in caplog.text
    assert M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dw", "not read", "strong") is True
    assert isinstance(M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dw", "not read", "listed"), str)


def test_errors_name_the_fix(lite0):
    with pytest.raises(core.ChannelOutOfRangeError, match="has 672 channels; 'strong700' asks for 700. Pick from 1 to 672"):
        select(lite0, pick="strong", count=700)
    with pytest.raises(core.InvalidParameterError, match="needs the channels to leave out in 'channels'"):
        select(lite0, pick="all but listed")
    with pytest.raises(core.ChannelOutOfRangeError, match="leaves out all 672 channels"):
        select(lite0, "0-671", pick="all but listed")
    with pytest.raises(core.InvalidParameterError, match="Did you mean: 'strong'"):
        select(lite0, pick="strongest")
