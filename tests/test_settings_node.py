"""The DeepDream Settings node and the one rule that merges its output with a dream node's widgets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pack_loader import load_pack
from test_nodes import tiny  # noqa: F401 (a fixture)

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


# --------------------------------------------------------------------------- every widget from the core's declaration


DECLARED = {**core.options.options(core.DreamSettings), **core.options.options(core.VideoSettings)}
#: Node parameters that share a setting's meaning and range with their own default: (node, widget) -> default.
OWN_DEFAULTS = {(node_id, "later_iterations"): core.animation.feedback.DEFAULT_LATER_ITERATIONS
                for node_id in ("DDVAnimate", "DDVAnimateV2")}


def setting_widgets(node_id: str) -> dict:
    spec = M[node_id].INPUT_TYPES()
    return {name: entry for section in ("required", "optional") for name, entry in spec.get(section, {}).items()
            if name in DECLARED}


@pytest.mark.parametrize("node_id", sorted(M))
def test_every_setting_widget_has_the_cores_type_range_and_default(node_id):
    for name, (kind, opts) in setting_widgets(node_id).items():
        option, where = DECLARED[name], f"{node_id}.{name}"
        if option.kind is bool:
            assert kind == "BOOLEAN", where
        elif option.choices:
            assert kind == list(option.choices), where
        else:
            assert kind == ("INT" if option.kind is int else "FLOAT"), where
            assert (opts["min"], opts["max"], opts["step"]) == (option.minimum, option.maximum, option.step), where
        assert opts["default"] == OWN_DEFAULTS.get((node_id, name), option.front_default), where
        if (node_id, name) not in OWN_DEFAULTS:
            assert opts["tooltip"] == option.help, where


def widget_names(node_id: str) -> list:
    return [name for section in ("required", "optional") for name, (kind, *_) in M[node_id].INPUT_TYPES()
            .get(section, {}).items() if isinstance(kind, list) or kind in ("INT", "FLOAT", "BOOLEAN", "STRING")]


def test_the_slim_nodes_show_the_everyday_widgets_and_the_settings_node_the_rest():
    assert widget_names("DDVDreamImageV2") == ["preset", "learning_rate", "seed"]
    assert widget_names("DDVVideoDreamV2") == ["mode", "preset", "learning_rate", "seed", "start_frame", "frame_count",
                                               "cadence", "fps"]
    assert widget_names("DDVAnimateV2") == ["frames", "zoom", "rotate", "translate_x", "translate_y",
                                            "later_iterations", "preset", "learning_rate", "seed", "fps"]
    for node_id in ("DDVDreamImageV2", "DDVVideoDreamV2", "DDVAnimateV2"):
        assert M[node_id].INPUT_TYPES()["optional"]["settings"][0] == "DEEPDREAM_SETTINGS"
        assert not getattr(M[node_id], "DEPRECATED", False)
    every = set(DECLARED)
    assert set(widget_names("DDVVideoDreamV2")) | set(widget_names("DDVSettings")) >= every
    assert set(widget_names("DDVDreamImageV2")) | set(widget_names("DDVSettings")) >= every - {"mode"}


def test_a_connected_settings_node_changes_the_dream_as_the_legacy_widgets_do(tiny):
    from test_nodes import FAST, defaults, flow_of, image_batch, panning_clip

    change = {**FAST, "num_octaves": 3, "gradient_smoothing": 2.0}
    carried = settings_node(**change, carry=0.6)
    images, clip = image_batch(), panning_clip(3)
    flow = flow_of(clip)[0]
    legacy = {**defaults(M["DDVDreamImage"]), **change}
    with torch.inference_mode():
        slim = M["DDVDreamImageV2"]().dream(images, tiny, **widget_defaults("DDVDreamImageV2"), settings=carried)[0]
        old = M["DDVDreamImage"]().dream(images, tiny, **legacy)[0]
        plain = M["DDVDreamImageV2"]().dream(images, tiny, **widget_defaults("DDVDreamImageV2"),
                                             settings=settings_node(**FAST))[0]
        video_slim = M["DDVVideoDreamV2"]().dream(images=clip, model=tiny, flow=flow, settings=carried,
                                                  **widget_defaults("DDVVideoDreamV2"))[0]
        video_old = M["DDVVideoDream"]().dream(images=clip, model=tiny, flow=flow, **{
            **defaults(M["DDVVideoDream"]), **legacy, "carry": 0.6})[0]
        video_default = M["DDVVideoDreamV2"]().dream(images=clip, model=tiny, flow=flow,
                                                     settings={**carried, "carry": 0.95},
                                                     **widget_defaults("DDVVideoDreamV2"))[0]
    assert torch.equal(slim, old) and not torch.equal(slim, plain)
    assert torch.equal(video_slim, video_old) and not torch.equal(video_slim[2], video_default[2])
