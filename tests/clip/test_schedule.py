"""Keyframed schedules (dream_core.clip.schedule): values between keys, seconds, modes, errors with positions."""

import pytest

from dream_core.clip.schedule import is_keyed, parse_schedule
from dream_core.errors import ScheduleSyntaxError


def test_linear_between_keys_constant_outside():
    s = parse_schedule("0:(0.01), 48:(0.04), 96:(0.02)")
    assert [round(s.at(f), 6) for f in (0, 24, 48, 72, 96, 500)] == [0.01, 0.025, 0.04, 0.03, 0.02, 0.02]
    late = parse_schedule("10:(2), 20:(4)")
    assert late.at(0) == 2.0 and late.at(15) == 3.0


def test_smooth_eases_without_overshoot_and_hold_steps():
    smooth = parse_schedule("0:(0), 10:(1)", interpolation="smooth")
    values = [smooth.at(f) for f in range(11)]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0
    assert smooth.at(5) == pytest.approx(0.5) and smooth.at(1) < 0.05  # eases out of the key
    hold = parse_schedule("hold: 0:(1), 10:(2)")  # the string names its own mode
    assert hold.interpolation == "hold" and [hold.at(f) for f in (0, 9, 10, 11)] == [1.0, 1.0, 2.0, 2.0]


def test_seconds_keys_follow_the_frame_rate():
    s = parse_schedule("0s:(0.01), 2.5s:(0.04)")
    assert s.at(30, fps=12) == pytest.approx(0.04) and s.at(30, fps=24) == pytest.approx(0.025)
    with pytest.raises(ScheduleSyntaxError, match="frame rate"):
        s.at(3)


def test_plain_values_pairs_and_objectives():
    assert parse_schedule("0.02").at(100) == 0.02 and parse_schedule(3).at(1) == 3.0
    assert parse_schedule("0:(0,2), 30:(4,0)", kind="pair").at(15) == (2.0, 1.0)
    assert parse_schedule("1.5", kind="pair").at(0) == (1.5, 1.5)
    blend = parse_schedule("0:(block8_dw), 60:(block12_dw:[3,7])", kind="text")
    assert blend.at(0) == [("block8_dw", 1.0)] and blend.at(90) == [("block12_dw:[3,7]", 1.0)]
    (a, wa), (b, wb) = blend.at(15)
    assert (a, b) == ("block8_dw", "block12_dw:[3,7]") and (wa, wb) == pytest.approx((0.75, 0.25))
    assert parse_schedule("hold: 0:(block8_dw), 60:(block12_dw)", kind="text").at(59) == [("block8_dw", 1.0)]
    assert is_keyed("0:(1)") and is_keyed(" smooth: 2.5s:(1)") and not is_keyed("block8_dw:12")


@pytest.mark.parametrize("text, position, expected", [
    ("0:(0.01) 48:(0.04)", 10, "','"),
    ("0:(0.01), x:(1)", 10, "a key"),
    ("0:(abc)", 4, "a number"),
    ("0:(1), 0:(2)", 8, "each key once"),
    ("0:(1", 3, "')'"),
    ("0:(inf)", 4, "finite"),
    ("", None, "empty"),
])
def test_errors_name_the_position_and_the_form(text, position, expected):
    with pytest.raises(ScheduleSyntaxError) as info:
        parse_schedule(text, name="learning_rate")
    message = str(info.value)
    assert expected in message and "learning_rate" in message and info.value.parameter == "learning_rate"
    if position is not None:
        assert f"at character {position}" in message and "0:(0.01), 48:(0.04)" in message
