"""The dream loop on real computations: objective rises, determinism, hooks, inference mode, errors."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, count_hooks, dream_image, objective_value
from dream_core.dream import TemporalAnchor
from dream_core.errors import DreamCancelled, InvalidImageError, InvalidParameterError
from dream_core.image_ops import luminance

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, learning_rate=0.02, jitter=4)


def test_objective_rises(tiny_model):
    x = textured_image(48, 48)
    out = dream_image(tiny_model, x, "conv3", FAST)
    before, after = objective_value(tiny_model, x, "conv3"), objective_value(tiny_model, out, "conv3")
    assert after.item() > before.item() * 1.05
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)


def test_input_is_not_modified(tiny_model):
    x = textured_image(32, 32)
    copy = x.clone()
    dream_image(tiny_model, x, "conv2", FAST)
    assert torch.equal(x, copy)


def test_same_seed_same_result_other_seed_differs(tiny_model):
    x = textured_image(40, 40)
    a = dream_image(tiny_model, x, "conv2", FAST)
    b = dream_image(tiny_model, x, "conv2", FAST)
    c = dream_image(tiny_model, x, "conv2", FAST.with_(seed=1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_hooks_removed_after_run_and_after_exception(tiny_model):
    x = textured_image(32, 32)
    dream_image(tiny_model, x, "conv1, conv3", FAST)
    assert count_hooks(tiny_model) == 0

    def boom(step, total, current):
        if step == 2:
            raise DreamCancelled("stop")

    with pytest.raises(DreamCancelled):
        dream_image(tiny_model, x, "conv1, conv3", FAST, on_step=boom)
    assert count_hooks(tiny_model) == 0


def test_progress_callback_counts_every_step(tiny_model):
    seen = []
    dream_image(tiny_model, textured_image(32, 32), "conv2", FAST, on_step=lambda s, t, cur: seen.append((s, t)))
    total = FAST.num_octaves * FAST.num_iterations
    assert seen == [(i, total) for i in range(1, total + 1)]


class _CountingStage(torch.nn.Module):
    """A pass-through that counts its forwards in a class attribute, so the count survives the
    execution copy (a structural copy of the network makes new module objects)."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return x


@pytest.mark.parametrize("fast_path", [True, False])
def test_truncation_skips_layers_after_the_deepest(tiny_model, fast_path):
    tiny_model.net.conv3.append(_CountingStage())  # runs only if the forward goes past conv2
    settings = FAST.with_(fast_path=fast_path)
    dream_image(tiny_model, textured_image(32, 32), "conv2", settings)  # builds the execution copy (probe runs)
    _CountingStage.calls = 0
    dream_image(tiny_model, textured_image(32, 32), "conv2", settings)
    assert _CountingStage.calls == 0
    dream_image(tiny_model, textured_image(32, 32), "conv3", settings)  # the stage itself is reached
    assert _CountingStage.calls == FAST.num_octaves * FAST.num_iterations


def test_works_inside_inference_mode(tiny_model):
    x = textured_image(32, 32)
    expected = dream_image(tiny_model, x, "conv2", FAST)
    with torch.inference_mode():
        inf_x = x.clone()  # an inference tensor, as ComfyUI hands over
        out = dream_image(tiny_model, inf_x, "conv2", FAST)
    assert torch.equal(out, expected)


def test_dtype_and_device_follow_input(tiny_model):
    x = textured_image(32, 32).double()
    out = dream_image(tiny_model, x, "conv2", FAST)
    assert out.dtype == torch.float64 and out.device == x.device


def test_gray_and_rgba_inputs_are_converted(tiny_model):
    gray = textured_image(32, 32)[:, :1]
    assert dream_image(tiny_model, gray, "conv2", FAST).shape == (1, 3, 32, 32)
    rgba = torch.cat([textured_image(32, 32), torch.ones(1, 1, 32, 32)], dim=1)
    assert dream_image(tiny_model, rgba, "conv2", FAST).shape == (1, 3, 32, 32)


def test_batch_items_are_dreamed_independently_of_batching(tiny_model):
    a, b = textured_image(32, 32, seed=1), textured_image(32, 32, seed=2)
    together = dream_image(tiny_model, torch.cat([a, b]), "conv2", FAST.with_(jitter=0))
    alone = dream_image(tiny_model, b, "conv2", FAST.with_(jitter=0))
    assert torch.allclose(together[1:], alone, atol=1e-5)


def test_luminance_only_keeps_colours(tiny_model):
    x = textured_image(40, 40)
    out = dream_image(tiny_model, x, "conv2", FAST.with_(luminance_only=True))
    chroma_in = x - luminance(x)
    chroma_out = out - luminance(out)
    inside = ((out > 0.01) & (out < 0.99)).all(dim=1, keepdim=True).expand_as(out)
    assert torch.allclose(chroma_in[inside], chroma_out[inside], atol=1e-4)
    assert (luminance(out) - luminance(x)).abs().mean() > 1e-3


def test_guide_pulls_features_towards_guide(tiny_model):
    x = textured_image(40, 40, seed=3)
    guide = textured_image(40, 40, seed=4).flip(1)
    from dream_core.dream import guide_objective
    from dream_core.objectives import parse_objective

    obj = guide_objective(tiny_model, parse_objective("conv2"), guide)
    out = dream_image(tiny_model, x, "conv2", FAST, guide=guide)
    assert objective_value(tiny_model, out, obj) > objective_value(tiny_model, x, obj)


def test_tiled_gradient_matches_whole_image(tiny_model):
    x = textured_image(160, 160)
    s = DreamSettings(num_octaves=1, num_iterations=2, jitter=0, gradient_smoothing=0, tile_size=64, tile_overlap=24)
    whole = dream_image(tiny_model, x, "conv2", s.with_(tile_size=1024))
    tiled = dream_image(tiny_model, x, "conv2", s)
    assert (whole - tiled).abs().max() < 1e-2
    assert (whole - tiled).abs().mean() < 0.05 * (whole - x).abs().mean()


@pytest.mark.parametrize("tile_size", [64, 1024])
def test_jittered_gradient_is_the_rolled_images_gradient_rolled_back(tiny_model, tile_size):
    # Tiles are read from the image with the roll's wrap-around (no rolled copy of a large image):
    # exactly what rolling the image, taking its gradient and rolling back gives.
    from dream_core.dream import _objective_gradient
    from dream_core.features import FeatureHooks, grad_enabled_outside_inference
    from dream_core.objectives import resolve_objective

    x, shift = textured_image(150, 170), (13, -29)
    s = DreamSettings(tile_size=tile_size, tile_overlap=24)
    objective = resolve_objective(tiny_model, "conv2")
    with grad_enabled_outside_inference(), FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        got, value = _objective_gradient(hooks, objective, x, s, None, shift)
        rolled, rolled_value = _objective_gradient(hooks, objective, torch.roll(x, shift, dims=(2, 3)), s, None)
    assert torch.equal(got, torch.roll(rolled, (-shift[0], -shift[1]), dims=(2, 3)))
    assert torch.equal(value, rolled_value)


def test_tiny_guide_names_the_guide(tiny_model):
    with pytest.raises(InvalidImageError, match="guide image is unusable.*1x1") as info:
        dream_image(tiny_model, textured_image(32, 32), "conv2", FAST, guide=torch.rand(1, 3, 1, 1))
    assert info.value.parameter == "guide"
    with pytest.raises(InvalidImageError, match="guide image is 4x4; model 'tiny' needs at least 8"):
        dream_image(tiny_model, textured_image(32, 32), "conv2", FAST, guide=torch.rand(1, 3, 4, 4))
    with pytest.raises(InvalidImageError, match="guide image is unusable.*NaN"):
        dream_image(tiny_model, textured_image(32, 32), "conv2", FAST, guide=torch.full((1, 3, 16, 16), float("nan")))


def test_temporal_anchor_pulls_reliable_pixels(tiny_model):
    x = textured_image(32, 32)
    target = torch.zeros_like(x)
    weight = torch.zeros(1, 1, 32, 32)
    weight[..., :16] = 1
    out = dream_image(tiny_model, x, "conv2", FAST, anchor=TemporalAnchor(target, weight, strength=0.5))
    free = dream_image(tiny_model, x, "conv2", FAST)
    assert out[..., :12].mean() < 0.05  # pulled to black where reliable
    assert out[..., 20:].mean() > 0.2  # dreamed freely where unreliable
    left = (out[..., :12] - free[..., :12]).abs().mean()
    right = (out[..., 20:] - free[..., 20:]).abs().mean()
    assert right < 0.5 * left


@pytest.mark.parametrize(
    "image, match",
    [
        (torch.zeros(0, 3, 32, 32), "empty or too small"),
        (torch.zeros(1, 3, 1, 1), "too small"),
        (torch.zeros(1, 2, 32, 32), "channels"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.zeros(3, 32, 32), r"\[B,C,H,W\]"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float"),
    ],
)
def test_bad_images(tiny_model, image, match):
    with pytest.raises(InvalidImageError, match=match):
        dream_image(tiny_model, image, "conv2", FAST)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"num_iterations": 0}, "num_iterations"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"num_octaves": 0}, "num_octaves"),
        ({"octave_scale": 1.0}, "octave_scale"),
        ({"autocast": "fp8"}, "autocast"),
        ({"num_octaves": 12}, r"at most \d+ octaves"),
    ],
)
def test_bad_settings(tiny_model, change, match):
    with pytest.raises(InvalidParameterError, match=match):
        dream_image(tiny_model, textured_image(32, 32), "conv2", FAST.with_(**change))


def test_huge_image_is_refused_before_allocating(tiny_model):
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 10000, 10000)  # a view: no memory
    with pytest.raises(InvalidImageError, match="MP"):
        dream_image(tiny_model, huge, "conv2", FAST)


def test_out_of_memory_halves_the_tile_size_and_keeps_it(tiny_model, monkeypatch, caplog):
    import dream_core.dream as dream_mod

    real = dream_mod._objective_gradient
    seen = []

    def fake(hooks, objective, image, settings, amp_dtype, *shift):
        seen.append(settings.tile_size)
        if settings.tile_size > 200:
            raise torch.OutOfMemoryError("simulated")
        return real(hooks, objective, image, settings, amp_dtype, *shift)

    monkeypatch.setattr(dream_mod, "_objective_gradient", fake)
    x = textured_image(200, 300)
    settings = FAST.with_(num_octaves=1, tile_size=1024, tile_overlap=64)
    out = dream_image(tiny_model, x, "conv2", settings)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # 1024 fails; half the longer side (150) works and is kept for the remaining steps.
    assert seen == [1024] + [150] * settings.num_iterations
    assert "Out of memory at tile_size 1024" in caplog.text


def test_out_of_memory_below_the_smallest_tile_is_raised(tiny_model, monkeypatch):
    import dream_core.dream as dream_mod

    def always(*_args, **_kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(dream_mod, "_objective_gradient", always)
    with pytest.raises(torch.OutOfMemoryError):
        dream_image(tiny_model, textured_image(200, 300), "conv2", FAST.with_(num_octaves=1))


def test_large_images_on_the_cpu_use_small_tiles(tiny_model, monkeypatch):
    # Memory: a 1024 px tile's activations take ~1.9 GB on the CPU, on top of the full-size input that every
    # octave keeps; a 24 MP photo peaked at 3.2 GB with them (6.45 GB for 12 MP before the other fixes).
    # Images over CPU_LARGE_IMAGE_PIXELS use CPU_LARGE_TILE px tiles at every octave; smaller ones their own.
    import dream_core.dream as dream_mod

    assert dream_mod.memory_tiles(DreamSettings(), (4000, 6000), torch.device("cpu")).tile_size == 512
    assert dream_mod.memory_tiles(DreamSettings(), (4000, 6000), torch.device("cuda")).tile_size == 1024
    assert dream_mod.memory_tiles(DreamSettings(), (2000, 3000), torch.device("cpu")).tile_size == 1024
    assert dream_mod.memory_tiles(DreamSettings(tile_overlap=300), (4000, 6000), torch.device("cpu")).tile_size == 632
    monkeypatch.setattr(dream_mod, "CPU_LARGE_IMAGE_PIXELS", 120 * 160)
    monkeypatch.setattr(dream_mod, "CPU_LARGE_TILE", 64)
    real, seen = dream_mod._objective_gradient, []

    def spy(hooks, objective, image, settings, *rest):
        seen.append(settings.tile_size)
        return real(hooks, objective, image, settings, *rest)

    monkeypatch.setattr(dream_mod, "_objective_gradient", spy)
    two_octaves = DreamSettings(num_octaves=2, num_iterations=1, tile_overlap=16)
    dream_image(tiny_model, textured_image(150, 200), "conv2", two_octaves)  # 30000 px: over the limit
    dream_image(tiny_model, textured_image(100, 120), "conv2", two_octaves)  # 12000 px: its own tiles
    assert seen == [64, 64, 1024, 1024]
