"""The DeepDream Settings node and the one rule that merges its output with a dream node's widgets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pack_loader import load_pack

pack = load_pack()
core = pack.dream_core
nodes = pack.nodes
M = pack.NODE_CLASS_MAPPINGS
merge_settings = nodes.common.merge_settings


def widget_defaults(node_id: str) -> dict:
    out = {}
    for section in ("required", "optional"):
        for name, (kind, *rest) in M[node_id].INPUT_TYPES().get(section, {}).items():
            opts = rest[0] if rest else {}
            if isinstance(kind, list):
                out[name] = opts.get("default", kind[0])
            elif "default" in opts:
                out[name] = opts["default"]
    return out


def settings_node(**over) -> dict:
    with torch.inference_mode():
        return M["DDVSettings"]().build(**{**widget_defaults("DDVSettings"), **over})[0]


def test_settings_node_holds_every_setting_but_the_everyday_ones():
    every = {f.name for f in dataclasses.fields(core.DreamSettings)} | {f.name for f in dataclasses.fields(core.VideoSettings)}
    carried = settings_node()
    assert set(carried) == every - {"learning_rate", "seed", "mode"}
    assert M["DDVSettings"].RETURN_TYPES == ("DEEPDREAM_SETTINGS",) == (nodes.common.SETTINGS_TYPE,)
    # Its defaults are what a dream node runs with nothing connected.
    assert merge_settings({}, carried) == merge_settings({})


def test_settings_input_wins_over_the_widgets_and_the_rest_comes_from_the_widgets():
    carried = settings_node(num_octaves=2, carry=0.5, colour_coherence=0.0, tile_size=512)
    dream, video = merge_settings({"learning_rate": 0.02, "seed": 3, "num_octaves": 5, "mode": "seed",
                                   "start_frame": 4}, carried)
    assert (dream.num_octaves, dream.learning_rate, dream.seed, dream.tile_size) == (2, 0.02, 3, 512)
    assert (video.mode, video.carry, video.colour_coherence) == ("seed", 0.5, 0.0)


def test_nothing_connected_gives_the_front_ends_defaults():
    dream, video = merge_settings({})
    assert dream == core.DreamSettings()
    assert video == core.VideoSettings(colour_coherence=core.clip.settings.RECOMMENDED_COLOUR_COHERENCE)


def test_a_named_preset_decides_the_look_fields_wherever_they_are_set():
    carried = settings_node(num_octaves=2, gradient_smoothing=3.0, jitter=7)
    dream, _ = merge_settings({"preset": "intense", "learning_rate": 0.05, "seed": 1}, carried)
    assert dream == core.presets.preset_settings("intense", core.DreamSettings(seed=1, jitter=7))
    custom, _ = merge_settings({"preset": "custom", "learning_rate": 0.05}, carried)
    assert (custom.num_octaves, custom.gradient_smoothing, custom.learning_rate) == (2, 3.0, 0.05)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(core.InvalidParameterError, match="wobble"):
        merge_settings({}, {"wobble": 1})
    with pytest.raises(core.InvalidParameterError, match="tile_overlap"):
        settings_node(tile_size=64, tile_overlap=40)
    with pytest.raises(core.InvalidParameterError, match="carry"):
        merge_settings({}, {"carry": 1.5})
