"""Optical flow between video frames: estimation, reliability masks, previews.

Convention (shared with :mod:`dream_core.warp`, which states it in full):

* Frames are RGB ``[3,H,W]`` or ``[1,3,H,W]`` (a clip ``[N,3,H,W]``) floating
  tensors in ``0..1``.
* A flow is ``[H,W,2]`` or ``[N,H,W,2]`` float32 in pixel units, channel 0 =
  x (column) displacement ``u``, channel 1 = y (row) displacement ``v``.
* The **backward flow of frame t** maps each pixel of frame ``t`` to where it
  came from in frame ``t-1``: ``frame_t(x, y) ≈ frame_{t-1}(x + u, y + v)``, so
  ``warp(frame_{t-1}, bw_t) ≈ frame_t``. It is what
  ``cv2.calcOpticalFlowFarneback(cur_gray, prev_gray, ...)`` returns (the
  original tool does exactly that) and what ``cv2.remap`` needs.
* The **forward flow of frame t** maps frame ``t-1`` pixels to where they go in
  frame ``t``: ``frame_{t-1}(x, y) ≈ frame_t(x + u, y + v)``.
* Example: content that moves 3 px right and 2 px up between ``t-1`` and ``t``
  (``cur = torch.roll(prev, (-2, 3), dims=(-2, -1))``) has backward flow
  ``(-3, +2)`` and forward flow ``(+3, -2)``.

Methods (:data:`FLOW_METHODS`): ``"dis"`` (OpenCV DIS, CPU), ``"farneback"``
(OpenCV Farneback with the original tool's parameters, CPU), ``"raft_small"``
and ``"raft_large"`` (torchvision RAFT, on the frames' device; weights from a
file or the torchvision download). Reuse one :class:`FlowEstimator` for a
whole clip: it holds the loaded RAFT network.

Memory: a :class:`FlowSet` keeps, per frame pair, the backward flow (8 bytes
per pixel), the forward flow (8, optional) and the reliability mask (4), all
float32 on the CPU by default: 20 bytes per pixel per pair, i.e. 18.4 MB per
pair at 1280x720 and about 1.8 GB for 100 frames (1.1 GB with
``keep_forward=False``). ``max_side``/``scale`` make the *estimation* cheaper;
the stored flow is always upsampled to the frame size.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from .errors import FlowError, InvalidImageError, InvalidParameterError, WeightsError, did_you_mean
from .warp import check_flow, inside_mask, warp

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

log = logging.getLogger(__name__)

FLOW_METHODS = ("dis", "farneback", "raft_small", "raft_large")
RAFT_METHODS = ("raft_small", "raft_large")

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

# Ruder et al. 2016 (consistencyChecker.cpp, coefficients from Sundaram et al.).
CONSISTENCY_REL = 0.01
CONSISTENCY_ABS = 0.5
MOTION_EDGE_REL = 0.01
MOTION_EDGE_ABS = 0.002

# RAFT works at 1/8 resolution: sides must be multiples of 8, and torchvision's
# correlation pyramid needs feature maps of at least 16 cells, i.e. 128 px.
# Smaller frames are padded (replicate) up to that and cropped back.
_RAFT_MULTIPLE = 8
_RAFT_MIN_SIDE = 128
_MIN_FLOW_SIDE = 8

ProgressCallback = Callable[[int, "int | None"], None]


# --------------------------------------------------------------------------- helpers


def _as_batch_frame(frame: torch.Tensor, name: str) -> torch.Tensor:
    """Validate an RGB frame ``[3,H,W]``/``[1,3,H,W]`` and return it as ``[1,3,H,W]``."""
    if not isinstance(frame, torch.Tensor):
        raise InvalidImageError(f"{name} must be a torch.Tensor [3,H,W] or [1,3,H,W]; got {type(frame).__name__}.")
    if frame.dim() == 3:
        frame = frame.unsqueeze(0)
    if frame.dim() != 4 or frame.shape[0] != 1 or frame.shape[1] != 3:
        raise InvalidImageError(
            f"{name} must be one RGB frame [3,H,W] or [1,3,H,W] (channels first, 0..1); got {tuple(frame.shape)}. "
            "ComfyUI IMAGE tensors [B,H,W,3] must be permuted with .permute(0, 3, 1, 2)."
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
        factor = min(1.0, int(max_side) / max(height, width))
    elif scale is not None:
        factor = float(scale)
    else:
        return height, width
    h, w = max(1, round(height * factor)), max(1, round(width * factor))
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
    gain = torch.tensor([w / ww, h / hh], device=f.device, dtype=f.dtype)
    out = out.permute(0, 2, 3, 1) * gain
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


def _raft_spec(arch: str):
    from torchvision.models import optical_flow as tvof

    if arch == "raft_small":
        return tvof.raft_small, tvof.Raft_Small_Weights.DEFAULT
    return tvof.raft_large, tvof.Raft_Large_Weights.DEFAULT


def load_raft(arch: str = "raft_large", weights: str | os.PathLike[str] | None = None) -> "nn.Module":
    """Build a torchvision RAFT network and load its weights (on the CPU, eval mode).

    Args:
        arch: ``"raft_small"`` or ``"raft_large"``.
        weights: path of a state-dict file (``.pth``/``.pt``/``.safetensors``,
            read safely without unpickling code), or ``None`` to use the
            torchvision weights (downloaded once into the torch hub cache).

    Returns:
        The network, ``eval()`` on the CPU.

    Raises:
        FlowError: ``arch`` is not a RAFT method.
        WeightsError: the file is missing/unreadable/for another architecture,
            or the download failed (the message gives the URL to fetch by hand).
    """
    if arch not in RAFT_METHODS:
        raise FlowError(f"Unknown RAFT architecture {arch!r}; choose one of {RAFT_METHODS}.{did_you_mean(arch, RAFT_METHODS)}")
    from .models.weights import load_into, read_state_dict

    builder, enum_weights = _raft_spec(arch)
    net = builder(weights=None, progress=False)
    if weights is not None:
        state = read_state_dict(weights)
        source = os.fspath(weights)
    else:
        url = enum_weights.url
        try:
            state = enum_weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError, ...)
            hub = os.path.join(torch.hub.get_dir(), "checkpoints")
            raise WeightsError(
                f"Could not download the {arch} optical-flow weights from {url} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}). "
                f"Download that file on a machine with internet and either put it in {hub} "
                "or pass its path as the RAFT weights; or pick the 'dis' or 'farneback' flow method, which need no weights."
            ) from exc
        source = url
    load_into(net, state, source=source, arch=arch)
    return net.eval()


# --------------------------------------------------------------------------- estimator


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
                f"Unknown optical flow method {method!r}; choose one of {FLOW_METHODS}.{did_you_mean(str(method), FLOW_METHODS)}"
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
        self._dis = None
        self._raft: "nn.Module | None" = None
        if method in RAFT_METHODS:
            self._raft = (raft_model if raft_model is not None else load_raft(method, weights)).eval()

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
        return self._match(c, p)[0], self._match(p, c)[0]

    # -- internals ----------------------------------------------------------

    def _pair(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = _as_batch_frame(prev, "prev")
        c = _as_batch_frame(cur, "cur")
        if p.shape != c.shape:
            raise InvalidImageError(
                f"Both frames of a flow pair must have the same size; got {tuple(p.shape[-2:])} and {tuple(c.shape[-2:])} (HxW)."
            )
        return (p.to(c.device) if p.device != c.device else p), c

    def _match(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Flow ``f`` ``[B,H,W,2]`` with ``src(x) ≈ dst(x + f(x))`` for ``[B,3,H,W]`` frames."""
        height, width = src.shape[-2:]
        size = flow_size(height, width, self.max_side, self.scale)
        s, d = _resize_frames(src, size), _resize_frames(dst, size)
        if self.method in RAFT_METHODS:
            flow = self._match_raft(s, d)
        else:
            flow = torch.stack([self._match_cv2(s[i : i + 1], d[i : i + 1]) for i in range(s.shape[0])])
            flow = flow.to(src.device)
        return resize_flow(flow, (height, width)).float()

    def _match_cv2(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        cv2 = _import_cv2()
        a, b = _gray_u8(src), _gray_u8(dst)
        if self.method == "farneback":
            p = FARNEBACK_PARAMS
            out = cv2.calcOpticalFlowFarneback(
                a, b, None, p["pyr_scale"], p["levels"], p["winsize"], p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"]
            )
        else:
            if self._dis is None:
                preset = getattr(cv2, f"DISOpticalFlow_PRESET_{self.dis_preset.upper()}")
                self._dis = cv2.DISOpticalFlow_create(preset)
            out = self._dis.calc(a, b, None)
        return torch.from_numpy(out)

    def _match_raft(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        assert self._raft is not None
        device = src.device
        if next(self._raft.parameters()).device != device:
            self._raft = self._raft.to(device)
        h, w = src.shape[-2:]
        ph = max(_RAFT_MIN_SIDE, math.ceil(h / _RAFT_MULTIPLE) * _RAFT_MULTIPLE) - h
        pw = max(_RAFT_MIN_SIDE, math.ceil(w / _RAFT_MULTIPLE) * _RAFT_MULTIPLE) - w
        with torch.inference_mode():
            a = src.float() * 2.0 - 1.0
            b = dst.float() * 2.0 - 1.0
            if ph or pw:
                a = F.pad(a, (0, pw, 0, ph), mode="replicate")
                b = F.pad(b, (0, pw, 0, ph), mode="replicate")
            flows = self._raft(a, b, num_flow_updates=self.raft_iters)
            flow = flows[-1][:, :, :h, :w]
        return flow.permute(0, 2, 3, 1).clone()


def _estimator(estimator: FlowEstimator | None, method: str, options: dict[str, object]) -> FlowEstimator:
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
    est = _estimator(estimator, method, options)
    return est(prev, cur)


# --------------------------------------------------------------------------- reliability


def motion_edges(flow: torch.Tensor) -> torch.Tensor:
    """Squared flow gradient ``|grad u|^2 + |grad v|^2`` (central differences).

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]``.

    Returns:
        ``[H,W]`` or ``[N,H,W]``, same dtype and device; one-sided at the border.
    """
    single = flow.dim() == 3
    f = check_flow(flow).permute(0, 3, 1, 2)  # [N,2,H,W]
    padded = F.pad(f, (1, 1, 1, 1), mode="replicate")
    dx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) * 0.5
    dy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) * 0.5
    edges = (dx * dx + dy * dy).sum(dim=1)
    return edges[0] if single else edges


def reliability_mask(backward: torch.Tensor, forward: torch.Tensor | None = None) -> torch.Tensor:
    """Which pixels of frame ``t`` the backward flow carries reliably from ``t-1``.

    A pixel ``x`` of frame ``t`` is unreliable (0) when any of these holds
    (Ruder et al. 2016, thresholds from their ``consistencyChecker``), with
    ``w^ = backward(x)`` and ``w~ = forward(x + w^)`` (the forward flow of
    frame ``t-1`` sampled where ``x`` came from, bilinearly):

    * forward-backward disagreement (occlusion):
      ``|w~ + w^|^2 >= 0.01 (|w~|^2 + |w^|^2) + 0.5``;
    * motion boundary: ``|grad u|^2 + |grad v|^2 > 0.01 |w^|^2 + 0.002``
      (gradients of the backward flow, central differences);
    * ``x + w^`` outside frame ``t-1`` (regions entering at the border).

    Args:
        backward: ``[H,W,2]`` or ``[N,H,W,2]`` backward flows of frames ``t``.
        forward: forward flows, same shape, or ``None`` to skip the
            forward-backward test (motion boundaries and borders only).

    Returns:
        ``[H,W]`` or ``[N,H,W]`` float 0/1 mask, dtype and device of ``backward``.

    Convention:
        See the module docstring: ``frame_t(x) ≈ frame_{t-1}(x + backward(x))``
        and ``frame_{t-1}(x) ≈ frame_t(x + forward(x))``, so a consistent pair
        has ``w~ ≈ -w^``.

    Raises:
        FlowError: shapes differ or are not flows.
    """
    single = backward.dim() == 3
    bw = check_flow(backward, "backward flow")
    mag_bw = (bw * bw).sum(dim=-1)
    ok = inside_mask(bw).bool()
    ok &= motion_edges(bw) <= MOTION_EDGE_REL * mag_bw + MOTION_EDGE_ABS
    if forward is not None:
        fw = check_flow(forward, "forward flow")
        if fw.shape != bw.shape:
            raise FlowError(f"forward flow {tuple(fw.shape)} and backward flow {tuple(bw.shape)} must have the same shape.")
        fw = fw.to(device=bw.device, dtype=bw.dtype)
        fw_at = warp(fw.permute(0, 3, 1, 2), bw, padding_mode="border").permute(0, 2, 3, 1)
        total = fw_at + bw
        ok &= (total * total).sum(dim=-1) < CONSISTENCY_REL * ((fw_at * fw_at).sum(dim=-1) + mag_bw) + CONSISTENCY_ABS
    out = ok.to(bw.dtype)
    return out[0] if single else out


# --------------------------------------------------------------------------- FlowSet


@dataclasses.dataclass
class FlowSet:
    """Flows of a clip of ``N`` frames: one entry per pair ``(t-1, t)``, ``t = 1..N-1``.

    Attributes:
        backward: ``[N-1,H,W,2]`` float32; entry ``t-1`` is the backward flow
            of frame ``t``: ``frame_t(x) ≈ frame_{t-1}(x + backward[t-1](x))``.
        forward: ``[N-1,H,W,2]`` float32 forward flows
            (``frame_{t-1}(x) ≈ frame_t(x + forward[t-1](x))``), or ``None``
            when not kept.
        reliable: ``[N-1,H,W]`` float 0/1; entry ``t-1`` marks the pixels of
            frame ``t`` whose backward flow is trustworthy
            (:func:`reliability_mask`).
        method: the method that produced the flows (one of :data:`FLOW_METHODS`).
        size: ``(H, W)`` of the frames; derived from ``backward`` when ``None``.

    Convention:
        Index ``i`` of every tensor belongs to frame ``t = i + 1``; use
        :meth:`for_frame` to index by frame number. Memory: 20 bytes per
        pixel per pair with forward flows, 12 without (see module docstring).

    Raises:
        FlowError: tensors of inconsistent shapes (from ``__post_init__``).
    """

    backward: torch.Tensor
    forward: torch.Tensor | None
    reliable: torch.Tensor
    method: str = "unknown"
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        bw = self.backward
        if not isinstance(bw, torch.Tensor) or bw.dim() != 4 or bw.shape[-1] != 2 or not bw.is_floating_point():
            shape = tuple(bw.shape) if isinstance(bw, torch.Tensor) else type(bw).__name__
            raise FlowError(f"FlowSet.backward must be a floating [N-1,H,W,2] tensor; got {shape}.")
        n, h, w, _ = bw.shape
        if self.forward is not None and (not isinstance(self.forward, torch.Tensor) or self.forward.shape != bw.shape):
            shape = tuple(self.forward.shape) if isinstance(self.forward, torch.Tensor) else type(self.forward).__name__
            raise FlowError(f"FlowSet.forward must match backward {tuple(bw.shape)}; got {shape}.")
        rel = self.reliable
        if not isinstance(rel, torch.Tensor) or tuple(rel.shape) != (n, h, w):
            shape = tuple(rel.shape) if isinstance(rel, torch.Tensor) else type(rel).__name__
            raise FlowError(f"FlowSet.reliable must be [N-1,H,W] = {(n, h, w)}; got {shape}.")
        if self.size is None:
            self.size = (h, w)
        elif tuple(self.size) != (h, w):
            raise FlowError(f"FlowSet.size {tuple(self.size)} does not match the flows' {(h, w)} (H, W).")
        self.size = (int(self.size[0]), int(self.size[1]))

    def __len__(self) -> int:
        """Number of frame pairs, ``N - 1``."""
        return int(self.backward.shape[0])

    @property
    def num_frames(self) -> int:
        """Number of frames the flows were computed for, ``N``."""
        return len(self) + 1

    @property
    def height(self) -> int:
        return self.size[0]  # type: ignore[index]

    @property
    def width(self) -> int:
        return self.size[1]  # type: ignore[index]

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        tensors = [self.backward, self.reliable] + ([self.forward] if self.forward is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> "FlowSet":
        """A copy with every tensor on ``device`` (``self`` if already there)."""
        device = torch.device(device)
        if self.backward.device == device:
            return self
        return dataclasses.replace(
            self,
            backward=self.backward.to(device),
            forward=None if self.forward is None else self.forward.to(device),
            reliable=self.reliable.to(device),
        )

    def for_frame(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(backward [H,W,2], reliable [H,W])`` of frame ``t`` (``1 <= t <= N-1``).

        Raises:
            FlowError: ``t`` outside ``1 .. N-1`` (frame 0 has no previous frame).
        """
        if not 1 <= t <= len(self):
            raise FlowError(
                f"No flow for frame {t}: this flow covers frames 1..{len(self)} of {self.num_frames} (frame 0 has none)."
            )
        return self.backward[t - 1], self.reliable[t - 1]

    def check_matches(self, num_frames: int | None, height: int, width: int, producer: str = "compute_flows()") -> None:
        """Check that these flows belong to ``num_frames`` frames of ``width`` x ``height``.

        Args:
            num_frames: the number of frames given (``None`` to check the size only).
            height: their height.
            width: their width.
            producer: what computed the flow, named in the remedy (e.g.
                ``"the DeepDream Optical Flow node"``).

        Raises:
            FlowError: e.g. "flow was computed for 12 frames of 64x64 but 10
                frames of 64x64 were given; recompute it with the DeepDream
                Optical Flow node on these frames" (sizes are W x H).
        """
        count_ok = num_frames is None or int(num_frames) == self.num_frames
        if count_ok and (int(height), int(width)) == self.size:
            return
        given = "frames" if num_frames is None else f"{int(num_frames)} frames"
        raise FlowError(
            f"flow was computed for {self.num_frames} frames of {self.width}x{self.height} but {given} of "
            f"{int(width)}x{int(height)} were given; recompute it with {producer} on these frames"
        )


def _iter_frames(frames: torch.Tensor | Iterable[torch.Tensor]) -> tuple[Iterable[torch.Tensor], int | None]:
    if isinstance(frames, torch.Tensor):
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise InvalidImageError(
                f"frames must be an RGB clip [N,3,H,W] (or an iterable of [3,H,W] frames); got {tuple(frames.shape)}."
            )
        return (frames[i : i + 1] for i in range(frames.shape[0])), int(frames.shape[0])
    if not isinstance(frames, Iterable):
        raise InvalidImageError(f"frames must be a tensor [N,3,H,W] or an iterable of frames; got {type(frames).__name__}.")
    total = len(frames) if isinstance(frames, Sequence) else None
    return frames, total


class _PairStore:
    """Collects per-pair flows on the storage device.

    With a known pair count the result tensors are allocated once and filled
    (peak memory = the result); otherwise pairs are listed and stacked at the
    end (peak = twice the result, for a moment).
    """

    def __init__(self, pairs: int | None, size: tuple[int, int], keep_forward: bool, device: torch.device) -> None:
        h, w = size
        self.count = 0
        self.keep_forward = keep_forward
        self.device = device
        self.size = size
        self.prealloc = pairs is not None
        n = pairs or 0
        self.backward: torch.Tensor | list[torch.Tensor] = torch.empty(n, h, w, 2, device=device) if self.prealloc else []
        self.forward: torch.Tensor | list[torch.Tensor] = (
            torch.empty(n, h, w, 2, device=device) if self.prealloc and keep_forward else []
        )
        self.reliable: torch.Tensor | list[torch.Tensor] = torch.empty(n, h, w, device=device) if self.prealloc else []

    def add(self, bw: torch.Tensor, fw: torch.Tensor | None, rel: torch.Tensor) -> None:
        items = [(self.backward, bw), (self.reliable, rel)] + ([(self.forward, fw)] if fw is not None else [])
        for target, value in items:
            if isinstance(target, list):
                target.append(value.to(self.device, torch.float32))
            else:
                target[self.count].copy_(value)
        self.count += 1

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        h, w = self.size

        def done(t: torch.Tensor | list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
            if isinstance(t, list):
                return torch.stack(t) if t else torch.zeros(0, *shape, device=self.device)
            return t[: self.count]

        forward = done(self.forward, (h, w, 2)) if self.keep_forward else None
        return done(self.backward, (h, w, 2)), forward, done(self.reliable, (h, w))


def compute_flows(
    frames: torch.Tensor | Iterable[torch.Tensor],
    method: str = DEFAULT_FLOW_METHOD,
    *,
    estimator: FlowEstimator | None = None,
    consistency: bool = True,
    keep_forward: bool = True,
    storage_device: torch.device | str = "cpu",
    on_pair: ProgressCallback | None = None,
    **options: object,
) -> FlowSet:
    """Backward flows, forward flows and reliability masks of a whole clip.

    Args:
        frames: RGB clip ``[N,3,H,W]`` in ``0..1``, or an iterable of
            ``[3,H,W]``/``[1,3,H,W]`` frames (streamed: only two frames are
            held at a time; flows are stacked at the end).
        method: one of :data:`FLOW_METHODS` (ignored when ``estimator`` is given).
        estimator: a :class:`FlowEstimator` to reuse.
        consistency: also compute forward flows and use the forward-backward
            test in :func:`reliability_mask` (doubles the estimation time);
            ``False`` keeps only the motion-boundary and border tests.
        keep_forward: store the forward flows in the result (when computed).
        storage_device: where the stored flows live (CPU by default; estimation
            itself runs on the frames' device for RAFT).
        on_pair: called as ``on_pair(done, total)`` after each pair (``total``
            is ``None`` for an iterable without ``len``); may raise
            :class:`~dream_core.errors.DreamCancelled` to stop.
        **options: passed to :class:`FlowEstimator` (``weights``,
            ``max_side``, ``scale``, ``dis_preset``, ...).

    Returns:
        A :class:`FlowSet` with ``N - 1`` entries (empty for one frame).

    Convention:
        ``result.backward[t-1]`` is the backward flow of frame ``t``:
        ``frame_t ≈ warp(frame_{t-1}, result.backward[t-1])``.

    Raises:
        InvalidImageError: no frames, frames of different sizes or bad shapes.
        FlowError, InvalidParameterError, WeightsError: see :class:`FlowEstimator`.
    """
    est = _estimator(estimator, method, options)
    storage = torch.device(storage_device)
    stream, total_frames = _iter_frames(frames)
    total_pairs = None if total_frames is None else max(0, total_frames - 1)
    store: _PairStore | None = None
    keep = consistency and keep_forward
    prev: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    started = time.perf_counter()
    for index, frame in enumerate(stream):
        cur = _as_batch_frame(frame, f"frame {index}")
        if size is None:
            size = (int(cur.shape[-2]), int(cur.shape[-1]))
            store = _PairStore(total_pairs, size, keep, storage)
        elif tuple(cur.shape[-2:]) != size:
            raise InvalidImageError(
                f"All frames must have the same size; frame 0 is {size[1]}x{size[0]} but frame {index} is "
                f"{cur.shape[-1]}x{cur.shape[-2]} (WxH)."
            )
        if prev is not None:
            if consistency:
                bw, fw = est.bidirectional(prev, cur)
                rel = reliability_mask(bw, fw)
            else:
                bw, fw = est(prev, cur), None
                rel = reliability_mask(bw)
            assert store is not None
            store.add(bw, fw if keep else None, rel)
            if on_pair is not None:
                on_pair(store.count, total_pairs)
        prev = cur
    if size is None or store is None:
        raise InvalidImageError("No frames were given to compute optical flow on; at least one frame is needed.")
    h, w = size
    backward, forward, reliable = store.tensors()
    result = FlowSet(backward=backward, forward=forward, reliable=reliable, method=est.method, size=size)
    if len(result):
        log.info(
            "%s flow for %d frames of %dx%d in %.1f s; %.1f%% of pixels reliable; %.0f MB stored on %s",
            est.method, result.num_frames, w, h, time.perf_counter() - started,
            100.0 * float(reliable.mean()), result.nbytes / 1e6, storage,
        )
    return result


# --------------------------------------------------------------------------- preview


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
