"""The command line's entry (dream_core.cli.main): listings, help with every default, errors with flag remedies."""

import re

import pytest

from dream_core.cli import build_parser, main


def test_list_models(capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "offline" in out and "bvlc_googlenet" in out


def test_list_layers_shows_channel_counts(capsys):
    assert main(["--list-layers", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "block10_dw" in out and "672 channels" in out


def test_unknown_model_names_the_listing_flag(caplog):
    assert main(["--list-layers", "alexnet"]) == 2
    assert "Unknown model 'alexnet'" in caplog.text and "--list-models" in caplog.text


@pytest.mark.parametrize("command", [None, "image", "video", "demo"])
def test_help_shows_every_flags_default(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per flag
    parser = build_parser()
    if command is not None:
        parser = next(a for a in parser._actions if a.dest == "command").choices[command]
    lines = parser.format_help().splitlines()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert flags
    for action in flags:
        first = next(i for i, line in enumerate(lines) if re.match(rf"\s+{re.escape(action.option_strings[0])}\b", line))
        block = [lines[first]]
        for line in lines[first + 1:]:  # the help may wrap onto following lines, up to the next flag
            if not line.startswith("    ") or line.lstrip().startswith("-"):
                break
            block.append(line)
        assert "(default: " in " ".join(block), block


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: deepdream-video" in capsys.readouterr().out


def _dream_settings(*flags: str):
    from dream_core.cli.args import settings_from_args

    return settings_from_args(build_parser().parse_args(["image", "in.png", "out.png", *flags]))


def test_preset_sets_the_look_and_flags_override_it():
    from dream_core import DreamSettings
    from dream_core.presets import preset_settings

    assert _dream_settings() == DreamSettings()
    assert _dream_settings("--preset", "intense") == preset_settings("intense")
    s = _dream_settings("--preset", "intense", "--lr", "0.005", "--octaves", "3", "--seed", "4")
    assert (s.learning_rate, s.num_octaves, s.seed) == (0.005, 3, 4)
    assert s.num_iterations == preset_settings("intense").num_iterations
    legacy = _dream_settings("--preset", "legacy", "--step-rule", "lapnorm", "--colour-decorrelation", "0.7")
    assert (legacy.step_rule, legacy.colour_decorrelation, legacy.learning_rate) == ("lapnorm", 0.7, 0.02)


def test_an_x264_preset_given_to_preset_points_to_the_new_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "in.mp4", "out.mp4", "--preset", "slow"])
    assert "--x264-preset" in capsys.readouterr().err
