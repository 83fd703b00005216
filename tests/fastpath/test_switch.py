"""The fast-path choice: made per dream (DreamSettings.fast_path), defaulting to DEEPDREAM_FAST_PATH; nothing
process-wide, so nothing to reset after a test."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, count_hooks, dream_image
from dream_core.fastpath import ENV_VAR, default_enabled, use_fast_path
from dream_core.features import FeatureHooks
from dream_core.clip import FrameDreamer, VideoSettings

FAST = DreamSettings(num_octaves=1, num_iterations=3, jitter=2)


@pytest.fixture
def plain_forwards(tiny_model):
    """Forwards of ``model.net`` itself (the execution copy has its own module objects)."""
    calls: list[int] = []
    handle = tiny_model.net.conv1.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_each_dream_chooses_its_network(tiny_model, plain_forwards):
    x = textured_image(32, 32)
    fast = dream_image(tiny_model, x, "conv2", FAST)
    assert plain_forwards == []  # the execution copy ran, not model.net
    off = dream_image(tiny_model, x, "conv2", FAST.with_(fast_path=False))
    assert len(plain_forwards) == FAST.num_iterations
    again = dream_image(tiny_model, x, "conv2", FAST)  # the choice did not outlive its dream
    assert len(plain_forwards) == FAST.num_iterations and torch.equal(again, fast)
    with FeatureHooks(tiny_model, ["conv2"], optimize=False) as plain:
        assert torch.equal(off, dream_image(tiny_model, x, "conv2", FAST, hooks=plain))


def test_a_clip_on_the_execution_copy_runs_model_net_when_its_settings_say_so(tiny_model, plain_forwards):
    # FrameDreamer enters its hooks once per clip, on the network its settings choose (fast_path=False: model.net
    # itself), so no dream builds hooks of its own per frame.
    with FrameDreamer(tiny_model, "conv2", FAST.with_(fast_path=False), VideoSettings(mode="independent")) as dreamer:
        on_net = sum(len(m._forward_hooks) for m in tiny_model.net.modules())
        assert on_net > 1  # the counting hook and the clip's own, on model.net itself
        off = dreamer.dream_next(textured_image(32, 32))
    assert len(plain_forwards) == FAST.num_iterations
    assert count_hooks(tiny_model) == 1  # only the counting hook: the dream removed both of its sets
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings(mode="independent")) as dreamer:
        on = dreamer.dream_next(textured_image(32, 32))
    assert len(plain_forwards) == FAST.num_iterations  # the default: the copy
    assert (on - off).abs().max() < 1e-4


@pytest.mark.parametrize("value, expected", [("0", False), ("off", False), ("No", False), ("false", False),
                                             ("1", True), ("", True), ("yes", True)])
def test_environment_variable_gives_the_default(monkeypatch, value, expected):
    monkeypatch.setenv(ENV_VAR, value)
    assert default_enabled() is expected
    assert use_fast_path(None) is expected
    assert use_fast_path(True) is True and use_fast_path(False) is False  # a choice made in the call wins


def test_environment_default_applies_to_dreams_that_do_not_choose(monkeypatch, tiny_model, plain_forwards):
    monkeypatch.setenv(ENV_VAR, "0")
    dream_image(tiny_model, textured_image(32, 32), "conv2", FAST)
    assert len(plain_forwards) == FAST.num_iterations
    dream_image(tiny_model, textured_image(32, 32), "conv2", FAST.with_(fast_path=True))
    assert len(plain_forwards) == FAST.num_iterations
    monkeypatch.delenv(ENV_VAR)
    assert default_enabled()


def test_settings_refuse_a_fast_path_that_is_not_a_choice():
    from dream_core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="fast_path must be True, False or None; got 'no'"):
        DreamSettings(fast_path="no").validate()  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="cuda_graphs must be True or False"):
        DreamSettings(cuda_graphs=1).validate()  # type: ignore[arg-type]
