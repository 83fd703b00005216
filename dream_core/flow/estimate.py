"""Optical flow estimation: :class:`FlowEstimator` for frame pairs, sizes and flow resampling.

Methods (:data:`FLOW_METHODS`): ``"dis"`` (OpenCV DIS, CPU), ``"farneback"``
(OpenCV Farneback with the original tool's parameters, CPU), ``"raft_small"``
and ``"raft_large"`` (torchvision RAFT, on the frames' device; weights from a
file or the torchvision download, :mod:`dream_core.flow.raft`). Reuse one
:class:`FlowEstimator` for a whole clip: it holds the loaded RAFT network.
The flow convention is :mod:`dream_core.flow.warp`'s.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import FlowError, InvalidImageError, InvalidParameterError, did_you_mean
from ..image_ops import fit_size
from .raft import RAFT_METHODS, load_raft, raft_flow
from .warp import check_flow

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

log = logging.getLogger(__name__)

FLOW_METHODS = ("dis", "farneback", "raft_small", "raft_large")

# Chosen with benchmarks/flow_methods.py on the real clip balcony_view.mp4
# (30 frames, handheld, median motion ~7 px at 640x360; 2-core CPU shared with
# other jobs, so times are the min over 29 pairs, per flow field). Warp error =
# mean |frame_t - warp(frame_{t-1}, bw_t)| (RGB 0..1) over in-frame pixels:
#   640x360:  none 0.0895 | DIS medium 0.0093, 0.020 s | DIS fast 0.0109, 0.006 s
#             | Farneback 0.0103, 0.042 s | RAFT small/large (random) 0.7 / 10 s
#   1280x720: none 0.1010 | DIS medium 0.0093, 0.12 s | DIS fast 0.0110, 0.04 s
#             | Farneback 0.0269, 0.18 s (3 levels cannot follow ~14 px motion)
#             | RAFT small/large (random) 25 / 50 s
# DIS MEDIUM is the most accurate at both sizes and about twice as fast as the
# original tool's Farneback; RAFT needs a GPU (and weights) to be practical.
DEFAULT_FLOW_METHOD = "dis"
DIS_PRESETS = ("ultrafast", "fast", "medium")
DEFAULT_DIS_PRESET = "medium"

# The original tool's cv2.calcOpticalFlowFarneback arguments.
FARNEBACK_PARAMS: dict[str, float | int] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}


_MIN_FLOW_SIDE = 8
#: OpenCV's DIS needs at least this many pixels on the longer side of the frames it compares.
_MIN_DIS_SIDE = 12


def as_batch_frame(frame: torch.Tensor, name: str) -> torch.Tensor:
    """Validate an RGB frame ``[3,H,W]``/``[1,3,H,W]`` and return it as ``[1,3,H,W]``."""
    if not isinstance(frame, torch.Tensor):
        raise InvalidImageError(f"{name} must be a torch.Tensor [3,H,W] or [1,3,H,W]; got {type(frame).__name__}.")
    if frame.dim() == 3:
        frame = frame.unsqueeze(0)
    if frame.dim() != 4 or frame.shape[0] != 1 or frame.shape[1] != 3:
        raise InvalidImageError(
            f"{name} must be one RGB frame [3,H,W] or [1,3,H,W] (channels first, 0..1); got {tuple(frame.shape)}. "
            "Channels-last [B,H,W,3] tensors must be permuted with .permute(0, 3, 1, 2)."
        )
    if not frame.is_floating_point():
        raise InvalidImageError(f"{name} must be a floating tensor in 0..1; got {frame.dtype}. Use frame.float() / 255.")
    return frame


def _check_size_options(max_side: int | None, scale: float | None) -> None:
    if max_side is not None and scale is not None:
        raise InvalidParameterError("Give either max_side or scale for the flow resolution, not both.")
    if max_side is not None and int(max_side) < _MIN_FLOW_SIDE:
        raise InvalidParameterError(f"max_side must be at least {_MIN_FLOW_SIDE} px; got {max_side}.")
    if scale is not None and not (0.0 < float(scale) <= 1.0):
        raise InvalidParameterError(f"scale must be in (0, 1] (1 = full resolution); got {scale}.")


def flow_size(height: int, width: int, max_side: int | None = None, scale: float | None = None) -> tuple[int, int]:
    """Size ``(h, w)`` at which flow is estimated for ``height`` x ``width`` frames.

    Args:
        height: frame height ``H``.
        width: frame width ``W``.
        max_side: shrink so that the longer side is at most this (never enlarges).
        scale: factor in ``(0, 1]`` applied to both sides.

    Returns:
        ``(h, w)``, rounded, each at least 8 px.

    Raises:
        InvalidParameterError: both options given, or a value out of range.
    """
    _check_size_options(max_side, scale)
    if max_side is not None:
        h, w = fit_size(height, width, int(max_side))
    elif scale is not None:
        h, w = max(1, round(height * float(scale))), max(1, round(width * float(scale)))
    else:
        return height, width
    if min(h, w) < _MIN_FLOW_SIDE:
        raise InvalidParameterError(
            f"Flow for {width}x{height} frames at this max_side/scale would be {w}x{h}, "
            f"below {_MIN_FLOW_SIDE} px; use a larger max_side or scale."
        )
    return h, w


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a flow field to ``size`` and rescale its vectors to the new pixel units.

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]`` pixel-unit flow.
        size: target ``(h, w)``.

    Returns:
        ``[h,w,2]`` or ``[N,h,w,2]`` (matching the input), same device and
        dtype; ``u`` multiplied by ``w / W`` and ``v`` by ``h / H``.

    Convention:
        Pixel centres map as ``x' = (x + 0.5) * w / W - 0.5`` (bilinear with
        ``align_corners=False`` when enlarging, area averaging when
        shrinking), so displacements scale by exactly ``w / W``.

    Raises:
        FlowError: bad flow shape.
    """
    single = flow.dim() == 3
    f = check_flow(flow)
    _, hh, ww, _ = f.shape
    h, w = int(size[0]), int(size[1])
    if (h, w) == (hh, ww):
        return flow
    chw = f.permute(0, 3, 1, 2)
    if h <= hh and w <= ww:
        out = F.interpolate(chw, size=(h, w), mode="area")
    else:
        out = F.interpolate(chw, size=(h, w), mode="bilinear", align_corners=False)
    u, v = out.unbind(1)  # the gains as numbers: no tensor copied to a GPU (it would wait for its queue)
    out = torch.stack((u * (w / ww), v * (h / hh)), dim=-1)
    return out[0] if single else out


def _resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def _gray_u8(frame: torch.Tensor) -> "np.ndarray":
    """``[1,3,H,W]`` RGB 0..1 -> ``H x W`` uint8 luma (BT.601, as cv2.COLOR_RGB2GRAY) on the CPU."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=frame.device, dtype=frame.dtype).view(1, 3, 1, 1)
    gray = (frame * weights).sum(dim=1)[0] * 255.0
    return gray.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise FlowError(
            "OpenCV is needed for the 'dis' and 'farneback' flow methods: pip install opencv-python-headless."
        ) from exc
    return cv2



class FlowEstimator:
    """Computes backward/forward flow for frame pairs with one method, caching its state.

    Hold one estimator for a whole clip: RAFT networks are loaded once (at
    construction, so a missing weights file fails early) and moved to the
    frames' device on first use; OpenCV methods keep their solver object.

    Args:
        method: one of :data:`FLOW_METHODS`.
        weights: RAFT only: weights file path, or ``None`` for the torchvision
            download (see :func:`load_raft`).
        raft_model: RAFT only: an already built network (e.g. random-init for
            tests); overrides ``weights``.
        dis_preset: DIS only: ``"ultrafast"``, ``"fast"`` or ``"medium"``; each
            OpenCV preset keeps its own variational refinement (0/5/5 iterations).
        max_side: estimate flow on frames shrunk so the longer side is at most
            this many pixels; the flow is upsampled back (vectors rescaled).
        scale: alternatively, a factor in ``(0, 1]`` for the estimation size.
        raft_iters: RAFT refinement iterations (torchvision's default 12).

    Example:
        >>> est = FlowEstimator("dis")
        >>> bw = est(prev, cur)            # [H,W,2]: cur(x) ≈ prev(x + bw(x))
        >>> bw, fw = est.bidirectional(prev, cur)

    Raises:
        FlowError: unknown method, or RAFT-only options with another method.
        InvalidParameterError: bad preset, ``max_side``/``scale`` or ``raft_iters``.
        WeightsError: RAFT weights unavailable (see :func:`load_raft`).
    """

    def __init__(
        self,
        method: str = DEFAULT_FLOW_METHOD,
        *,
        weights: str | os.PathLike[str] | None = None,
        raft_model: "nn.Module | None" = None,
        dis_preset: str = DEFAULT_DIS_PRESET,
        max_side: int | None = None,
        scale: float | None = None,
        raft_iters: int = 12,
    ) -> None:
        if method not in FLOW_METHODS:
            raise FlowError(
                f"Unknown optical flow method {method!r}; choose one of {FLOW_METHODS}.{did_you_mean(str(method), FLOW_METHODS)}",
                parameter="flow_method",
            )
        if method not in RAFT_METHODS and (weights is not None or raft_model is not None):
            raise FlowError(f"RAFT weights were given but the flow method is {method!r}; weights apply to {RAFT_METHODS} only.")
        if dis_preset not in DIS_PRESETS:
            raise InvalidParameterError(f"dis_preset must be one of {DIS_PRESETS}; got {dis_preset!r}.")
        if int(raft_iters) < 1:
            raise InvalidParameterError(f"raft_iters must be at least 1; got {raft_iters}.")
        _check_size_options(max_side, scale)
        self.method = method
        self.dis_preset = dis_preset
        self.max_side = max_side
        self.scale = scale
        self.raft_iters = int(raft_iters)
        self._dis: dict[int, object] = {}  # one OpenCV DIS object per direction (each used by one thread)
        self._raft: "nn.Module | None" = None
        if method in RAFT_METHODS:
            self._raft = (raft_model if raft_model is not None else load_raft(method, weights)).eval()

    @property
    def on_host(self) -> bool:
        """Whether it estimates on the host (OpenCV's DIS and Farneback; RAFT runs on its frames' device)."""
        return self.method not in RAFT_METHODS

    def __repr__(self) -> str:
        extra = f", dis_preset={self.dis_preset!r}" if self.method == "dis" else ""
        size = f", max_side={self.max_side}" if self.max_side else (f", scale={self.scale}" if self.scale else "")
        return f"FlowEstimator({self.method!r}{extra}{size})"

    # -- public API ---------------------------------------------------------

    def __call__(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Backward flow of ``cur`` w.r.t. ``prev``.

        Args:
            prev: frame ``t-1``, RGB ``[3,H,W]`` or ``[1,3,H,W]`` in ``0..1``.
            cur: frame ``t``, same shape.

        Returns:
            ``[H,W,2]`` float32 on ``cur``'s device:
            ``cur(x, y) ≈ prev(x + u, y + v)``.

        Raises:
            InvalidImageError: frames of the wrong shape/dtype or different sizes.
        """
        p, c = self._pair(prev, cur)
        return self._match(c, p)[0]

    def bidirectional(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward and forward flow of the pair (RAFT runs both in one batch).

        Returns:
            ``(backward, forward)``, each ``[H,W,2]`` float32 on ``cur``'s
            device: ``cur(x) ≈ prev(x + backward(x))`` and
            ``prev(x) ≈ cur(x + forward(x))``.
        """
        p, c = self._pair(prev, cur)
        if self.method in RAFT_METHODS:
            both = self._match(torch.cat([c, p]), torch.cat([p, c]))
            return both[0], both[1]
        # OpenCV: the two directions at once, on two threads (it releases the GIL; at 720p one DIS match uses
        # a 16-core host's cores poorly). Each direction keeps its own DIS object: the same flows as in turn.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dream-flow-forward") as pool:
            forward = pool.submit(self._match, p, c, 1)
            backward = self._match(c, p, 0)
            return backward[0], forward.result()[0]

    # -- internals ----------------------------------------------------------

    def _pair(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = as_batch_frame(prev, "prev")
        c = as_batch_frame(cur, "cur")
        if p.shape != c.shape:
            raise InvalidImageError(
                f"Both frames of a flow pair must have the same size; got {tuple(p.shape[-2:])} and {tuple(c.shape[-2:])} (HxW)."
            )
        return (p.to(c.device) if p.device != c.device else p), c

    def _match(self, src: torch.Tensor, dst: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """Flow ``f`` ``[B,H,W,2]`` with ``src(x) ≈ dst(x + f(x))`` for ``[B,3,H,W]`` frames (``slot``: which
        DIS object, one per thread)."""
        height, width = src.shape[-2:]
        size = flow_size(height, width, self.max_side, self.scale)
        if self.method == "dis" and max(size) < _MIN_DIS_SIDE:
            raise InvalidImageError(
                f"The 'dis' flow method needs frames of at least {_MIN_DIS_SIDE} pixels on their longer side; these "
                f"are {size[1]}x{size[0]}{' at the flow size' if size != (height, width) else ''}. Use the "
                "'farneback' method, or larger frames.", parameter="flow_method",
            )
        if self.method in RAFT_METHODS:
            flow = self._match_raft(_resize_frames(src, size), _resize_frames(dst, size))
            return resize_flow(flow, (height, width)).float()
        # OpenCV: resized, made gray and matched on the host, so the flow is the same whichever device
        # the frames come from (a GPU's resize rounds differently), then moved to theirs.
        s, d = _resize_frames(src.cpu(), size), _resize_frames(dst.cpu(), size)
        flow = torch.stack([self._match_cv2(s[i : i + 1], d[i : i + 1], slot) for i in range(s.shape[0])])
        return resize_flow(flow, (height, width)).float().to(src.device)

    def _match_cv2(self, src: torch.Tensor, dst: torch.Tensor, slot: int = 0) -> torch.Tensor:
        cv2 = _import_cv2()
        a, b = _gray_u8(src), _gray_u8(dst)
        if self.method == "farneback":
            p = FARNEBACK_PARAMS
            out = cv2.calcOpticalFlowFarneback(
                a, b, None, p["pyr_scale"], p["levels"], p["winsize"], p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"]
            )
        else:
            if slot not in self._dis:
                preset = getattr(cv2, f"DISOpticalFlow_PRESET_{self.dis_preset.upper()}")
                self._dis[slot] = cv2.DISOpticalFlow_create(preset)
            out = self._dis[slot].calc(a, b, None)  # type: ignore[attr-defined]
        return torch.from_numpy(out)

    def _match_raft(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        assert self._raft is not None
        if next(self._raft.parameters()).device != src.device:
            self._raft = self._raft.to(src.device)
        return raft_flow(self._raft, src, dst, self.raft_iters)


def estimator_for(estimator: FlowEstimator | None, method: str, options: dict[str, object]) -> FlowEstimator:
    """The given estimator, or a new one; refuses options an existing estimator would ignore."""
    if estimator is None:
        return FlowEstimator(method, **options)  # type: ignore[arg-type]
    if options:
        raise InvalidParameterError(
            f"Options {sorted(options)} were given together with an estimator, which already fixes them; "
            "set them when creating the FlowEstimator instead."
        )
    return estimator


def compute_flow(
    prev: torch.Tensor,
    cur: torch.Tensor,
    method: str = DEFAULT_FLOW_METHOD,
    *,
    estimator: FlowEstimator | None = None,
    **options: object,
) -> torch.Tensor:
    """Backward flow of ``cur`` (frame ``t``) w.r.t. ``prev`` (frame ``t-1``).

    Args:
        prev: RGB ``[3,H,W]`` or ``[1,3,H,W]`` in ``0..1``.
        cur: same shape as ``prev``.
        method: one of :data:`FLOW_METHODS` (ignored when ``estimator`` is given).
        estimator: a :class:`FlowEstimator` to reuse (do this for RAFT: each
            call without one loads the network again).
        **options: passed to :class:`FlowEstimator` (``weights``,
            ``max_side``, ``scale``, ``dis_preset``, ...).

    Returns:
        ``[H,W,2]`` float32 on ``cur``'s device.

    Convention:
        ``cur(x, y) ≈ prev(x + u, y + v)``; ``warp(prev, flow) ≈ cur``.
        Content moving right by 3 px gives ``u = -3``.

    Raises:
        FlowError, InvalidImageError, InvalidParameterError, WeightsError.
    """
    est = estimator_for(estimator, method, options)
    return est(prev, cur)
