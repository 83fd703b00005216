"""The one frame loop: a clip dreamed frame by frame, each carried along the optical flow onto the next.

:func:`dream_clip` is the only place frames are dreamed in sequence; the command
line (reader -> loop -> writer), the DeepDream Video node (validation -> loop ->
progress) and the benchmarks all drive it, so what it does with the flow is
what users get.

Its shape is made for what will plug in later without a rewrite: it iterates
``(global_index, frame)`` pairs (a range of a longer clip, or a resumed run,
keeps the clip's own numbering), asks a *flow source* for the flow between the
previous frame and this one by index, starts from an optional saved
:class:`ClipState`, reports every gradient step with the frame's index
(progress, cancel), and yields per frame the index, the dreamed frame and the
carry state to resume from (:class:`DreamedFrame`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Union

import numpy as np
import torch

from ..dream import DreamSettings, StepCallback
from ..errors import FlowError, InvalidParameterError
from ..flow.estimate import FlowEstimator
from ..flow.flowset import FlowSet
from ..flow.reliability import flow_pair
from ..models.spec import DreamModel
from ..objectives import Objective
from .frame_dreamer import FrameDreamer, missing_flow_error
from .settings import VideoSettings

if TYPE_CHECKING:  # pragma: no cover
    from .plan import FramePlan

log = logging.getLogger(__name__)

#: ``on_step(index, step, total, current)``: after every gradient step of the frame with global index
#: ``index`` (``step`` 1-based over that frame's octaves, ``current`` its image so far); may raise to cancel.
ClipStepCallback = Callable[[int, int, int, torch.Tensor], None]

#: ``plan(index)``: the :class:`~dream_core.clip.plan.FramePlan` of the frame with global ``index``
#: (per-frame settings from schedules, objective, drift, cadence), e.g. a
#: :class:`~dream_core.clip.plan.ClipPlan`.
PlanSource = Callable[[int], "FramePlan"]

#: ``mask(index)``: where to dream in the frame with global ``index`` (``[H,W]`` or ``[1,1,H,W]`` in
#: ``0..1``, 1 = dream), or ``None`` for the whole frame; e.g. a :class:`~dream_core.animation.masks.MaskSource`.
MaskProvider = Callable[[int], Optional[torch.Tensor]]


@dataclass(frozen=True)
class ClipState:
    """What the next frame needs from the previous one; what a resumed run starts from.

    Attributes:
        index: global index of the frame this state belongs to.
        raw: that frame's raw RGB ``[1,3,H,W]`` in ``0..1`` (as dreamed, i.e. after resizing).
        dream: its dreamed version, same shape.
        path: after a cadence's in-between frame, the way back to the last dreamed frame
            (``diff``, ``flow``, ``reliable`` tensors; see :meth:`FrameDreamer.carry_path`), else empty.
    """

    index: int
    raw: torch.Tensor
    dream: torch.Tensor
    path: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def carry(self) -> dict[str, torch.Tensor]:
        """The state as the mapping :meth:`VideoWriter.write <dream_core.video.writer.VideoWriter.write>` saves
        (``prev_raw``, ``prev_dream`` and any ``path_*``; tensors, copied to the host only when a segment
        is committed)."""
        return {"prev_raw": self.raw, "prev_dream": self.dream, **{f"path_{k}": v for k, v in self.path.items()}}

    @classmethod
    def from_carry(cls, index: int, carry: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> "ClipState":
        """The state saved by :meth:`carry` (e.g. ``ResumePoint.carry``) for the frame with global ``index``."""
        path = {k[len("path_"):]: torch.from_numpy(np.asarray(v)).to(device) for k, v in carry.items()
                if k.startswith("path_")}
        return cls(index, torch.from_numpy(carry["prev_raw"]).to(device), torch.from_numpy(carry["prev_dream"]).to(device),
                   path)


@dataclass(frozen=True)
class DreamedFrame:
    """One result of :func:`dream_clip`.

    Attributes:
        index: the frame's global index.
        image: the dreamed frame, RGB ``[1,3,H,W]`` in ``0..1`` on the model's device.
        state: the carry state after this frame (to resume at the next one).
    """

    index: int
    image: torch.Tensor
    state: ClipState


class FlowSource(Protocol):
    """Gives the backward flow of frame ``index`` w.r.t. the previous frame of the run, and its reliability.

    Called as ``source(previous, index, raw)`` with the previous frame's :class:`ClipState` and this
    frame's raw RGB ``[1,3,H,W]``; returns ``(backward [H,W,2], reliable [H,W] or None)``.
    """

    def __call__(self, previous: ClipState, index: int, raw: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        ...


class PrecomputedFlows:
    """A :class:`~dream_core.flow.flowset.FlowSet`'s flows, by global frame index.

    Args:
        flows: flows of the clip; its frame ``t`` is global frame ``t + offset``.
        offset: global index of the FlowSet's frame 0.
    """

    def __init__(self, flows: FlowSet, offset: int = 0) -> None:
        self.flows = flows
        self.offset = offset

    def __call__(self, previous: ClipState, index: int, raw: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if previous.index != index - 1:
            raise FlowError(
                f"The flows hold frame pairs (t-1, t), but frame {index} follows frame {previous.index}.",
                parameter="flow",
            )
        return self.flows.for_frame(index - self.offset)


class EstimatedFlows:
    """Flows estimated on the fly between the previous raw frame and this one (:func:`~dream_core.flow.flow_pair`).

    Args:
        estimator: the :class:`~dream_core.flow.estimate.FlowEstimator` (hold one per clip).
        consistency: also estimate the forward flow for the forward-backward reliability test.
    """

    def __init__(self, estimator: FlowEstimator, consistency: bool = True) -> None:
        self.estimator = estimator
        self.consistency = consistency

    def __call__(self, previous: ClipState, index: int, raw: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        # A GPU estimator (RAFT) runs on the dream's device, where previous.raw is; a host one (DIS) takes the
        # frame where it is (flow_pair brings both to the host), so a decoded frame is not sent there and back.
        cur = raw if getattr(self.estimator, "on_host", False) else raw.to(previous.raw.device)
        pair = flow_pair(self.estimator, previous.raw, cur, consistency=self.consistency)
        return pair.backward, pair.reliable


class FlowPairs:
    """Flows given in order, one ``(backward, reliable or None)`` pair per frame after the first."""

    def __init__(self, pairs: Iterable[tuple[torch.Tensor, Optional[torch.Tensor]]]) -> None:
        self._pairs = iter(pairs)

    def __call__(self, previous: ClipState, index: int, raw: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        try:
            return next(self._pairs)
        except StopIteration:
            raise FlowError(
                f"Flow ran out at frame {index}: it has fewer entries than frames - 1. Recompute the flow on these frames.",
                parameter="flow",
            ) from None


Flows = Union[FlowSet, FlowEstimator, FlowSource, None]


def as_flow_source(flows: Flows) -> Optional[FlowSource]:
    """A :class:`FlowSource` for a FlowSet (by index), a FlowEstimator (estimated), a source, or ``None``."""
    if flows is None:
        return None
    if isinstance(flows, FlowSet):
        return PrecomputedFlows(flows)
    if isinstance(flows, FlowEstimator):
        return EstimatedFlows(flows)
    if callable(flows):
        return flows
    raise FlowError(
        f"flows must be a FlowSet, a FlowEstimator or a flow source; got {type(flows).__name__}.", parameter="flow"
    )


def frame_range(num_frames: int, start: int = 0, end: Optional[int] = None) -> range:
    """Global indices ``start .. end-1`` of a clip of ``num_frames`` frames; ``end`` past the clip is capped.

    Raises:
        InvalidParameterError: ``start`` outside the clip (``parameter="start"``), or ``end`` not after
            ``start`` (``parameter="end"``).
    """
    if not 0 <= start < num_frames:
        raise InvalidParameterError(
            f"start frame {start} is outside the clip: it has {num_frames} frames (0..{num_frames - 1}).",
            parameter="start",
        )
    if end is not None and end <= start:
        raise InvalidParameterError(f"end frame {end} must come after start frame {start}.", parameter="end")
    stop = num_frames if end is None else min(end, num_frames)
    if end is not None and end > num_frames:
        log.warning("The range %d..%d runs past the clip's %d frames; dreaming frames %d..%d.",
                    start, end - 1, num_frames, start, stop - 1)
    return range(start, stop)


def check_clip_flows(video: VideoSettings, flows: Optional[FlowSet], frames: range, num_frames: int,
                     height: int, width: int) -> None:
    """Before a long run: the errors :func:`dream_clip` would raise later about precomputed flows.

    Args:
        video: the video settings (only flow-based modes need flows).
        flows: the clip's flows, or ``None``.
        frames: the global indices to dream.
        num_frames, height, width: the whole clip the flows must belong to.

    Raises:
        FlowError: a flow-based mode with two or more frames and no flows, or flows of another clip.
    """
    if not video.needs_flow or len(frames) < 2:
        return
    if flows is None:
        raise missing_flow_error(video.mode)
    if not isinstance(flows, FlowSet):
        raise FlowError(f"flows must be a FlowSet; got {type(flows).__name__}.", parameter="flow")
    flows.check_matches(num_frames, height, width)


def dream_clip(
    dreamer: FrameDreamer,
    frames: Iterable[tuple[int, torch.Tensor]],
    flows: Flows = None,
    *,
    start: Optional[ClipState] = None,
    on_step: Optional[ClipStepCallback] = None,
    plan: Optional[PlanSource] = None,
    masks: Optional[MaskProvider] = None,
) -> Iterator[DreamedFrame]:
    """Dream a clip lazily, one frame at a time (constant memory), carrying each dream onto the next frame.

    Args:
        dreamer: an entered :class:`FrameDreamer` (model, objective, settings, video mode; it keeps the
            hooks and the learned tile size for the clip).
        frames: ``(global_index, frame)`` pairs, frames RGB ``[1,3,H,W]`` or ``[3,H,W]`` in ``0..1``,
            indices consecutive (e.g. ``enumerate(frames, start)``).
        flows: where the flow of each frame after the first comes from: a
            :class:`~dream_core.flow.flowset.FlowSet` of the whole clip (looked up by global index),
            a :class:`~dream_core.flow.estimate.FlowEstimator` (estimated between consecutive raw
            frames, with the reliability mask), any :class:`FlowSource`, or ``None`` (``independent``
            mode only).
        start: the state of the frame before the first one given (a resumed run): the first frame is
            then carried from it instead of being dreamed afresh.
        on_step: progress per gradient step, with the frame's global index; raise in it to cancel.
        plan: per-frame settings, objective, drift and cadence by global index (a
            :class:`~dream_core.clip.plan.ClipPlan`); ``None``: the dreamer's own settings for
            every frame, every frame dreamed.
        masks: where to dream in each frame, by global index; ``None``: everywhere.

    Yields:
        :class:`DreamedFrame` per frame, in order: index, dreamed ``[1,3,H,W]`` on the model's device,
        carry state. A cadence's in-between frames come out together after the next dreamed frame is
        made (they are carried from the dreams on both sides: :mod:`dream_core.clip.cadence`), so up
        to ``cadence - 1`` frames are held at a time.

    Raises:
        FlowError: a flow-based mode without flows (when the second frame arrives), or flows that do
            not fit the frames.
        InvalidImageError: frames of different sizes or bad shapes.

    Example:
        >>> with FrameDreamer(model, None, DreamSettings(), VideoSettings()) as dreamer:
        ...     for done in dream_clip(dreamer, enumerate(frames), compute_flows(frames)):
        ...         save(done.index, done.image)
    """
    source = as_flow_source(flows)
    previous = start
    if start is not None:
        dreamer.restore(start.raw, start.dream, start.path)
    for index, frame in frames:
        raw = frame if frame.dim() == 4 else frame.unsqueeze(0)
        backward = reliable = None
        if previous is not None and dreamer.video.needs_flow:
            if source is None:
                raise missing_flow_error(dreamer.video.mode)
            backward, reliable = source(previous, index, raw)
        step = None if on_step is None else partial(on_step, index)
        frame_plan = None if plan is None else plan(index)
        mask = None if masks is None else masks(index)
        dreamed = dreamer.dream_next(raw, backward, reliable, on_step=step, plan=frame_plan, mask=mask, index=index)
        assert dreamer.prev_raw is not None
        previous = ClipState(index, dreamer.prev_raw, dreamed, dreamer.carry_path())
        if dreamer.pending.holds(index):  # a cadence's in-between frame: the dreamer finishes it after the next key
            continue
        yield from _settled(dreamer)
        yield DreamedFrame(index, dreamed, previous)
    yield from _settled(dreamer)  # frames after the last key keep the earlier dream alone


def _settled(dreamer: FrameDreamer) -> Iterator[DreamedFrame]:
    """The in-between frames the dreamer held, finished (:meth:`FrameDreamer.settle_between`), with their state."""
    for frame, image in dreamer.settle_between():
        assert frame.index is not None
        yield DreamedFrame(frame.index, image, ClipState(frame.index, frame.raw, image, frame.path.as_carry()))


def dream_frames(
    model: DreamModel,
    frames: Iterable[torch.Tensor],
    objective: Objective | str | None,
    settings: DreamSettings,
    video: VideoSettings = VideoSettings(),
    *,
    flows: Flows | Iterable[tuple[torch.Tensor, Optional[torch.Tensor]]] = None,
    flow_estimator: Optional[FlowEstimator] = None,
    start_image: Optional[torch.Tensor] = None,
    on_step: Optional[StepCallback] = None,
) -> Iterator[torch.Tensor]:
    """Shorthand for :func:`dream_clip` with its own :class:`FrameDreamer`: only the dreamed images.

    Args:
        frames: raw RGB ``[1,3,H,W]`` (or ``[3,H,W]``) frames in ``0..1``, numbered from 0.
        flows: a FlowSet, a FlowEstimator, a flow source, or per-frame ``(backward [H,W,2],
            reliable [H,W] or None)`` pairs for frames ``1..N-1`` (e.g.
            ``zip(flowset.backward, flowset.reliable)``).
        flow_estimator: alternatively a FlowEstimator (flows computed on the fly).
        start_image: optional dreamed version of the first frame.
        on_step: per-step callback ``(step, total, current)``.

    Yields:
        Dreamed frames ``[1,3,H,W]`` on the model's device.
    """
    video.validate()
    if flows is not None and not isinstance(flows, (FlowSet, FlowEstimator)) and not callable(flows):
        flows = FlowPairs(flows)  # type: ignore[arg-type]
    source = flows if flows is not None else flow_estimator
    with FrameDreamer(model, objective, settings, video, start_image=start_image, on_step=on_step) as dreamer:
        for done in dream_clip(dreamer, enumerate(frames), source):  # type: ignore[arg-type]
            yield done.image
