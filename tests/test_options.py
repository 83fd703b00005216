"""dream_core.options: every setting declared once; the validation, the flags, the schedulable set and the presets'
fields all read that declaration (the node widgets are compared with it in tests/test_settings_node.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dream_core import DreamSettings, VideoSettings
from dream_core.cli import build_parser
from dream_core.cli.args import REMEDIES, settings_from_args
from dream_core.cli.video_run import video_settings_from_args
from dream_core.clip import SCHEDULABLE
from dream_core.errors import InvalidParameterError, with_remedy
from dream_core.options import options
from dream_core.presets import LOOK_FIELDS

DREAM = options(DreamSettings)
VIDEO = options(VideoSettings)
ALL = {**DREAM, **VIDEO}
NUMBERS = [o for o in ALL.values() if o.kind in (int, float)]
#: Fields whose valid value depends on another field: the value to give that one alongside.
PARTNERS = {"tile_overlap": {"tile_size": DREAM["tile_size"].maximum}, "tile_size": {"tile_overlap": 0}}


def build(option, value):
    """The settings object of ``option`` with ``value`` (and its partners at values that allow it)."""
    cls = DreamSettings if option.name in DREAM else VideoSettings
    return cls(**{option.name: value, **PARTNERS.get(option.name, {})})


def test_every_field_is_declared_with_help_and_a_flag():
    assert list(DREAM) == [f.name for f in dataclasses.fields(DreamSettings)]
    assert list(VIDEO) == [f.name for f in dataclasses.fields(VideoSettings)]
    for option in ALL.values():
        assert option.help.strip() and option.flag.startswith("--"), option.name
        assert option.default == getattr(DreamSettings() if option.name in DREAM else VideoSettings(), option.name)
        if option.kind in (int, float):
            assert option.minimum is not None and option.maximum is not None and option.step, option.name
            assert option.minimum <= option.default <= option.maximum, option.name
        elif option.kind is str:
            assert option.default in option.choices, option.name
    assert len({o.flag for o in ALL.values()}) == len(ALL), "two settings share a flag"


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_validation_takes_the_declared_range_and_refuses_just_beyond_it(option):
    for value in (option.minimum, option.maximum, option.front_default):
        build(option, option.kind(value)).validate()
    beyond = 1 if option.kind is int else max(option.step, 1e-9) / 10
    for value in (option.minimum - beyond, option.maximum + beyond, math.nan, "1"):
        with pytest.raises(InvalidParameterError) as info:
            build(option, value).validate()
        assert info.value.parameter == option.name and str(info.value).startswith(option.name)
    if option.kind is int:
        with pytest.raises(InvalidParameterError, match="integer"):
            build(option, option.minimum + 0.5).validate()


@pytest.mark.parametrize("option", [o for o in ALL.values() if o.kind in (str, bool)], ids=lambda o: o.name)
def test_choices_and_switches_refuse_other_values(option):
    for good in option.choices or (True, False):
        build(option, good).validate()
    with pytest.raises(InvalidParameterError) as info:
        build(option, "wobble" if option.kind is str else 1).validate()
    assert info.value.parameter == option.name


def test_schedulable_and_look_sets_are_the_declared_ones():
    settings = [name for name, kind in SCHEDULABLE.items() if kind[0] in ("dream", "video")]
    assert settings == [o.name for o in ALL.values() if o.schedulable]
    assert set(SCHEDULABLE) - set(settings) == {"zoom", "rotate", "translate", "objective"}
    assert LOOK_FIELDS == tuple(o.name for o in DREAM.values() if o.look)
    assert "learning_rate" in LOOK_FIELDS and "seed" not in LOOK_FIELDS


# --------------------------------------------------------------------------- the command line's flags


def parse(command: str, *flags: str):
    files = ["in.png", "out.png"] if command == "image" else ["in.mp4", "out.mp4"]
    return build_parser().parse_args([command, *files, *flags])


def from_args(option, args):
    return (settings_from_args if option.name in DREAM else video_settings_from_args)(args)


def command_of(option) -> str:
    return "image" if option.name in DREAM else "video"


def subparser(command: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[command]


@pytest.mark.parametrize("option", list(ALL.values()), ids=lambda o: o.name)
def test_each_flag_has_the_declared_default_range_and_help(option):
    command = command_of(option)
    action = next(a for a in subparser(command)._actions if option.flag in a.option_strings)
    assert action.dest == option.name
    assert option.help.rstrip(".") in action.help
    if option.kind in (int, float):
        assert f"({option.range_text}" in action.help
    if option.choices:
        assert list(action.choices) == list(option.choices)
    # With no flag given the command runs the front ends' default (a look field: the classic preset's, the same).
    assert getattr(from_args(option, parse(command)), option.name) == option.front_default


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_each_flag_takes_the_declared_range_and_names_itself_beyond_it(option):
    command = command_of(option)
    partners = [f for name, value in PARTNERS.get(option.name, {}).items() for f in (ALL[name].flag, str(value))]
    for value in (option.minimum, option.maximum):
        settings = from_args(option, parse(command, option.flag, str(option.kind(value)), *partners))
        assert getattr(settings, option.name) == value
    beyond = option.maximum + (1 if option.kind is int else option.step)
    with pytest.raises(InvalidParameterError) as info:
        from_args(option, parse(command, option.flag, str(beyond), *partners))
    assert info.value.parameter == option.name
    assert option.flag in str(with_remedy(info.value, REMEDIES)).split(". ", 1)[-1]  # the remedy names the flag
