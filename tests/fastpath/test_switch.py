"""The fast-path switch: one setting that makes the dream loop run model.net itself."""

import importlib

import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image, fastpath
from dream_core.fastpath import switch
from dream_core.features import FeatureHooks

FAST = DreamSettings(num_octaves=1, num_iterations=3, jitter=2)


def test_switched_off_the_dream_runs_the_plain_network(tiny_model):
    calls = []
    handle = tiny_model.net.conv1.register_forward_hook(lambda *a: calls.append(1))
    try:
        x = textured_image(32, 32)
        dream_image(tiny_model, x, "conv2", FAST)
        assert calls == []  # the execution copy ran, not model.net
        with fastpath.disabled():
            assert fastpath.execution_net(tiny_model) is tiny_model.net
            off = dream_image(tiny_model, x, "conv2", FAST)
        assert len(calls) == FAST.num_iterations
        assert fastpath.enabled()
        with FeatureHooks(tiny_model, ["conv2"], optimize=False) as plain:
            assert torch.equal(off, dream_image(tiny_model, x, "conv2", FAST, hooks=plain))
    finally:
        handle.remove()


def test_environment_variable_sets_the_start_value(monkeypatch):
    try:
        for value, expected in [("0", False), ("off", False), ("1", True), ("", True)]:
            monkeypatch.setenv(switch.ENV_VAR, value)
            importlib.reload(switch)
            assert fastpath.enabled() is expected, value
    finally:
        monkeypatch.delenv(switch.ENV_VAR)
        importlib.reload(switch)
    assert fastpath.enabled()
