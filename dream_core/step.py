"""Step rules: how the objective's image gradient becomes the update of one dream step.

A dream step adds ``learning_rate * direction(grad)`` to the image. The network's
raw image gradient is dominated by per-pixel, per-channel detail (the stride grid
of the first convolutions): stepping along it directly paints a fine red/green/blue
speckle over every flat area, which shimmers in video. The direction is made in
three stages:

1. *colour decorrelation* (``colour_decorrelation`` ``c`` in ``0..1``): precondition
   the RGB gradient with ``P = (M Mᵀ)^c``, where ``M`` is the square root of
   ImageNet's colour covariance (the matrix lucid/lucent use to parameterise images
   in a decorrelated colour space; ``c = 1`` is gradient ascent in that space,
   ``c = 0`` plain RGB). The luminance-like direction keeps its full share, the
   chroma directions, which natural images hardly use at fine scales, a small one;
2. *normalisation*, by ``step_rule``:

   ``lapnorm`` (default)
       Laplacian-pyramid normalisation (the "lapnorm" of the original deepdream
       notebook): split the gradient into ``laplacian_levels`` frequency bands and
       scale each band to unit RMS, so coarse structure gets as large a share of
       the step as the finest band instead of almost none;
   ``plain``
       none (Google's notebook rule; with ``c = 0`` the step of earlier versions:
       crisper fine detail, with the colour speckle);
3. Gaussian smoothing by ``gradient_smoothing`` pixels, then scaling to mean
   ``|direction| = 1``.

Conventions: gradients are ``[B,3,H,W]`` in the image's RGB ``0..1`` units; every
rule returns a direction of the same shape with mean absolute value 1 per batch
item; device and dtype follow the gradient.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .image_ops import gaussian_blur, separable_filter

STEP_RULES = ("lapnorm", "plain")
DEFAULT_STEP_RULE = "lapnorm"

#: Square root of ImageNet's RGB colour covariance (columns: luminance-like, red-blue,
#: green-magenta directions), as published with lucid's colour decorrelation.
_IMAGENET_COLOUR_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)

#: Binomial taps of the Laplacian pyramid's low-pass filter (Burt & Adelson).
_BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)

#: A pyramid band is not split further once its shorter side is below this.
_MIN_BAND_SIDE = 8


@functools.lru_cache(maxsize=16)
def colour_preconditioner(strength: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[3,3]`` matrix ``P = (M Mᵀ)^strength`` applied to RGB gradients (``strength`` in ``0..1``).

    ``M`` is ImageNet's colour covariance square root scaled so its largest column
    has norm 1, so ``P``'s largest eigenvalue (the luminance-like direction) is 1
    and the chroma directions get ``0.08^strength`` and ``0.02^strength`` of the
    gradient. ``strength = 0`` gives the identity.
    """
    with torch.inference_mode(False), torch.no_grad():
        m = torch.tensor(_IMAGENET_COLOUR_SQRT, dtype=torch.float64)
        m = m / m.norm(dim=0).max()
        evals, evecs = torch.linalg.eigh(m @ m.T)
        p = evecs @ torch.diag(evals.clamp_min(0.0) ** strength) @ evecs.T
        return p.to(device=device, dtype=dtype)


def decorrelate_colours(grad: torch.Tensor, strength: float) -> torch.Tensor:
    """Apply :func:`colour_preconditioner` to an RGB gradient ``[B,3,H,W]``."""
    if strength <= 0:
        return grad
    p = colour_preconditioner(float(strength), grad.device, grad.dtype)
    return torch.einsum("ij,bjhw->bihw", p, grad)


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """Binomial low-pass (reflect padding), every second pixel: ``[B,C,H,W]`` -> ``[B,C,ceil(H/2),ceil(W/2)]``."""
    return separable_filter(x, _BINOMIAL, stride=2)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_normalize(grad: torch.Tensor, levels: int) -> torch.Tensor:
    """Scale each of ``levels`` Laplacian-pyramid bands of ``grad`` ``[B,C,H,W]`` to unit RMS, and merge.

    The bands are ``levels - 1`` band-pass images (each the difference between a
    level and its upsampled low-pass) and the final low-pass; merging the
    unnormalised bands gives back ``grad`` exactly. Bands stop splitting when
    their shorter side falls below 8 pixels. ``levels <= 1`` normalises the whole
    gradient as one band.
    """
    bands: list[torch.Tensor] = []
    current = grad
    for _ in range(max(0, levels - 1)):
        if min(current.shape[-2:]) < _MIN_BAND_SIDE:
            break
        low = _downsample(current)
        bands.append(current - _upsample(low, tuple(current.shape[-2:])))
        current = low
    bands.append(current)
    merged: torch.Tensor | None = None
    for band in reversed(bands):
        band = band / band.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        merged = band if merged is None else _upsample(merged, tuple(band.shape[-2:])) + band
    assert merged is not None
    return merged


def step_direction(
    grad: torch.Tensor,
    rule: str,
    *,
    smoothing: float,
    colour_decorrelation: float = 0.0,
    laplacian_levels: int = 4,
) -> torch.Tensor:
    """The update direction ``[B,3,H,W]`` (mean ``|d| = 1`` per item) for the gradient ``grad``.

    Args:
        grad: objective gradient w.r.t. the RGB image, ``[B,3,H,W]``.
        rule: one of :data:`STEP_RULES`.
        smoothing: Gaussian sigma (pixels) applied to the direction; 0 disables.
        colour_decorrelation: ``0..1`` (see :func:`colour_preconditioner`); 0 disables.
        laplacian_levels: bands of :func:`laplacian_normalize` (``lapnorm`` only).
    """
    if rule not in STEP_RULES:
        raise ValueError(f"unknown step rule {rule!r}; expected one of {STEP_RULES}")
    grad = decorrelate_colours(grad, colour_decorrelation)
    if rule == "lapnorm":
        grad = laplacian_normalize(grad, laplacian_levels)
    if smoothing > 0:
        grad = gaussian_blur(grad, smoothing)
    return grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)
