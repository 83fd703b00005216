"""The gradient step rules (dream_core.step) on real computations: colour static, frequency balance, objective."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image, objective_value
from dream_core.errors import InvalidParameterError
from dream_core.image_ops import gaussian_blur
from dream_core.presets import preset_settings
from dream_core.step import colour_preconditioner, laplacian_normalize, step_direction

# BT.601 chroma rows (Cb, Cr).
_CHROMA = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def fine_chroma(image: torch.Tensor) -> float:
    """mean |C - blur(C, 1.5)| over Cb, Cr: the per-pixel colour static of an image [1,3,H,W]."""
    c = torch.einsum("ij,bjhw->bihw", _CHROMA.to(image), image)
    return float((c - gaussian_blur(c, 1.5)).abs().mean())


def test_flat_colour_gains_far_less_colour_static_with_the_new_step(lite0):
    flat = torch.tensor([0.55, 0.45, 0.35]).view(1, 3, 1, 1).expand(1, 3, 128, 128).clone()
    base = DreamSettings(num_octaves=2, num_iterations=5, octave_scale=1.4)
    old = dream_image(lite0, flat, None, preset_settings("legacy", base))
    new = dream_image(lite0, flat, None, base)
    old_strength, new_strength = float((old - flat).abs().mean()), float((new - flat).abs().mean())
    assert new_strength > 0.2 * old_strength  # the new step still dreams
    # Colour static per unit of dream: at least 4x less.
    assert fine_chroma(new) / new_strength < 0.25 * fine_chroma(old) / old_strength


def test_objective_rises_with_the_new_step_on_the_real_model(lite0):
    x = textured_image(96, 96)
    out = dream_image(lite0, x, None, DreamSettings(num_octaves=2, num_iterations=4))
    assert objective_value(lite0, out).item() > 1.1 * objective_value(lite0, x).item()


@pytest.mark.parametrize("rule", ["lapnorm", "plain"])
def test_objective_rises_with_each_rule(tiny_model, rule):
    x = textured_image(48, 48)
    settings = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=4, step_rule=rule)
    out = dream_image(tiny_model, x, "conv3", settings)
    assert objective_value(tiny_model, out, "conv3").item() > 1.05 * objective_value(tiny_model, x, "conv3").item()


def test_plain_rule_without_decorrelation_is_the_earlier_step():
    g = torch.randn(2, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    expected = gaussian_blur(g, 0.5)
    expected = expected / (expected.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)
    assert torch.allclose(step_direction(g, "plain", smoothing=0.5, colour_decorrelation=0.0), expected)


def test_direction_has_unit_mean_magnitude_and_follows_dtype():
    g = torch.randn(2, 3, 33, 47, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = step_direction(g, "lapnorm", smoothing=0.5, colour_decorrelation=0.5, laplacian_levels=4)
    assert d.dtype == torch.float64 and d.shape == g.shape
    assert torch.allclose(d.abs().mean(dim=(1, 2, 3)), torch.ones(2, dtype=torch.float64), atol=1e-6)


def test_laplacian_normalisation_lifts_the_coarse_band():
    """A gradient of strong pixel noise over a weak smooth ramp: after lapnorm the ramp carries a fair share."""
    gen = torch.Generator().manual_seed(2)
    ramp = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    noise = torch.randn(1, 3, 64, 64, generator=gen)
    g = 0.02 * ramp + noise

    def low_share(x: torch.Tensor) -> float:
        low = gaussian_blur(x, 4.0)
        return float(low.pow(2).mean() / x.pow(2).mean())

    out = laplacian_normalize(g, 4)
    assert low_share(out) > 5 * low_share(g)
    # One level = the whole gradient scaled to unit RMS.
    one = laplacian_normalize(g, 1)
    assert torch.allclose(one, g / g.pow(2).mean().sqrt(), atol=1e-6)


def test_laplacian_normalisation_handles_tiny_and_odd_sizes():
    for h, w in [(7, 9), (15, 33), (64, 3)]:
        g = torch.randn(1, 3, h, w)
        assert laplacian_normalize(g, 6).shape == g.shape


def test_colour_preconditioner_keeps_luminance_and_damps_chroma():
    assert torch.allclose(colour_preconditioner(0.0, torch.device("cpu"), torch.float64), torch.eye(3, dtype=torch.float64))
    p = colour_preconditioner(1.0, torch.device("cpu"), torch.float64)
    assert torch.allclose(p, p.T)
    grey = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / 3**0.5
    red_minus_blue = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) / 2**0.5
    assert (p @ grey).norm() > 0.95
    assert (p @ red_minus_blue).norm() < 0.15
    half = colour_preconditioner(0.5, torch.device("cpu"), torch.float64)
    assert torch.allclose(half @ half, p, atol=1e-12)


def test_unknown_rule_and_out_of_range_settings_are_refused():
    with pytest.raises(ValueError, match="unknown step rule"):
        step_direction(torch.zeros(1, 3, 8, 8), "adam", smoothing=0)
    for bad in ({"step_rule": "adam"}, {"colour_decorrelation": 1.5}, {"laplacian_levels": 0}):
        with pytest.raises(InvalidParameterError):
            DreamSettings(**bad).validate()


def test_separable_filter_equals_the_convolution_it_replaces():
    import torch.nn.functional as F

    from dream_core.image_ops import separable_filter

    x = torch.randn(2, 3, 23, 31, dtype=torch.float64)
    taps = (0.1, 0.2, 0.4, 0.2, 0.1)
    k = torch.tensor(taps, dtype=torch.float64)
    ref = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k.view(1, 1, 1, 5).expand(3, 1, 1, 5), groups=3)
    ref = F.conv2d(F.pad(ref, (0, 0, 2, 2), mode="reflect"), k.view(1, 1, 5, 1).expand(3, 1, 5, 1), groups=3)
    assert torch.allclose(separable_filter(x, taps), ref, atol=1e-12)
    assert torch.allclose(separable_filter(x, taps, stride=2), ref[..., ::2, ::2], atol=1e-12)
    assert torch.allclose(separable_filter(x.contiguous(memory_format=torch.channels_last), taps), ref, atol=1e-12)
    long = tuple([1 / 19] * 19)  # the convolution path
    k = torch.tensor(long, dtype=torch.float64)
    ref = F.conv2d(F.pad(x, (9, 9, 0, 0), mode="reflect"), k.view(1, 1, 1, 19).expand(3, 1, 1, 19), groups=3)
    ref = F.conv2d(F.pad(ref, (0, 0, 9, 9), mode="reflect"), k.view(1, 1, 19, 1).expand(3, 1, 19, 1), groups=3)
    assert torch.allclose(separable_filter(x, long, stride=3), ref[..., ::3, ::3], atol=1e-12)
