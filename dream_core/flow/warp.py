"""Warping images with optical flow, and the one flow convention of ``dream_core``.

Convention (the whole project uses it; :mod:`dream_core.flow` produces it):

* Images are ``[B,C,H,W]`` floating tensors (RGB ``0..1`` for frames).
* A flow is ``[H,W,2]`` (one field) or ``[N,H,W,2]`` (several), in **pixel
  units**; channel 0 is the x (column) displacement ``u``, channel 1 the y
  (row) displacement ``v``. :mod:`dream_core.flow` stores flows as float32.
* ``warp(image, flow)`` *pulls*: ``out(x, y) = image(x + u(x, y), y + v(x, y))``
  (the convention of ``cv2.remap`` and of ``grid_sample``). So a flow of
  ``u = +3`` everywhere gives ``out(x) = image(x + 3)``: the picture moves
  3 pixels to the **left**, like ``torch.roll(image, -3, dims=-1)``.
* The **backward flow of frame t** ``bw[t]`` maps each pixel of frame ``t`` to
  where it came from in frame ``t-1``: ``frame_t(x, y) ≈ frame_{t-1}(x + u, y + v)``,
  hence ``warp(frame_{t-1}, bw[t]) ≈ frame_t``. It is what
  ``cv2.calcOpticalFlowFarneback(cur_gray, prev_gray, ...)`` returns.
* The **forward flow** ``fw[t]`` maps frame ``t-1`` pixels to where they go in
  frame ``t``: ``frame_{t-1}(x, y) ≈ frame_t(x + u, y + v)``.

Sample positions use pixel centres at integer coordinates ``0 .. W-1`` (that is
``grid_sample(..., align_corners=True)``). A sample is *inside* the image when
``0 <= x + u <= W-1`` and ``0 <= y + v <= H-1``; pixels whose sample falls
outside have no source in the warped image (regions newly revealed at the
border) and are reported by :func:`warp_with_mask` / :func:`inside_mask`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import FlowError, InvalidImageError, InvalidParameterError

PADDING_MODES = ("zeros", "border", "reflection")
INTERPOLATION_MODES = ("bilinear", "nearest", "bicubic")

# Tolerance (in pixels) when deciding whether a sample position lies inside
# the image: float32 round-off on ``x + u`` must not flag the last column.
_INSIDE_EPS = 1e-3


def check_flow(flow: torch.Tensor, name: str = "flow") -> torch.Tensor:
    """Validate a flow tensor and return it as ``[N,H,W,2]`` (a view, no copy).

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]`` floating tensor in pixel units.
        name: how the message calls the tensor.

    Returns:
        The same data shaped ``[N,H,W,2]`` (``N = 1`` for a single field).

    Raises:
        FlowError: not a tensor, not floating point, or not ``[..., H, W, 2]``.
    """
    if not isinstance(flow, torch.Tensor):
        raise FlowError(f"{name} must be a torch.Tensor of shape [H,W,2] or [N,H,W,2]; got {type(flow).__name__}.")
    if flow.dim() not in (3, 4) or flow.shape[-1] != 2:
        raise FlowError(
            f"{name} must have shape [H,W,2] or [N,H,W,2] (last dim = x,y displacement); got {tuple(flow.shape)}. "
            "A channels-first [N,2,H,W] flow must be permuted with .permute(0, 2, 3, 1)."
        )
    if not flow.is_floating_point():
        raise FlowError(f"{name} must be a floating tensor (pixel displacements); got dtype {flow.dtype}.")
    return flow if flow.dim() == 4 else flow.unsqueeze(0)


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise InvalidImageError(f"image must be a torch.Tensor [B,C,H,W]; got {type(image).__name__}.")
    if image.dim() != 4:
        raise InvalidImageError(f"image must have shape [B,C,H,W]; got {tuple(image.shape)}.")
    if not image.is_floating_point():
        raise InvalidImageError(
            f"image must be a floating tensor (e.g. RGB 0..1); got dtype {image.dtype}. Convert with image.float() / 255."
        )


def _sample_positions(flow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Absolute pixel positions ``(x + u, y + v)`` as ``[N,H,W,2]`` on the flow's device."""
    _, h, w, _ = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=dtype)
    xs = torch.arange(w, device=flow.device, dtype=dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H,W,2], (x, y)
    return base.unsqueeze(0) + flow.to(dtype)


def _inside(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Boolean ``[N,H,W]``: sample positions ``pos`` ``[N,H,W,2]`` inside a ``w`` x ``h`` image."""
    x, y = pos[..., 0], pos[..., 1]
    eps = _INSIDE_EPS
    return (x >= -eps) & (x <= w - 1 + eps) & (y >= -eps) & (y <= h - 1 + eps)


def inside_mask(flow: torch.Tensor) -> torch.Tensor:
    """Where the samples of a pull-warp by ``flow`` land inside the image.

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]`` pixel-unit flow.

    Returns:
        ``[H,W]`` or ``[N,H,W]`` (matching the input) tensor of the flow's dtype
        and device: 1 where ``0 <= x+u <= W-1`` and ``0 <= y+v <= H-1``, else 0.

    Convention:
        Same as :func:`warp`; pixel centres at integers, 1e-3 px tolerance.

    Raises:
        FlowError: bad flow shape or dtype.
    """
    single = flow.dim() == 3
    f = check_flow(flow)
    _, h, w, _ = f.shape
    ok = _inside(_sample_positions(f, f.dtype), h, w).to(f.dtype)
    return ok[0] if single else ok


def warp_with_mask(
    image: torch.Tensor,
    flow: torch.Tensor,
    padding_mode: str = "zeros",
    mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull-warp ``image`` by ``flow`` and say which output pixels had a source.

    ``out(x, y) = image(x + u(x, y), y + v(x, y))``, sampled with
    :func:`torch.nn.functional.grid_sample` (``align_corners=True``).

    Args:
        image: ``[B,C,H,W]`` floating tensor.
        flow: ``[H,W,2]`` (applied to every image) or ``[B,H,W,2]``; ``B`` of the
            image and of the flow may also be 1 and broadcast. Moved to the
            image's device and dtype (the image is never moved).
        padding_mode: what samples outside the image read: ``"zeros"`` (0),
            ``"border"`` (nearest edge pixel) or ``"reflection"``.
        mode: ``"bilinear"`` (default), ``"nearest"`` or ``"bicubic"``.

    Returns:
        ``(out, valid)``: ``out`` is ``[B',C,H,W]`` with the image's dtype and
        device (``B'`` the broadcast batch); ``valid`` is ``[B',H,W]`` of the
        same dtype, 1 where the sample position lies inside the image
        (see :func:`inside_mask`), 0 where it fell outside (newly revealed
        border regions, whose ``out`` is only the padding).

    Convention:
        ``u = +3`` everywhere gives ``out(x) = image(x + 3)``, i.e.
        ``torch.roll(image, -3, dims=-1)`` away from the border. To move frame
        ``t-1`` onto frame ``t`` use the backward flow of frame ``t``:
        ``warp(frame_prev, bw_t) ≈ frame_t``. In float32 the sample
        positions carry about ``W * 6e-8`` px of round-off (zero flow returns
        the image to ~1e-6 at 64 px, ~1e-4 at 1280 px); float64 is exact.

    Raises:
        InvalidImageError: image not a floating ``[B,C,H,W]`` tensor.
        FlowError: flow shape or batch does not fit the image.
        InvalidParameterError: unknown ``padding_mode`` or ``mode``.
    """
    _check_image(image)
    if padding_mode not in PADDING_MODES:
        raise InvalidParameterError(f"padding_mode must be one of {PADDING_MODES}; got {padding_mode!r}.")
    if mode not in INTERPOLATION_MODES:
        raise InvalidParameterError(f"mode must be one of {INTERPOLATION_MODES}; got {mode!r}.")
    f = check_flow(flow)
    b, _, h, w = image.shape
    if tuple(f.shape[1:3]) != (h, w):
        raise FlowError(
            f"flow is {f.shape[2]}x{f.shape[1]} (WxH) but the image is {w}x{h}; "
            "compute the flow on frames of the same size as the image (or resize both)."
        )
    n = f.shape[0]
    if n != b and n != 1 and b != 1:
        raise FlowError(f"flow has {n} fields but the image batch has {b}; give one field per image, or a single field.")
    batch = max(n, b)
    f = f.to(device=image.device, dtype=image.dtype)
    pos = _sample_positions(f, image.dtype)
    # Pixel positions -> normalised [-1, 1] (align_corners=True: -1 is the
    # centre of pixel 0, +1 the centre of pixel W-1).
    # float32: ~W*6e-8 px round-off, float64: exact. The scales enter as numbers: no tensor is copied
    # to a GPU (such a copy waits for the GPU's queue, and cannot be captured in a CUDA graph).
    px, py = pos.unbind(-1)
    grid = torch.stack((px * (2.0 / max(w - 1, 1)) - 1.0, py * (2.0 / max(h - 1, 1)) - 1.0), dim=-1)
    valid = _inside(pos, h, w).to(image.dtype)
    if grid.shape[0] != batch:
        grid = grid.expand(batch, -1, -1, -1)
        valid = valid.expand(batch, -1, -1)
    src = image if b == batch else image.expand(batch, -1, -1, -1)
    out = F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out, valid


def warp(
    image: torch.Tensor,
    flow: torch.Tensor,
    padding_mode: str = "zeros",
    mode: str = "bilinear",
) -> torch.Tensor:
    """Pull-warp ``image`` by ``flow``: ``out(x, y) = image(x + u, y + v)``.

    Args:
        image: ``[B,C,H,W]`` floating tensor.
        flow: ``[H,W,2]`` or ``[B,H,W,2]`` pixel-unit flow (x then y).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        mode: ``"bilinear"``, ``"nearest"`` or ``"bicubic"``.

    Returns:
        ``[B,C,H,W]`` warped image, same device and dtype as ``image``.

    Convention:
        See :func:`warp_with_mask` and the module docstring: ``u = +3`` gives
        ``out(x) = image(x + 3)`` (``torch.roll`` by ``-3``);
        ``warp(frame_{t-1}, backward_flow_t) ≈ frame_t``.

    Raises:
        InvalidImageError, FlowError, InvalidParameterError: see
        :func:`warp_with_mask`.
    """
    return warp_with_mask(image, flow, padding_mode=padding_mode, mode=mode)[0]
