"""Dreaming one frame after another, carrying the previous dream along the optical flow.

A :class:`FrameDreamer` holds what lasts for a whole clip: the model's feature
hooks (registered once), the objective, the settings, the previous raw and
dreamed frame, and the tile size that fitted in memory
(:class:`~dream_core.dream.TileBudget`). The frame loop
(:func:`dream_core.video.loop.dream_clip`) drives it; :meth:`FrameDreamer.dream_next`
is the one place a frame is dreamed.

The first frame of a run is dreamed normally, or taken from a predefined start
image (the dreamed version of that frame, e.g. the last frame of an earlier
run). Everything stays on the model's device between frames: the previous raw
and dreamed frames live there and flows are moved there once per frame.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..dream import DreamSettings, StepCallback, TemporalAnchor, TileBudget, check_image_for_dream, dream_image
from ..errors import FlowError, InvalidImageError
from ..features import FeatureHooks, grad_enabled_outside_inference
from ..flow.warp import warp, warp_with_mask
from ..image_ops import gaussian_blur, resize, to_rgb
from ..models.spec import DreamModel
from ..objectives import Objective, resolve_objective
from .settings import VideoSettings

log = logging.getLogger(__name__)


def missing_flow_error(mode: str) -> FlowError:
    """The error for a flow-based mode that was given no flow (one message for every caller)."""
    return FlowError(
        f"Video mode '{mode}' needs the optical flow of every frame after the first; none was given. "
        "Pass flows (a FlowSet from compute_flows, or a FlowEstimator), or use mode 'independent'.",
        parameter="flow",
    )


class FrameDreamer:
    """Dreams frames one after the other, carrying the dream along the optical flow.

    Use as a context manager (feature hooks are registered once for the clip) and
    drive it with :func:`~dream_core.video.loop.dream_clip`::

        with FrameDreamer(model, "block10_dw", settings, VideoSettings()) as dreamer:
            for done in dream_clip(dreamer, enumerate(frames), flows):
                ...

    Args:
        model: loaded model (its device is the compute device).
        objective: objective or shorthand string (``None``: the model's default).
        settings: per-frame dream settings (seed, octaves, ...).
        video: how frames are chained (:class:`VideoSettings`).
        start_image: optional RGB ``[1,3,H,W]`` taken as the dreamed first frame
            (resized to the frames' size with a warning when it differs).
        on_step: per-step callback forwarded to :func:`~dream_core.dream.dream_image`
            (progress, cancel); :meth:`dream_next` can override it per frame.
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
        self.objective = resolve_objective(model, objective)
        self.settings = settings
        self.video = video
        self.start_image = start_image
        self.on_step = on_step
        self.prev_raw: Optional[torch.Tensor] = None
        self.prev_dream: Optional[torch.Tensor] = None
        #: The tile size that fitted in memory, kept for the rest of the clip.
        self.tiles = TileBudget()
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
    def has_previous(self) -> bool:
        """Whether a previous frame is known (dreamed, or restored), so the next one is carried."""
        return self.prev_dream is not None

    def restore(self, prev_raw: torch.Tensor, prev_dream: torch.Tensor) -> None:
        """Continue a clip from a saved state (raw and dreamed previous frame, ``[1,3,H,W]``)."""
        dev, dt = self.model.device, self.model.dtype
        with grad_enabled_outside_inference():
            self.prev_raw = to_rgb(prev_raw).to(device=dev, dtype=dt).clone()
            self.prev_dream = to_rgb(prev_dream).to(device=dev, dtype=dt).clone()

    def dream_next(
        self,
        frame: torch.Tensor,
        backward_flow: Optional[torch.Tensor] = None,
        reliable: Optional[torch.Tensor] = None,
        *,
        on_step: Optional[StepCallback] = None,
    ) -> torch.Tensor:
        """Dream the next frame.

        Args:
            frame: raw RGB ``[1,3,H,W]`` in ``0..1`` (any device; moved to the model's).
            backward_flow: ``[H,W,2]`` backward flow of this frame w.r.t. the previous
                one (``frame(x) ≈ prev(x + flow(x))``); ignored for the first frame and in
                ``independent`` mode, required otherwise.
            reliable: ``[H,W]`` 0/1 reliability of that flow (``stable`` mode; all
                reliable when ``None``).
            on_step: per-step callback for this frame (default: the constructor's).

        Returns:
            Dreamed frame ``[1,3,H,W]`` on the model's device (float, ``0..1``).

        Raises:
            InvalidImageError: not one frame, or a size other than the previous frame's.
            FlowError: a flow-based mode without ``backward_flow`` after the first frame.
        """
        if self._hooks is None:
            raise RuntimeError("FrameDreamer.dream_next must be called inside its 'with' block")
        dev, dt = self.model.device, self.model.dtype
        step = on_step if on_step is not None else self.on_step
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
                out = self._first(raw, step)
            elif self.video.mode == "independent":
                out = self._dream(raw, self.settings, None, step)
            else:
                if backward_flow is None:
                    raise missing_flow_error(self.video.mode)
                flow = backward_flow.to(device=dev, dtype=dt)
                if self.video.mode == "seed":
                    out = self._seed_rule(raw, flow, step)
                else:
                    rel = None if reliable is None else reliable.to(device=dev, dtype=dt)
                    out = self._stable(raw, flow, rel, step)
            self.prev_raw, self.prev_dream = raw, out.detach()
        return self.prev_dream

    # -- modes ---------------------------------------------------------------

    def _dream(self, start: torch.Tensor, settings: DreamSettings, anchor: Optional[TemporalAnchor],
               on_step: Optional[StepCallback]) -> torch.Tensor:
        return dream_image(self.model, start, self.objective, settings, anchor=anchor, on_step=on_step,
                           hooks=self._hooks, tiles=self.tiles)

    def _first(self, raw: torch.Tensor, on_step: Optional[StepCallback]) -> torch.Tensor:
        if self.start_image is None:
            check_image_for_dream(raw, self.model, self.settings)
            return self._dream(raw, self.settings, None, on_step)
        start = to_rgb(self.start_image).to(device=raw.device, dtype=raw.dtype)[:1]
        if start.shape[-2:] != raw.shape[-2:]:
            log.warning(
                "Start image is %dx%d but frames are %dx%d; resizing it to the frame size.",
                start.shape[-1], start.shape[-2], raw.shape[-1], raw.shape[-2],
            )
            start = resize(start, tuple(raw.shape[-2:]))
        return start.clamp(0, 1)

    def _seed_rule(self, raw: torch.Tensor, flow: torch.Tensor, on_step: Optional[StepCallback]) -> torch.Tensor:
        diff = self.prev_dream - self.prev_raw
        carried = warp(diff, flow, padding_mode="zeros")
        return self._dream((raw + carried).clamp(0, 1), self.settings, None, on_step)

    def _stable(self, raw: torch.Tensor, flow: torch.Tensor, reliable: Optional[torch.Tensor],
                on_step: Optional[StepCallback]) -> torch.Tensor:
        diff = self.prev_dream - self.prev_raw
        carried, inside = warp_with_mask(diff, flow, padding_mode="border")
        weight = inside[:, None]
        if reliable is not None:
            weight = weight * reliable.view(1, 1, *reliable.shape[-2:])
        if self.video.occlusion_feather > 0:
            # Erode-then-blur: a soft edge that never reaches into unreliable pixels.
            weight = gaussian_blur(weight, self.video.occlusion_feather).clamp(0, 1) * weight
        target = (raw + carried).clamp(0, 1)
        start = (raw + self.video.carry * weight * carried).clamp(0, 1)
        anchor = TemporalAnchor(target, weight, self.video.temporal_weight) if self.video.temporal_weight > 0 else None
        return self._dream(start, self._later_settings, anchor, on_step)
