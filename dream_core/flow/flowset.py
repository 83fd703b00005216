"""Flows of a whole clip: :class:`FlowSet` and :func:`compute_flows`.

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
import time
from typing import Callable, Iterable, Sequence

import torch

from ..errors import FlowError, InvalidImageError
from .estimate import DEFAULT_FLOW_METHOD, FlowEstimator, as_batch_frame, estimator_for
from .reliability import flow_pair

log = logging.getLogger(__name__)

#: ``on_pair(done, total)`` after each frame pair (``total`` is ``None`` for an iterable without ``len``).
ProgressCallback = Callable[[int, "int | None"], None]




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
        for name, t in (("backward", bw), ("forward", self.forward), ("reliable", rel)):
            if t is not None and not all(bool(torch.isfinite(f).all()) for f in t):  # once, frame by frame (memory)
                raise FlowError(f"FlowSet.{name} holds NaN or infinite values; recompute the flows (compute_flows).")
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

    def check_matches(self, num_frames: int | None, height: int, width: int) -> None:
        """Check that these flows belong to ``num_frames`` frames of ``width`` x ``height``.

        Args:
            num_frames: the number of frames given (``None`` to check the size only).
            height: their height.
            width: their width.

        Raises:
            FlowError: (``parameter="flow"``) e.g. "flow was computed for 12 frames of
                64x64 but 10 frames of 64x64 were given; recompute it on these frames."
                (sizes are W x H).
        """
        count_ok = num_frames is None or int(num_frames) == self.num_frames
        if count_ok and (int(height), int(width)) == self.size:
            return
        given = "frames" if num_frames is None else f"{int(num_frames)} frames"
        raise FlowError(
            f"flow was computed for {self.num_frames} frames of {self.width}x{self.height} but {given} of "
            f"{int(width)}x{int(height)} were given; recompute it on these frames.",
            parameter="flow",
        )


def iter_frames(frames: torch.Tensor | Iterable[torch.Tensor]) -> tuple[Iterable[torch.Tensor], int | None]:
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
    est = estimator_for(estimator, method, options)
    storage = torch.device(storage_device)
    stream, total_frames = iter_frames(frames)
    total_pairs = None if total_frames is None else max(0, total_frames - 1)
    store: _PairStore | None = None
    keep = consistency and keep_forward
    prev: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    started = time.perf_counter()
    for index, frame in enumerate(stream):
        cur = as_batch_frame(frame, f"frame {index}")
        if size is None:
            size = (int(cur.shape[-2]), int(cur.shape[-1]))
            store = _PairStore(total_pairs, size, keep, storage)
        elif tuple(cur.shape[-2:]) != size:
            raise InvalidImageError(
                f"All frames must have the same size; frame 0 is {size[1]}x{size[0]} but frame {index} is "
                f"{cur.shape[-1]}x{cur.shape[-2]} (WxH)."
            )
        if prev is not None:
            pair = flow_pair(est, prev, cur, consistency=consistency)
            assert store is not None
            store.add(pair.backward, pair.forward if keep else None, pair.reliable)
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

