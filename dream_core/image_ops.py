"""Small image operations on ``[B,C,H,W]`` tensors (device/dtype follow the input).

Conventions: images are RGB float in ``0..1``; sizes are ``(height, width)``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import InvalidImageError, InvalidParameterError

# ITU-R BT.601 luma weights (as JPEG's YCbCr).
_LUMA = (0.299, 0.587, 0.114)

#: Largest image (pixels) dreamed at all (8000x6000). On the CPU a dream takes about 1.7 GB for the
#: process, the network and one tile's activations, plus about 42 bytes a pixel for its full-size
#: buffers: 2.7 GB at 24 MP, about 3.7 GB at this limit. Larger images are refused from the file's
#: header, with the ``max_side`` that fits.
MAX_PIXELS = 48_000_000


def check_max_side(max_side: int | None) -> None:
    """Refuse a ``max_side`` that is not ``None``, ``0`` (keep the size) or a positive number of pixels.

    Raises:
        InvalidParameterError: negative, or not a whole number (``parameter="max_side"``).
    """
    if max_side is None:
        return
    if isinstance(max_side, bool) or not isinstance(max_side, (int, float)) or max_side != int(max_side) \
            or max_side < 0:
        raise InvalidParameterError(
            f"max_side must be a positive number of pixels (or 0 / None to keep the size); got {max_side!r}.",
            parameter="max_side",
        )


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B,C,H,W]`` to ``size=(h, w)`` (antialiased when shrinking)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def fit_size(height: int, width: int, max_side: int | None, *, multiple: int = 1) -> tuple[int, int]:
    """``(h, w)`` shrunk so that the longer side is at most ``max_side``; never enlarged.

    The one "shrink to max side" rule of the project (CLI inputs, video frames,
    guide images, flow estimation, previews).

    Args:
        height: ``H``.
        width: ``W``.
        max_side: longest side allowed; ``None`` or ``0`` keeps the size.
        multiple: round both sides of a *shrunk* size to multiples of this
            (``2`` for H.264's ``yuv420p``); a size that already fits is kept as is.

    Returns:
        ``(h, w)``, each side at least ``multiple`` pixels.

    Raises:
        InvalidParameterError: a negative ``max_side`` (:func:`check_max_side`).

    Example:
        >>> fit_size(720, 1280, 640)
        (360, 640)
        >>> fit_size(734, 979, 480, multiple=2)
        (360, 480)
    """
    check_max_side(max_side)
    if not max_side or max(height, width) <= max_side:
        return height, width
    f = max_side / max(height, width)
    return (max(multiple, round(height * f / multiple) * multiple), max(multiple, round(width * f / multiple) * multiple))


def fit_max_side(image: torch.Tensor, max_side: int | None, *, multiple: int = 1) -> torch.Tensor:
    """``[B,C,H,W]`` resized (antialiased) to :func:`fit_size`; the same tensor when it already fits."""
    return resize(image, fit_size(int(image.shape[-2]), int(image.shape[-1]), max_side, multiple=multiple))


def octave_sizes(height: int, width: int, num_octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """Sizes of an octave pyramid, smallest first, ending with ``(height, width)``.

    Octave ``k`` (counting from the full size, k=0) is ``round(side / octave_scale**k)``.
    """
    sizes = []
    for k in reversed(range(num_octaves)):
        f = octave_scale**k
        sizes.append((max(1, round(height / f)), max(1, round(width / f))))
    return sizes


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B,C,H,W]`` with reflect padding; ``sigma`` in pixels."""
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, image.shape[-1] - 1, image.shape[-2] - 1)
    if radius < 1:
        return image
    return separable_filter(image, _gaussian_taps(float(sigma), radius))


@functools.lru_cache(maxsize=64)
def _gaussian_taps(sigma: float, radius: int) -> tuple[float, ...]:
    """Normalised 1-D Gaussian taps (``2 * radius + 1``), made once per (sigma, radius)."""
    xs = [float(i) for i in range(-radius, radius + 1)]
    weights = [math.exp(-(x * x) / (2 * sigma * sigma)) for x in xs]
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


#: Filters up to this many taps run as shifted multiply-adds (memory-bound; 20x faster than
#: PyTorch's grouped convolution for a 3-channel 720p image on the CPU); longer ones as a convolution.
_SHIFTED_SUM_MAX_TAPS = 17


def separable_filter(image: torch.Tensor, taps: Sequence[float], *, stride: int = 1) -> torch.Tensor:
    """Filter ``[B,C,H,W]`` with the 1-D ``taps`` (odd count, centred) along W, then H, with reflect padding.

    ``stride`` keeps every ``stride``-th output pixel from the first, on both axes
    (``[B,C,ceil(H/stride),ceil(W/stride)]``), computing only those. Each side must
    exceed ``len(taps) // 2``.
    """
    if len(taps) % 2 != 1:
        raise ValueError(f"separable_filter needs an odd number of taps; got {len(taps)}")
    if len(taps) > _SHIFTED_SUM_MAX_TAPS:
        out = _convolve_axes(image, taps)
        return out[..., ::stride, ::stride] if stride > 1 else out
    return _shifted_sum(_shifted_sum(image, taps, -1, stride), taps, -2, stride)


def _shifted_sum(image: torch.Tensor, taps: Sequence[float], dim: int, stride: int) -> torch.Tensor:
    """``sum_k taps[k] * image`` shifted by ``k - r`` along ``dim`` (-1 = W, -2 = H), reflect-padded."""
    r = len(taps) // 2
    n = image.shape[dim]
    padded = F.pad(image, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="reflect")

    def window(k: int) -> torch.Tensor:
        return padded[..., k:k + n:stride] if dim == -1 else padded[..., k:k + n:stride, :]

    out = window(0) * taps[0]
    for k in range(1, len(taps)):
        out.add_(window(k), alpha=taps[k])
    return out


@functools.lru_cache(maxsize=32)
def _taps_tensor(taps: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``taps`` as a tensor on ``device``, made once (no host-to-device copy per call: capturable in a CUDA graph)."""
    with torch.inference_mode(False):
        return torch.tensor(taps, device=device, dtype=dtype)


def _convolve_axes(image: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    r = len(taps) // 2
    c = image.shape[1]
    kernel = _taps_tensor(tuple(taps), image.device, image.dtype)
    out = F.conv2d(F.pad(image, (r, r, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def mix_channels(rows: Sequence[Sequence[float]], image: torch.Tensor) -> torch.Tensor:
    """``[B,len(rows),H,W]`` whose channel ``i`` is ``sum_j rows[i][j] * image[:, j]`` for a 3-channel ``image``.

    The weights enter the kernels as numbers: no constant tensor is built (on a GPU that would be a
    copy from the host, which waits for the GPU's queue and cannot be captured in a CUDA graph).
    """
    c = image.unbind(1)
    return torch.stack([(c[0] * r[0]).add_(c[1], alpha=r[1]).add_(c[2], alpha=r[2]) for r in rows], dim=1)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Luma ``Y`` of RGB ``[B,3,H,W]`` -> ``[B,1,H,W]`` (BT.601 weights)."""
    return mix_channels((_LUMA,), image)


def keep_colours(dreamed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer: the dream's brightness changes with the original's colours.

    ``out = original + (Y(dreamed) - Y(original))`` on every channel, which keeps
    the original's chroma (Cb, Cr) exactly, then clamps to ``0..1``.
    """
    return (original + (luminance(dreamed) - luminance(original))).clamp(0, 1)


def as_mask(mask: torch.Tensor, size: tuple[int, int], *, check_finite: bool = True) -> torch.Tensor:
    """A mask as ``[1,1,H,W]`` float in ``0..1`` at ``size`` ``(H, W)`` (bilinear when resized).

    Accepts ``[H,W]``, ``[1,H,W]`` or ``[1,1,H,W]``; values are clamped to ``0..1``.
    ``check_finite=False``: the caller checked the values (see :func:`to_rgb`).

    Raises:
        InvalidImageError: another shape, a batch of several masks, or non-finite values.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4) or mask.shape[-2] < 1 or mask.shape[-1] < 1:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InvalidImageError(f"A mask must be a tensor [H,W], [1,H,W] or [1,1,H,W]; got {shape}.", parameter="mask")
    m = mask.reshape(-1, *mask.shape[-2:])
    if m.shape[0] != 1:
        raise InvalidImageError(f"One mask per image is expected; got {m.shape[0]} in shape {tuple(mask.shape)}.",
                                parameter="mask")
    m = m.to(torch.float32 if not m.is_floating_point() else m.dtype)
    if check_finite and not torch.isfinite(m).all():
        raise InvalidImageError("The mask contains NaN or infinite values.", parameter="mask")
    m = m.clamp(0, 1).unsqueeze(0)
    return m if tuple(m.shape[-2:]) == tuple(size) else resize(m, size).clamp(0, 1)


def to_rgb(image: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    """Validate ``[B,C,H,W]`` and return it as 3-channel RGB.

    Grayscale (C=1) is repeated to three channels; RGBA (C=4) is composited
    on black (alpha multiplied in). Other channel counts raise. ``check_finite=False``
    skips reading every value (on a GPU that read waits for all queued work) where the
    caller has checked them already.

    Raises:
        InvalidImageError: wrong rank, channel count, empty/1x1 size, or non-finite values.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InvalidImageError(f"Expected an image tensor [B,C,H,W]; got {shape}.")
    b, c, h, w = image.shape
    if b == 0 or h < 2 or w < 2:
        raise InvalidImageError(f"Image is empty or too small to dream: {h}x{w} (batch {b}); need at least 2x2 pixels.")
    if not image.is_floating_point():
        raise InvalidImageError(f"Expected a float image in 0..1; got dtype {image.dtype}. Divide uint8 images by 255.")
    if check_finite and not torch.isfinite(image).all():
        raise InvalidImageError("Image contains NaN or infinite values; fix whatever produced it.")
    if c == 3:
        return image
    if c == 1:
        return image.expand(b, 3, h, w)
    if c == 4:
        return image[:, :3] * image[:, 3:4]
    raise InvalidImageError(f"Expected 1 (gray), 3 (RGB) or 4 (RGBA) channels; got {c}.")
