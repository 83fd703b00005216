"""The offline default model with its real packaged ImageNet weights."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_file, textured_image
from dream_core import DreamSettings, dream_image, objective_value
from dream_core.image_ops import resize

SUSPENSION_BRIDGE = 839


def test_classifies_golden_gate_as_suspension_bridge(lite0):
    img = Image.open(shared_file("golden_gate.jpg")).convert("RGB")
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    x = resize(x, (224, 224))
    with torch.no_grad():
        top3 = lite0(x).softmax(1).topk(3).indices[0].tolist()
    assert SUSPENSION_BRIDGE in top3


def test_every_default_layer_probe_has_channels(lite0):
    counts = lite0.layer_channels()
    assert counts["block10_dw"] == 672 and counts["head"] == 1280
    assert list(counts) == lite0.layer_names


@pytest.mark.parametrize("objective", ["block10_dw", "block5:3, 0.5*block12_dw:[1-4]"])
def test_real_dream_raises_objective(lite0, objective):
    x = textured_image(96, 96)
    settings = DreamSettings(num_octaves=2, num_iterations=4)
    out = dream_image(lite0, x, objective, settings)
    assert objective_value(lite0, out, objective) > 1.2 * objective_value(lite0, x, objective)
