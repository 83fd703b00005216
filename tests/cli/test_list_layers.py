"""``--list-layers MODEL --image IN``: each layer's strongest channels on a picture, with their mean activations."""

import importlib
import re

import pytest
import torch

from conftest import multiscale_texture
from dream_core import FeatureHooks
from dream_core.cli import main
from dream_core.image_io import load_image, save_image


def test_the_listing_shows_each_layers_strongest_channels_on_the_picture(lite0, tmp_path, capsys, monkeypatch):
    # the session's model (loading one more copy is what the other CLI tests cover)
    monkeypatch.setattr(importlib.import_module("dream_core.cli.main"), "load_model", lambda name, device: lite0)
    path = tmp_path / "in.png"
    save_image(multiscale_texture(96, 128, seed=4), path)
    assert main(["--list-layers", "efficientnet_lite0", "--image", str(path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "strongest channels on in.png" in out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["block10_dw"])
    shown = [(int(c), float(m)) for c, m in re.findall(r"(\d+):(-?\d+\.\d+)", line)]
    with torch.no_grad(), FeatureHooks(lite0, ["block10_dw"]) as hooks:
        means = hooks.run(load_image(path))["block10_dw"][0].mean(dim=(1, 2))
    top = torch.sort(means, descending=True, stable=True).indices[:3].tolist()
    assert [c for c, _ in shown] == top
    assert [m for _, m in shown] == [round(float(means[c]), 2) for c in top]
    assert len([line for line in out.splitlines() if re.search(r"channels .*\d+:-?\d", line)]) == len(lite0.layer_names)


def test_image_needs_list_layers_and_top_is_checked(tmp_path, capsys, caplog):
    path = tmp_path / "in.png"
    save_image(multiscale_texture(64, 64), path)
    assert main(["--list-layers", "efficientnet_lite0", "--image", str(path), "--top", "0"]) == 2
    assert "--top must be at least 1" in caplog.text
    with pytest.raises(SystemExit) as info:
        main(["--image", str(path)])
    assert info.value.code == 2
    assert "--image goes with --list-layers MODEL" in capsys.readouterr().err
