"""Dreaming one frame after another, carrying the previous dream along the optical flow.

A :class:`FrameDreamer` holds what lasts for a whole clip: the model's feature
hooks (registered once), the objective, the settings, the previous raw and
dreamed frame, and the tile size that fitted in memory
(:class:`~dream_core.dream.TileBudget`). The frame loop
(:func:`dream_core.clip.loop.dream_clip`) drives it; :meth:`FrameDreamer.dream_next`
is the one place a frame is dreamed.

The first frame of a run is dreamed normally, or taken from a predefined start
image (the dreamed version of that frame, e.g. the last frame of an earlier
run). Everything stays on the model's device between frames: the previous raw
and dreamed frames live there and flows are moved there once per frame.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Optional

import torch

from ..colour import match_colour_balance
from ..dream import DreamSettings, StepCallback, TemporalAnchor, TileBudget, check_image_for_dream, dream_image
from ..errors import FlowError, InvalidImageError, InvalidParameterError
from ..fastpath import use_fast_path
from ..features import FeatureHooks, grad_enabled_outside_inference
from ..flow.motion import compose_backward, motion_flow
from ..flow.warp import warp, warp_with_mask
from ..image_ops import as_mask, resize, to_rgb
from ..models.spec import DreamModel
from ..objectives import Objective, resolve_objective
from ..ranking import ChannelRanks
from ..transfer import to_device
from .cadence import Between, CarryPath, PendingFrames, feathered
from .settings import VideoSettings

if TYPE_CHECKING:  # pragma: no cover - the animation wing builds on this module
    from .plan import FramePlan

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
    drive it with :func:`~dream_core.clip.loop.dream_clip`::

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
        colour_reference: RGB ``[1,3,h,w]`` whose colour balance every frame keeps when
            ``video.colour_coherence`` is above 0 (a feedback animation's start image);
            ``None``: each frame keeps its own raw frame's.
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
        colour_reference: Optional[torch.Tensor] = None,
    ) -> None:
        settings.validate()
        video.validate()
        self.model = model
        self.objective = resolve_objective(model, objective)
        self.settings = settings
        self.video = video
        self.start_image = start_image
        self.on_step = on_step
        self.colour_reference = colour_reference
        self.prev_raw: Optional[torch.Tensor] = None
        self.prev_dream: Optional[torch.Tensor] = None
        #: The tile size that fitted in memory, kept for the rest of the clip.
        self.tiles = TileBudget()
        #: After a cadence's in-between frames: the way back to the last dreamed frame.
        self._path: Optional[CarryPath] = None
        #: A cadence's in-between frames since the last dreamed frame, finished by :meth:`settle_between`.
        self.pending = PendingFrames()
        self._hooks: Optional[FeatureHooks] = None
        #: The channels of the clip's ranked picks (``layer:strong8``), ranked once for the whole clip.
        self.ranks = ChannelRanks()

    @property
    def _fast(self) -> bool:
        """Whether the clip's hooks run the execution copy (``settings.fast_path``; not schedulable, so one
        choice for the whole clip, and no dream builds hooks of its own per frame)."""
        return use_fast_path(self.settings.fast_path)

    def __enter__(self) -> "FrameDreamer":
        self._hooks = FeatureHooks(self.model, self.objective.layers(), optimize=self._fast).__enter__()
        return self

    def _use_layers(self, layers: list[str]) -> FeatureHooks:
        """The hooks for ``layers``: the clip's, swapped when a frame's objective reads other layers."""
        assert self._hooks is not None
        if set(layers) != set(self._hooks.layers):
            self._hooks.remove()
            self._hooks = None
            self._hooks = FeatureHooks(self.model, layers, optimize=self._fast).__enter__()
        return self._hooks

    def __exit__(self, *exc: object) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    @property
    def has_previous(self) -> bool:
        """Whether a previous frame is known (dreamed, or restored), so the next one is carried."""
        return self.prev_dream is not None

    def carry_path(self) -> dict[str, torch.Tensor]:
        """After a cadence's in-between frame, what :meth:`restore` needs to continue exactly (the way back
        to the last dreamed frame: ``diff``, ``flow``, ``reliable``); empty otherwise."""
        return {} if self._path is None else self._path.as_carry()

    def raw_values(self, frame: torch.Tensor) -> torch.Tensor:
        """A frame ``[1,C,H,W]`` with the values the dreamer keeps (:attr:`prev_raw`), where it is: RGB in the
        model's dtype, checked to be finite (on the host for a decoded frame: no wait on a GPU).

        The flow from a frame to the next is estimated from these values (so a flow estimated ahead,
        on another thread, from the host copy is the one the loop would estimate).
        """
        return to_rgb(frame).to(dtype=self.model.dtype)

    def as_raw(self, frame: torch.Tensor) -> torch.Tensor:
        """A frame ``[1,C,H,W]`` as the dreamer keeps it (:attr:`prev_raw`): :meth:`raw_values` on the model's
        device (copied without blocking when it comes pinned: :func:`~dream_core.transfer.staged`)."""
        return to_device(self.raw_values(frame), self.model.device)

    def restore(self, prev_raw: torch.Tensor, prev_dream: torch.Tensor,
                path: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """Continue a clip from a saved state (raw and dreamed previous frame, ``[1,3,H,W]``, and the
        :meth:`carry_path` saved with them)."""
        dev, dt = self.model.device, self.model.dtype
        self._path = None
        self.pending.clear()
        if path:
            self._path = CarryPath(*(path[k].to(device=dev, dtype=dt) for k in ("diff", "flow", "reliable")),
                                   age=int(path["age"]) if "age" in path else 1)
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
        plan: Optional["FramePlan"] = None,
        mask: Optional[torch.Tensor] = None,
        index: Optional[int] = None,
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
            plan: this frame's settings, objective, drift motion and whether it is dreamed or
                only carried along the flow (a cadence's in-between frame); default: the
                constructor's settings, dreamed (:class:`~dream_core.clip.plan.FramePlan`).
            mask: where to dream (``[H,W]`` or ``[1,1,H,W]`` in ``0..1``); elsewhere the frame
                comes back as given.
            index: the frame's global index: a cadence's in-between frame is held under it
                (:attr:`pending`) until :meth:`settle_between` finishes it.

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
        settings = plan.settings if plan is not None else self.settings
        video = plan.video if plan is not None else self.video
        if video.mode != self.video.mode:
            raise InvalidParameterError(
                f"The frame plan was made for mode {video.mode!r} but the frame dreamer runs mode {self.video.mode!r}; "
                "make both with the same video settings.", parameter="mode",
            )
        objective = plan.objective if plan is not None else self.objective
        hooks = self._use_layers(objective.layers())
        with grad_enabled_outside_inference():
            raw = self.as_raw(frame).clone()
            if raw.shape[0] != 1:
                raise InvalidImageError(f"dream_next takes one frame [1,3,H,W]; got batch {raw.shape[0]}.")
            if self.prev_dream is not None and raw.shape[-2:] != self.prev_dream.shape[-2:]:
                raise InvalidImageError(
                    f"All frames must have the same size; got {raw.shape[-1]}x{raw.shape[-2]} after "
                    f"{self.prev_dream.shape[-1]}x{self.prev_dream.shape[-2]} (WxH). Resize the clip first."
                )
            where = None if mask is None else _given_mask(mask, raw, dev, dt)
            run = _FrameRun(settings, video, objective, hooks, where, step, index)
            carried_only = self.prev_dream is not None and plan is not None and not plan.dream
            if self.prev_dream is None:
                out = self._first(raw, run)
            elif carried_only:  # settle_between finishes it, colour included
                out = self._carried_only(raw, backward_flow, reliable, plan, run)
            elif video.mode == "independent":
                out = self._dream(raw, run, settings)
            else:
                flow = self._flow(backward_flow, plan)
                if len(self.pending):  # the key after in-between frames: they are finished from both sides
                    self.pending.link(flow, _reliability(flow, reliable))
                if video.mode == "seed":
                    out = self._seed_rule(raw, flow, run)
                else:
                    out = self._stable(raw, flow, reliable, run)
            given_start = self.prev_dream is None and self.start_image is not None  # taken as it is
            if video.colour_coherence > 0 and not (carried_only or given_start):
                out = self._keep_colour_balance(out, raw, where, video.colour_coherence)
            self.prev_raw, self.prev_dream = raw, out.detach()
        return self.prev_dream

    def settle_between(self) -> list[tuple[Between, torch.Tensor]]:
        """Finish the in-between frames since the last dreamed frame (oldest first; :attr:`pending` then holds none).

        Called after the next dreamed frame: each is then carried from the dreams on both sides
        (:func:`~dream_core.clip.cadence.settle`); called with no dreamed frame after them (the end
        of a run), each keeps the earlier dream's carry alone.

        Returns:
            ``(frame, finished [1,3,H,W])`` pairs: ``frame.index``, ``frame.raw`` and ``frame.path`` say
            which frame it is and what a run resumed after it continues from.
        """
        key_diff = None if self.prev_dream is None or self.prev_raw is None else self.prev_dream - self.prev_raw
        return self.pending.settle(key_diff, self.colour_reference)

    def _keep_colour_balance(self, out: torch.Tensor, raw: torch.Tensor, where: Optional[torch.Tensor],
                             strength: float) -> torch.Tensor:
        """``out`` with its colour balance pulled to the reference's (inside the mask only)."""
        reference = raw if self.colour_reference is None else self.colour_reference
        matched = match_colour_balance(out.detach(), reference, strength)
        return matched if where is None else torch.lerp(out.detach(), matched, where)

    def _flow(self, backward_flow: Optional[torch.Tensor], plan: Optional["FramePlan"]) -> torch.Tensor:
        """This frame's backward flow on the model's device, with the plan's drift composed onto it."""
        if backward_flow is None:
            raise missing_flow_error(self.video.mode)
        flow = to_device(backward_flow, self.model.device, self.model.dtype)
        if plan is not None and not plan.motion.is_identity:
            drift = motion_flow(flow.shape[0], flow.shape[1], plan.motion, device=flow.device, dtype=flow.dtype)
            flow = compose_backward(flow, drift)
        return flow

    # -- modes ---------------------------------------------------------------

    def _dream(self, start: torch.Tensor, run: "_FrameRun", settings: DreamSettings,
               anchor: Optional[TemporalAnchor] = None) -> torch.Tensor:
        out = dream_image(self.model, start, run.objective, settings, anchor=anchor, on_step=run.on_step,
                          hooks=run.hooks, tiles=self.tiles, mask=run.mask, ranks=self.ranks, check_finite=False)
        return out

    def _first(self, raw: torch.Tensor, run: "_FrameRun") -> torch.Tensor:
        if self.start_image is None:
            check_image_for_dream(raw, self.model, run.settings, check_finite=False)  # as_raw checked them
            return self._dream(raw, run, run.settings)
        start = to_rgb(self.start_image).to(device=raw.device, dtype=raw.dtype)[:1]
        if start.shape[-2:] != raw.shape[-2:]:
            log.warning(
                "Start image is %dx%d but frames are %dx%d; resizing it to the frame size.",
                start.shape[-1], start.shape[-2], raw.shape[-1], raw.shape[-2],
            )
            start = resize(start, tuple(raw.shape[-2:]))
        return start.clamp(0, 1)

    def _carried_diff(self, flow: torch.Tensor, reliable: Optional[torch.Tensor], video: VideoSettings,
                      padding_mode: str = "border") -> tuple[torch.Tensor, torch.Tensor, "CarryPath"]:
        """The last dreamed frame's difference carried onto this frame, and where it is trusted.

        After a cadence's in-between frames the difference is warped once, from the last dreamed
        frame, along the composed flows (a flow field is smooth, so composing it barely blurs; warping
        the dream at every frame would blur its fine detail once per frame), and it is trusted where
        every step of the way was reliable.

        Returns:
            ``(carried [1,3,H,W], weight [1,1,H,W] in 0..1, the path to continue from)``.
        """
        step = _reliability(flow, reliable)
        path = self._path
        if path is None:
            path = CarryPath(self.prev_dream - self.prev_raw, flow, step)
        else:
            path = CarryPath(path.diff, compose_backward(path.flow, flow),
                             warp(path.reliable, flow, padding_mode="zeros") * step, path.age + 1)
        carried, inside = warp_with_mask(path.diff, path.flow, padding_mode=padding_mode)
        return carried, feathered(inside[:, None] * path.reliable, video.occlusion_feather), path

    def _seed_rule(self, raw: torch.Tensor, flow: torch.Tensor, run: "_FrameRun") -> torch.Tensor:
        if self._path is None:
            carried = warp(self.prev_dream - self.prev_raw, flow, padding_mode="zeros")
        else:  # after in-between frames: from the last dreamed frame along the composed flow
            carried = warp(self._path.diff, compose_backward(self._path.flow, flow), padding_mode="zeros")
        self._path = None
        start = (raw + carried).clamp(0, 1)
        if run.mask is not None:  # outside the mask the frame stays raw
            start = torch.lerp(raw, start, run.mask)
        return self._dream(start, run, run.settings)

    def _stable(self, raw: torch.Tensor, flow: torch.Tensor, reliable: Optional[torch.Tensor],
                run: "_FrameRun") -> torch.Tensor:
        video = run.video
        carried, weight, _ = self._carried_diff(flow, reliable, video)
        self._path = None
        target = (raw + carried).clamp(0, 1)
        start = (raw + video.carry * weight * carried).clamp(0, 1)
        if run.mask is not None:
            start = torch.lerp(raw, start, run.mask)
        anchor = TemporalAnchor(target, weight, video.temporal_weight) if video.temporal_weight > 0 else None
        later = max(1, round(run.settings.num_iterations * video.later_iterations))
        return self._dream(start, run, run.settings.with_(num_iterations=later), anchor)

    def _carried_only(self, raw: torch.Tensor, backward_flow: Optional[torch.Tensor], reliable: Optional[torch.Tensor],
                      plan: "FramePlan", run: "_FrameRun") -> torch.Tensor:
        """A cadence's in-between frame: the last dream carried along the flow where it is reliable
        (undecayed, so the strength holds until the next dreamed frame), no gradient steps. (A
        :class:`~dream_core.clip.plan.ClipPlan` refuses a cadence in mode ``independent``.)"""
        flow = self._flow(backward_flow, plan)
        carried, weight, self._path = self._carried_diff(flow, reliable, run.video)
        frame = Between(run.index, raw, flow, _reliability(flow, reliable), weight * carried, run.mask, run.video,
                        self._path)
        self.pending.add(frame)
        # Provisional, until settle_between finishes it (from both sides, colour kept): the earlier dream alone.
        out = (raw + frame.forward).clamp(0, 1)
        return out if run.mask is None else torch.lerp(raw, out, run.mask)


def _given_mask(mask: torch.Tensor, raw: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A frame's mask as given (checked where it is: on the host for a mask from a file), ``[1,1,H,W]`` at the
    frame's size on ``device``."""
    return to_device(as_mask(mask, tuple(raw.shape[-2:])), device, dtype)


def _reliability(flow: torch.Tensor, reliable: Optional[torch.Tensor]) -> torch.Tensor:
    """A flow's reliability as ``[1,1,H,W]`` (all reliable when ``None``)."""
    if reliable is None:
        return torch.ones_like(flow[..., 0])[None, None]
    return to_device(reliable, flow.device, flow.dtype).view(1, 1, *flow.shape[:2])


class _FrameRun:
    """What one frame is dreamed with (the plan's values, resolved for this frame)."""

    __slots__ = ("settings", "video", "objective", "hooks", "mask", "on_step", "index")

    def __init__(self, settings: DreamSettings, video: VideoSettings, objective: Objective, hooks: FeatureHooks,
                 mask: Optional[torch.Tensor], on_step: Optional[StepCallback], index: Optional[int]) -> None:
        self.settings, self.video, self.objective = settings, video, objective
        self.hooks, self.mask, self.on_step, self.index = hooks, mask, on_step, index
