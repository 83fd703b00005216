"""Presets resolve to their documented settings, and explicit settings override them."""

import pytest

from dream_core import DreamSettings
from dream_core.errors import InvalidParameterError
from dream_core.presets import DEFAULT_PRESET, PRESETS, get_preset, preset_settings, preset_values


def test_classic_is_the_defaults():
    assert DEFAULT_PRESET == "classic"
    assert preset_settings("classic") == DreamSettings()


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_sets_exactly_its_documented_values(name):
    preset = get_preset(name)
    settings = preset_settings(name)
    default = DreamSettings()
    for field, value in preset.values.items():
        assert getattr(settings, field) == value
    for field in preset_values(name):
        if field not in preset.values:
            assert getattr(settings, field) == getattr(default, field)
    assert preset.description


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
    with pytest.raises(InvalidParameterError, match="learning_rate must be > 0"):
        preset_settings("gentle", learning_rate=-1.0)
