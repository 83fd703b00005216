"""Pictures of optical flow: a colour wheel per field, and a clip preview with unreliable pixels darkened."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InvalidParameterError
from ..image_ops import fit_size
from .estimate import resize_flow
from .flowset import FlowSet
from .warp import check_flow

#: Longest side of :func:`flow_preview`'s pictures (a preview; keeps a long clip's preview small in RAM).
PREVIEW_MAX_SIDE = 512


def flow_to_color(flow: torch.Tensor, max_magnitude: float | None = None) -> torch.Tensor:
    """Colour-wheel picture of flow fields for previews.

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]`` pixel-unit flow.
        max_magnitude: the magnitude shown fully saturated; ``None`` uses a
            robust maximum (99th percentile of the magnitudes of all given
            fields, so every frame of a clip shares one scale).

    Returns:
        ``[H,W,3]`` or ``[N,H,W,3]`` RGB in ``0..1`` (channels last, as
        ComfyUI's IMAGE), same device, float32 (float64 stays float64).

    Convention:
        Hue is the direction the content at a pixel is displaced by the flow,
        in image axes (y down): ``+x`` (right) red, ``+y`` (down)
        yellow-green, ``-x`` (left) cyan, ``-y`` (up) violet; hue angle =
        ``atan2(v, u)``. Saturation grows with magnitude (white = no motion,
        full colour at ``max_magnitude`` and above); value is 1.

    Raises:
        FlowError: bad flow shape.
        InvalidParameterError: ``max_magnitude <= 0``.
    """
    single = flow.dim() == 3
    f = check_flow(flow)
    if f.dtype not in (torch.float32, torch.float64):
        f = f.float()
    u, v = f[..., 0], f[..., 1]
    mag = torch.sqrt(u * u + v * v)
    if max_magnitude is None:
        flat = mag.reshape(-1)
        if flat.numel() > 1_000_000:
            flat = flat[:: math.ceil(flat.numel() / 1_000_000)]
        scale = float(torch.quantile(flat, 0.99)) if flat.numel() else 0.0
    else:
        if not max_magnitude > 0:
            raise InvalidParameterError(f"max_magnitude must be > 0 (pixels); got {max_magnitude}.")
        scale = float(max_magnitude)
    sat = (mag / scale).clamp(0.0, 1.0) if scale > 1e-9 else torch.zeros_like(mag)
    hue = torch.remainder(torch.atan2(v, u) / (2.0 * math.pi), 1.0)  # 0..1
    # HSV -> RGB with value 1: channel = 1 - s * clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6.
    n = torch.tensor([5.0, 3.0, 1.0], device=f.device, dtype=f.dtype)
    k = torch.remainder(n + hue.unsqueeze(-1) * 6.0, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    rgb = 1.0 - sat.unsqueeze(-1) * ramp
    return rgb[0] if single else rgb


def flow_preview(flows: FlowSet, max_side: int = PREVIEW_MAX_SIDE) -> torch.Tensor:
    """One picture per frame of the clip: colour-coded backward flow, darkened where unreliable.

    Frame 0 has no previous frame and is white (no motion). Hue = direction,
    saturation = speed (:func:`flow_to_color`, one scale for the whole clip);
    pixels whose flow failed the reliability test (occlusions, motion edges)
    are shown at 40 % brightness.

    Args:
        flows: the clip's flows.
        max_side: longest side of the pictures (never enlarged).

    Returns:
        ``[N,h,w,3]`` float32 RGB in ``0..1`` (channels last) on the CPU.
    """
    size = fit_size(flows.height, flows.width, max_side)
    out = torch.ones(flows.num_frames, size[0], size[1], 3, dtype=torch.float32)
    if len(flows):
        color = flow_to_color(resize_flow(flows.backward.float(), size))
        rel = flows.reliable.float()
        if tuple(rel.shape[-2:]) != size:
            rel = F.interpolate(rel[:, None], size=size, mode="area")[:, 0]
        out[1:] = (color * (0.4 + 0.6 * rel[..., None])).cpu()
    return out
