"""Every registered architecture dreams: the objective rises after a few steps (random weights)."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image, get_spec, list_models, objective_value
from dream_core.models.spec import DreamModel


@pytest.mark.parametrize("name", list_models())
def test_objective_rises_for_every_architecture(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    with torch.no_grad():
        model = DreamModel(spec, spec.build(), "random init")
    side = max(96, spec.min_size)
    x = textured_image(side, side)
    settings = DreamSettings(num_octaves=1, num_iterations=3, jitter=0, gradient_smoothing=0, learning_rate=0.01)
    objective = spec.default_objective
    out = dream_image(model, x, objective, settings)
    assert objective_value(model, out, objective) > objective_value(model, x, objective)
