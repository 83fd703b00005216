"""Colour balance in CIELAB: keeping a dreamed clip's brightness, contrast and colour cast from drifting.

Frame after frame, a carried or fed-back dream can drift: a feedback zoom washes
out (lightness contrast falls by a third over 48 frames) and takes a yellow cast;
a long clip slowly warms. :func:`match_colour_balance` pulls an image's *colour
balance* towards a reference: the mean and spread of its lightness ``L*`` and the
means of ``a*`` / ``b*`` (its cast). The spread of ``a*`` / ``b*`` - the colours
the dream painted - is left alone, so the dream keeps its look.

Conventions: RGB tensors are ``[N,3,H,W]`` sRGB in ``0..1``; LAB tensors are
``[N,3,H,W]`` with ``L*`` in ``0..100`` and ``a*``, ``b*`` roughly ``-128..127``
(D65 white). Device and dtype follow the input.
"""

from __future__ import annotations

import math

import torch

from .errors import InvalidParameterError
from .image_ops import mix_channels

#: sRGB (linear) -> CIE XYZ, D65 white.
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
#: The D65 reference white in XYZ.
_WHITE = (0.95047, 1.0, 1.08883)
#: CIELAB's linear-segment threshold (6/29).
_DELTA = 6.0 / 29.0
#: A lightness contrast is never scaled by more than this factor (or its inverse) in one match.
MAX_CONTRAST_GAIN = 2.0
#: Corrections per match: colours pushed out of the sRGB gamut are clipped, so the first one falls short.
MATCH_ROUNDS = 3
#: Pixels sampled for the statistics of :func:`match_colour_balance`.
SAMPLE_PIXELS = 16384


Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


def _inverse(m: Matrix3) -> Matrix3:
    """The inverse of a 3x3 matrix of numbers (cofactors over the determinant)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return ((( e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
            (( f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
            (( d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det))


#: Linear sRGB -> XYZ divided by the white (rows scaled), and its inverse: numbers for image_ops.mix_channels.
_RGB_TO_XYZ_WHITE: Matrix3 = tuple(tuple(v / w for v in row) for row, w in zip(_RGB_TO_XYZ, _WHITE))  # type: ignore[assignment]
_XYZ_WHITE_TO_RGB: Matrix3 = _inverse(_RGB_TO_XYZ_WHITE)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``[N,3,H,W]`` in ``0..1`` -> CIELAB ``[N,3,H,W]`` (``L*`` 0..100)."""
    c = rgb.clamp(0, 1)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = mix_channels(_RGB_TO_XYZ_WHITE, linear)  # over the white
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB ``[N,3,H,W]`` -> sRGB ``[N,3,H,W]`` in ``0..1`` (out-of-gamut colours clipped)."""
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack((fy + a / 500, fy, fy - b / 200), dim=1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29))
    linear = mix_channels(_XYZ_WHITE_TO_RGB, xyz).clamp(0, 1)  # xyz over the white
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055).clamp(0, 1)


def colour_balance(rgb: torch.Tensor) -> torch.Tensor:
    """The colour balance of each image: ``[N,4]`` = (mean ``L*``, std ``L*``, mean ``a*``, mean ``b*``)."""
    return _balance(rgb_to_lab(rgb))


def _balance(lab: torch.Tensor) -> torch.Tensor:
    L, a, b = lab.unbind(1)
    dims = (-2, -1)
    return torch.stack((L.mean(dims), L.std(dims), a.mean(dims), b.mean(dims)), dim=1)


def _sample(rgb: torch.Tensor) -> torch.Tensor:
    """Every k-th pixel in both directions, at most about :data:`SAMPLE_PIXELS` of them (statistics only)."""
    stride = max(1, math.ceil(math.sqrt(rgb.shape[-2] * rgb.shape[-1] / SAMPLE_PIXELS)))
    return rgb[..., ::stride, ::stride]


class _BalanceShift:
    """``L* -> (L* - centre) * gain + centre + shift_L``, ``a* += shift_a``, ``b* += shift_b``, per image."""

    def __init__(self, centre: torch.Tensor) -> None:
        self.centre = centre.view(-1, 1, 1, 1)
        self.gain = torch.ones_like(self.centre)
        self.shift = torch.zeros(centre.shape[0], 3, 1, 1, device=centre.device, dtype=centre.dtype)

    def apply(self, lab: torch.Tensor) -> torch.Tensor:
        L = (lab[:, :1] - self.centre) * self.gain + self.centre
        return torch.cat((L, lab[:, 1:]), dim=1) + self.shift

    def correct(self, have: torch.Tensor, want: torch.Tensor) -> None:
        """Move the result's balance ``have`` ``[N,4]`` (as measured) towards ``want``."""
        ratio = want[:, 1] / have[:, 1].clamp_min(1e-3)
        self.gain = (self.gain * ratio.view(-1, 1, 1, 1)).clamp(1 / MAX_CONTRAST_GAIN, MAX_CONTRAST_GAIN)
        gap = want - have  # (mean L*, std L*, mean a*, mean b*): the means are shifted
        self.shift = self.shift + torch.cat((gap[:, :1], gap[:, 2:]), dim=1).view(-1, 3, 1, 1)


def match_colour_balance(image: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Pull ``image``'s colour balance towards ``reference``'s.

    ``L*`` is shifted and scaled to the reference's mean and spread (the gain kept within
    ``1/MAX_CONTRAST_GAIN .. MAX_CONTRAST_GAIN``), ``a*`` and ``b*`` are shifted to the
    reference's means. The target is ``strength`` of the way from ``image``'s balance to the
    reference's. Colours pushed out of the sRGB gamut are clipped, so the shift is found on a
    sample of the pixels over :data:`MATCH_ROUNDS` measured corrections, then applied to the
    whole image once.

    Args:
        image: RGB ``[N,3,H,W]`` in ``0..1``.
        reference: RGB ``[1,3,h,w]`` or ``[N,3,h,w]`` in ``0..1``; any size (only its statistics count).
        strength: ``0`` returns ``image`` unchanged, ``1`` matches fully.

    Returns:
        RGB ``[N,3,H,W]`` in ``0..1``, same device and dtype as ``image``.

    Raises:
        InvalidParameterError: ``strength`` outside ``0..1``.
    """
    if not 0.0 <= strength <= 1.0:
        raise InvalidParameterError(f"colour_coherence must be in 0..1; got {strength}.", parameter="colour_coherence")
    if strength == 0.0:
        return image
    sample = rgb_to_lab(_sample(image))
    have = _balance(sample)
    want = torch.lerp(have, colour_balance(_sample(reference.to(device=image.device, dtype=image.dtype))).expand_as(have),
                      strength)
    shift = _BalanceShift(have[:, 0])
    now = have
    for _ in range(MATCH_ROUNDS):
        shift.correct(now, want)
        now = colour_balance(lab_to_rgb(shift.apply(sample)))  # as it comes out: clipped to the gamut
    return lab_to_rgb(shift.apply(rgb_to_lab(image)))
