"""Flow-warped dreaming of a frame sequence.

Three modes (:data:`VIDEO_MODES`):

``stable`` (default, ours)
    The dream *difference* of frame ``t-1`` (dreamed minus raw) is warped onto
    frame ``t`` with the backward flow and multiplied by ``carry`` (< 1, so old
    dreams fade instead of compounding). Where the flow is unreliable
    (occlusions, motion boundaries, regions entering the frame) the carried
    difference is dropped and the frame starts from its raw pixels. Frame
    ``t`` is dreamed from ``raw_t + carry * reliable * warped_diff`` with fewer
    iterations (``later_iterations``), and after every step its reliable pixels
    are pulled towards ``raw_t + warped_diff`` (``temporal_weight``), which keeps
    patterns attached to the scene.
``seed``
    Exactly the original tool's rule (zhuyuezx/neural-dream): warp the dream
    difference with the backward flow (zeros outside the frame), add it to raw
    frame ``t`` unchanged (no decay, no occlusion test), dream that.
``independent``
    Every frame dreamed from its raw pixels, no flow: the flicker baseline.

The first frame of the range is dreamed normally, or taken from a predefined
start image (the dreamed version of that frame, e.g. the last frame of an
earlier run).

Everything stays on the model's device between frames: the previous raw and
dreamed frames live there, flows are moved there once per frame, and hooks are
registered once for the whole clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Optional

import torch

from .dream import DreamSettings, StepCallback, TemporalAnchor, _resolve_objective, check_image_for_dream, dream_image
from .errors import FlowError, InvalidImageError, InvalidParameterError
from .features import FeatureHooks, grad_enabled_outside_inference
from .image_ops import resize, to_rgb
from .models.spec import DreamModel
from .objectives import Objective
from .flow.warp import warp, warp_with_mask

log = logging.getLogger(__name__)

VIDEO_MODES = ("stable", "seed", "independent")
DEFAULT_VIDEO_MODE = "stable"

#: ``on_frame(index, total, dreamed [1,3,H,W])`` after each finished frame (index into the range, 0-based).
FrameCallback = Callable[[int, int, torch.Tensor], None]


@dataclass(frozen=True)
class VideoSettings:
    """How frames are chained.

    Attributes:
        mode: one of :data:`VIDEO_MODES`.
        carry: ``stable``: fraction of the warped previous dream difference kept as the next
            frame's start (``0..1``). Higher -> steadier but slower to adapt to new content.
        temporal_weight: ``stable``: per-step pull of reliable pixels towards the warped
            previous dream (``0..1``). Higher -> less flicker, less new detail.
        later_iterations: ``stable``: iterations for frames after the first, as a fraction
            of ``num_iterations`` (the carried dream already holds most of the pattern).
        occlusion_feather: ``stable``: blur (pixels) of the reliability mask edge, so
            occluded regions blend in without seams.
    """

    mode: str = DEFAULT_VIDEO_MODE
    carry: float = 0.95
    temporal_weight: float = 0.3
    later_iterations: float = 0.6
    occlusion_feather: float = 2.0

    def validate(self) -> None:
        if self.mode not in VIDEO_MODES:
            raise InvalidParameterError(f"Unknown video mode {self.mode!r}; choose one of {', '.join(VIDEO_MODES)}.")
        for name in ("carry", "temporal_weight"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"{name} must be in 0..1; got {v}.")
        if not 0.0 < self.later_iterations <= 1.0:
            raise InvalidParameterError(f"later_iterations must be in (0, 1]; got {self.later_iterations}.")
        if self.occlusion_feather < 0:
            raise InvalidParameterError(f"occlusion_feather must be >= 0; got {self.occlusion_feather}.")

    @property
    def needs_flow(self) -> bool:
        return self.mode != "independent"


class FrameDreamer:
    """Dreams frames one after the other, carrying the dream along the optical flow.

    Use as a context manager (feature hooks are registered once for the clip)::

        with FrameDreamer(model, "block10_dw", settings, VideoSettings()) as fd:
            for t, frame in enumerate(frames):
                out = fd.dream_next(frame, flow_bw if t else None, reliable if t else None)

    Args:
        model: loaded model (its device is the compute device).
        objective: objective or shorthand string (``None``: the model's default).
        settings: per-frame dream settings (seed, octaves, ...).
        video: how frames are chained (:class:`VideoSettings`).
        start_image: optional RGB ``[1,3,H,W]`` taken as the dreamed first frame
            (resized to the frames' size with a warning when it differs).
        on_step: per-step callback forwarded to :func:`dream_image` (progress, cancel).
    """

    def __init__(
        self,
        model: DreamModel,
        objective: Objective | str | None,
        settings: DreamSettings,
        video: VideoSettings = VideoSettings(),
        *,
        start_image: Optional[torch.Tensor] = None,
        on_step: Optional[StepCallback] = None,
    ) -> None:
        settings.validate()
        video.validate()
        self.model = model
        self.objective = _resolve_objective(model, objective)
        self.settings = settings
        self.video = video
        self.start_image = start_image
        self.on_step = on_step
        self.prev_raw: Optional[torch.Tensor] = None
        self.prev_dream: Optional[torch.Tensor] = None
        self._hooks: Optional[FeatureHooks] = None
        later = max(1, round(settings.num_iterations * video.later_iterations))
        self._later_settings = settings.with_(num_iterations=later) if video.mode == "stable" else settings

    def __enter__(self) -> "FrameDreamer":
        self._hooks = FeatureHooks(self.model, self.objective.layers(), optimize=True).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    @property
    def frames_done(self) -> bool:
        return self.prev_dream is not None

    def restore(self, prev_raw: torch.Tensor, prev_dream: torch.Tensor) -> None:
        """Continue a clip from a saved state (raw and dreamed previous frame, ``[1,3,H,W]``)."""
        dev, dt = self.model.device, self.model.dtype
        self.prev_raw = to_rgb(prev_raw).to(device=dev, dtype=dt)
        self.prev_dream = to_rgb(prev_dream).to(device=dev, dtype=dt)

    def dream_next(
        self,
        frame: torch.Tensor,
        backward_flow: Optional[torch.Tensor] = None,
        reliable: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Dream the next frame.

        Args:
            frame: raw RGB ``[1,3,H,W]`` in ``0..1`` (any device; moved to the model's).
            backward_flow: ``[H,W,2]`` backward flow of this frame w.r.t. the previous
                one (``frame(x) ≈ prev(x + flow(x))``); ignored for the first frame and in
                ``independent`` mode, required otherwise.
            reliable: ``[H,W]`` 0/1 reliability of that flow (``stable`` mode; all
                reliable when ``None``).

        Returns:
            Dreamed frame ``[1,3,H,W]`` on the model's device (float, ``0..1``).
        """
        if self._hooks is None:
            raise RuntimeError("FrameDreamer.dream_next() must be called inside its 'with' block")
        dev, dt = self.model.device, self.model.dtype
        with grad_enabled_outside_inference():
            raw = to_rgb(frame).to(device=dev, dtype=dt).clone()
            if raw.shape[0] != 1:
                raise InvalidImageError(f"dream_next takes one frame [1,3,H,W]; got batch {raw.shape[0]}.")
            if self.prev_dream is not None and raw.shape[-2:] != self.prev_dream.shape[-2:]:
                raise InvalidImageError(
                    f"All frames must have the same size; got {raw.shape[-1]}x{raw.shape[-2]} after "
                    f"{self.prev_dream.shape[-1]}x{self.prev_dream.shape[-2]} (WxH). Resize the clip first."
                )
            if self.prev_dream is None:
                out = self._first(raw)
            elif self.video.mode == "independent":
                out = self._dream(raw, self.settings)
            else:
                if backward_flow is None:
                    raise FlowError(
                        f"Video mode '{self.video.mode}' needs the backward flow of every frame after the first; "
                        "none was given. Compute it (DeepDream Optical Flow node / compute_flows) or use mode 'independent'."
                    )
                flow = backward_flow.to(device=dev, dtype=dt)
                if self.video.mode == "seed":
                    out = self._seed_rule(raw, flow)
                else:
                    rel = None if reliable is None else reliable.to(device=dev, dtype=dt)
                    out = self._stable(raw, flow, rel)
            self.prev_raw, self.prev_dream = raw, out.detach()
        return self.prev_dream

    # -- modes ---------------------------------------------------------------

    def _dream(self, start: torch.Tensor, settings: DreamSettings, anchor: Optional[TemporalAnchor] = None) -> torch.Tensor:
        return dream_image(self.model, start, self.objective, settings, anchor=anchor, on_step=self.on_step, hooks=self._hooks)

    def _first(self, raw: torch.Tensor) -> torch.Tensor:
        if self.start_image is None:
            check_image_for_dream(raw, self.model, self.settings)
            return self._dream(raw, self.settings)
        start = to_rgb(self.start_image).to(device=raw.device, dtype=raw.dtype)[:1]
        if start.shape[-2:] != raw.shape[-2:]:
            log.warning(
                "Start image is %dx%d but frames are %dx%d; resizing it to the frame size.",
                start.shape[-1], start.shape[-2], raw.shape[-1], raw.shape[-2],
            )
            start = resize(start, tuple(raw.shape[-2:]))
        return start.clamp(0, 1)

    def _seed_rule(self, raw: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        diff = self.prev_dream - self.prev_raw
        carried = warp(diff, flow, padding_mode="zeros")
        return self._dream((raw + carried).clamp(0, 1), self.settings)

    def _stable(self, raw: torch.Tensor, flow: torch.Tensor, reliable: Optional[torch.Tensor]) -> torch.Tensor:
        diff = self.prev_dream - self.prev_raw
        carried, inside = warp_with_mask(diff, flow, padding_mode="border")
        weight = inside[:, None]
        if reliable is not None:
            weight = weight * reliable.view(1, 1, *reliable.shape[-2:])
        if self.video.occlusion_feather > 0:
            from .image_ops import gaussian_blur

            # Erode-then-blur: a soft edge that never reaches into unreliable pixels.
            weight = gaussian_blur(weight, self.video.occlusion_feather).clamp(0, 1) * weight
        target = (raw + carried).clamp(0, 1)
        start = (raw + self.video.carry * weight * carried).clamp(0, 1)
        anchor = TemporalAnchor(target, weight, self.video.temporal_weight) if self.video.temporal_weight > 0 else None
        return self._dream(start, self._later_settings, anchor)


def dream_frames(
    model: DreamModel,
    frames: Iterable[torch.Tensor],
    objective: Objective | str | None,
    settings: DreamSettings,
    video: VideoSettings = VideoSettings(),
    *,
    flows: Optional[Iterable[tuple[torch.Tensor, Optional[torch.Tensor]]]] = None,
    flow_estimator: Optional[object] = None,
    start_image: Optional[torch.Tensor] = None,
    on_step: Optional[StepCallback] = None,
) -> Iterator[torch.Tensor]:
    """Dream a sequence lazily, one frame at a time (constant memory).

    Args:
        frames: iterable of raw RGB ``[1,3,H,W]`` (or ``[3,H,W]``) frames in ``0..1``.
        flows: per-frame ``(backward_flow [H,W,2], reliable [H,W] or None)`` for frames
            ``1..N-1`` (i.e. one fewer than frames), e.g. ``zip(flowset.backward, flowset.reliable)``.
        flow_estimator: alternatively a :class:`~dream_core.flow.FlowEstimator`; flows are
            then computed on the fly between consecutive raw frames (bidirectional, with
            the reliability mask).
        start_image: optional dreamed version of the first frame.

    Yields:
        Dreamed frames ``[1,3,H,W]`` on the model's device.
    """
    video.validate()
    flow_iter = iter(flows) if flows is not None else None
    if video.needs_flow and flow_iter is None and flow_estimator is None:
        raise FlowError(f"Video mode '{video.mode}' needs optical flow: pass flows or a flow_estimator.")
    with FrameDreamer(model, objective, settings, video, start_image=start_image, on_step=on_step) as fd:
        prev_raw: Optional[torch.Tensor] = None
        for index, frame in enumerate(frames):
            frame = frame if frame.dim() == 4 else frame.unsqueeze(0)
            bw = rel = None
            if index > 0 and video.needs_flow:
                if flow_iter is not None:
                    try:
                        bw, rel = next(flow_iter)
                    except StopIteration:
                        raise FlowError(
                            f"Flow ran out at frame {index}: it has fewer entries than frames - 1. "
                            "Recompute the flow on these frames."
                        ) from None
                else:
                    from .flow import reliability_mask

                    bw, fw = flow_estimator.bidirectional(prev_raw, frame)  # type: ignore[union-attr]
                    rel = reliability_mask(bw, fw) if video.mode == "stable" else None
            yield fd.dream_next(frame, bw, rel)
            prev_raw = frame
