"""Presets resolve to their documented settings, and explicit settings override them."""

import pytest

from dream_core import DreamSettings
from dream_core.errors import InvalidParameterError
from dream_core.presets import DEFAULT_PRESET, LOOK_FIELDS, PRESETS, get_preset, preset_look, preset_settings


def test_classic_is_the_defaults():
    assert DEFAULT_PRESET == "classic"
    assert preset_settings("classic") == DreamSettings()


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_sets_exactly_its_documented_values(name):
    preset = get_preset(name)
    settings = preset_settings(name)
    default = DreamSettings()
    assert set(preset.values) <= set(LOOK_FIELDS)
    for field, value in preset.values.items():
        assert getattr(settings, field) == value
    for field in LOOK_FIELDS:
        if field not in preset.values:
            assert getattr(settings, field) == getattr(default, field)
    assert preset_look(name) == {f: getattr(settings, f) for f in LOOK_FIELDS}
    assert preset.description


def test_a_preset_decides_the_look_and_keeps_the_rest_of_the_base():
    base = DreamSettings(seed=5, jitter=8, learning_rate=0.5, num_octaves=2, tile_size=512)
    s = preset_settings("gentle", base)
    assert (s.seed, s.jitter, s.tile_size) == (5, 8, 512)
    assert s.learning_rate == PRESETS["gentle"].values["learning_rate"]
    assert s.num_octaves == DreamSettings().num_octaves


def test_legacy_is_the_earlier_step():
    s = preset_settings("legacy")
    assert (s.step_rule, s.colour_decorrelation, s.learning_rate) == ("plain", 0.0, 0.02)


def test_explicit_settings_override_the_preset():
    s = preset_settings("intense", learning_rate=0.005, seed=7)
    assert s.learning_rate == 0.005 and s.seed == 7
    assert s.num_octaves == PRESETS["intense"].values["num_octaves"]


def test_unknown_preset_and_unknown_setting_are_refused():
    with pytest.raises(InvalidParameterError, match="Did you mean: 'intense'"):
        preset_settings("intens")
    with pytest.raises(InvalidParameterError, match="learnig_rate"):
        preset_settings("classic", learnig_rate=0.1)
    with pytest.raises(InvalidParameterError, match=r"learning_rate must be in 0.0001..1; got -1"):
        preset_settings("gentle", learning_rate=-1.0)
