"""Warming a model up (dream_core.warmup): one step at every octave shape the dream will use."""

import logging

import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image, warm_up, warm_up_in_background
from dream_core.fastpath import execution_net

S = DreamSettings(num_octaves=3, octave_scale=1.5, num_iterations=4)


def _input_shapes(model, run) -> list[tuple[int, ...]]:
    """Shapes of every forward of the model's execution copy while ``run()`` runs."""
    shapes: list[tuple[int, ...]] = []
    handle = execution_net(model).register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    try:
        run()
    finally:
        handle.remove()
    return shapes


def test_warm_up_runs_one_step_at_each_shape_the_dream_uses(tiny_model):
    size = (45, 61)
    warmed = _input_shapes(tiny_model, lambda: warm_up(tiny_model, size, S, "conv2"))
    dreamed = _input_shapes(tiny_model, lambda: dream_image(tiny_model, textured_image(*size), "conv2", S))
    assert len(warmed) == S.num_octaves  # one step per octave
    assert sorted(set(warmed)) == sorted(set(dreamed)) and len(set(dreamed)) == S.num_octaves


def test_background_warm_up_finishes_and_lets_the_dream_run(tiny_model):
    thread = warm_up_in_background(tiny_model, (40, 48), S, "conv2")
    thread.join(timeout=120)
    assert not thread.is_alive()
    out = dream_image(tiny_model, textured_image(40, 48), "conv2", S)  # the model's lock was released
    assert torch.isfinite(out).all()


def test_background_warm_up_logs_its_error_instead_of_raising(tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger="dream_core.warmup"):
        thread = warm_up_in_background(tiny_model, (40, 48), S, "no_such_layer")
        thread.join(timeout=120)
    assert "Warming up tiny failed" in caplog.text and "no_such_layer" in caplog.text
