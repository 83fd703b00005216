"""The one pipeline: a range of frames from a source, through the frame loop, into a sink.

:func:`render_range` is what every front end runs: the ``video``, ``animate`` and ``demo``
commands (a video file into a resumable writer), a Ray worker's segment, the DeepDream
Video node (an IMAGE batch into a preallocated IMAGE) and the benchmarks. What happens
to a frame between its source and its sink is :func:`~dream_core.clip.loop.dream_clip`'s
business; this module adds the overlap (:mod:`.overlap`): decoding ahead, the next
frame's flow and encoding behind run on threads while the model dreams.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..clip.frame_dreamer import FrameDreamer
from ..clip.loop import ClipState, ClipStepCallback, DreamedFrame, EstimatedFlows, Flows, MaskProvider, PlanSource
from ..clip.loop import dream_clip
from ..errors import InvalidImageError, InvalidParameterError, VideoError
from ..flow.estimate import FlowEstimator
from ..image_io import from_uint8_hwc
from ..transfer import release_pinned, staged
from .overlap import FlowAhead, ReadAhead, WriteBehind
from .sinks import FrameSink
from .sources import Frame, FrameSource

log = logging.getLogger(__name__)

#: ``on_frame(done)``: on the caller's thread after each frame is dreamed and handed to the sink
#: (progress, preview, cancel: raise in it to stop).
FrameCallback = Callable[[DreamedFrame], None]


def render_range(
    source: FrameSource,
    dreamer: FrameDreamer,
    flows: Flows,
    sink: FrameSink,
    *,
    start: Optional[ClipState] = None,
    plan: Optional[PlanSource] = None,
    masks: Optional[MaskProvider] = None,
    on_step: Optional[ClipStepCallback] = None,
    on_frame: Optional[FrameCallback] = None,
    overlap: Optional[bool] = None,
) -> int:
    """Dream the frames of ``source`` into ``sink``, one at a time (memory does not grow with the range).

    Args:
        source: the frames and their global indices (:mod:`.sources`): exactly ``source.frames``, in order.
        dreamer: an entered :class:`~dream_core.clip.frame_dreamer.FrameDreamer` (model, objective,
            settings, video mode, start image, colour reference).
        flows: the flow of each frame after the first: a :class:`~dream_core.flow.estimate.FlowEstimator`
            (estimated between consecutive raw frames), a :class:`~dream_core.flow.flowset.FlowSet` of
            the whole clip, any :class:`~dream_core.clip.loop.FlowSource`, or ``None`` (mode
            ``independent``); as :func:`~dream_core.clip.loop.dream_clip` takes them.
        sink: where the dreamed frames go, in order (:mod:`.sinks`).
        start: the state of the frame before the range (a resumed run:
            :meth:`ClipState.from_carry <dream_core.clip.loop.ClipState.from_carry>` of the writer's
            resume point); ``None``: the range starts afresh.
        plan: per-frame settings, objective, motion and cadence by global index (a
            :class:`~dream_core.clip.plan.ClipPlan`).
        masks: where to dream in each frame, by global index.
        on_step: ``(index, step, total, current)`` after every gradient step; raise in it to cancel.
        on_frame: after each frame is dreamed and handed to the sink, on the caller's thread.
        overlap: run decoding, the next frame's flow and encoding on threads while the model dreams
            (:mod:`.overlap`): frame for frame the same output. ``False``: everything on the caller's
            thread, one step after the other (for debugging and comparisons). ``None`` (default): on
            when the model runs on a CUDA GPU, off on the CPU, where the dream's own operators use
            every core and the threads only compete with them (a 2-core machine dreamed 1.3-1.6x
            slower with them: benchmarks/RESULTS.md, "Overlap on the CPU"), and on MPS. Only what can be done
            ahead is: a source with ``background`` false is read on the caller's thread, flows are
            estimated ahead only from such a source and a ``FlowEstimator``, a sink with
            ``background`` false is written on the caller's thread.

    Returns:
        The number of frames written (``len(source.frames)``).

    Raises:
        VideoError: the source ended before its range did.
        InvalidParameterError: the source's indices are not its range.
        DreamError: whatever the frame loop, the source or the sink raise (from a thread, the same
            exception, re-raised in the caller's thread).
    """
    frames = source.frames
    device = dreamer.model.device
    if overlap is None:
        overlap = device.type == "cuda"
    ahead = overlap and bool(getattr(source, "background", False))
    behind = overlap and bool(getattr(sink, "background", False))
    count = 0
    with ExitStack() as threads:
        if device.type == "cuda":  # the frames' and flows' pinned blocks go back to the system afterwards
            threads.callback(release_pinned)
        pairs: Iterator[tuple[int, torch.Tensor]] = _checked(source, device)
        flow_source = flows
        if ahead:
            pairs = iter(threads.enter_context(ReadAhead(pairs)))
            estimator = _estimator(flows)
            if estimator is not None and dreamer.video.needs_flow:
                consistency = flows.consistency if isinstance(flows, EstimatedFlows) else True
                flow_ahead = threads.enter_context(FlowAhead(estimator, dreamer.raw_values, device, consistency))
                pairs, flow_source = flow_ahead.feed(pairs), flow_ahead
        out: FrameSink | WriteBehind = sink
        if behind:
            out = threads.enter_context(WriteBehind(sink))
            if on_step is not None:  # a failed encoder stops the dream within a step
                on_step = _checking(on_step, out.check)
        for done in dream_clip(dreamer, pairs, flow_source, start=start, on_step=on_step, plan=plan, masks=masks):
            out.write(done)
            count += 1
            if on_frame is not None:
                on_frame(done)
    if count != len(frames):
        last = frames.start + count - 1
        raise VideoError(f"{getattr(source, 'name', 'The frame source')} ended after frame {last}; the range needs "
                         f"frames {frames.start}..{frames.stop - 1}.")
    return count


def _estimator(flows: Flows) -> Optional[FlowEstimator]:
    if isinstance(flows, FlowEstimator):
        return flows
    if isinstance(flows, EstimatedFlows):
        return flows.estimator
    return None


def _checking(on_step: ClipStepCallback, check: Callable[[], None]) -> ClipStepCallback:
    def step(index: int, step: int, total: int, current: torch.Tensor) -> None:
        check()
        on_step(index, step, total, current)

    return step


def _checked(source: FrameSource, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """The source's pairs as tensors ``[1,3,H,W]``, indices checked against its range. Frames on the host stay
    there, pinned when ``device`` is a GPU (:func:`~dream_core.transfer.staged`): the flow is estimated from
    them on the host, and the frame loop copies them to the GPU without waiting for it."""
    frames = source.frames
    pairs = iter(source)
    try:
        for k, (index, frame) in enumerate(pairs):
            if k >= len(frames) or index != frames[k]:
                expected = f"frame {frames[k]}" if k < len(frames) else "no more frames"
                raise InvalidParameterError(
                    f"{getattr(source, 'name', 'The frame source')} gave frame {index} where its range "
                    f"{frames.start}..{frames.stop - 1} has {expected}.", parameter="frames",
                )
            yield index, _as_tensor(frame, device)
    finally:
        close = getattr(pairs, "close", None)
        if close is not None:
            close()


def _as_tensor(frame: Frame, device: torch.device) -> torch.Tensor:
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise InvalidImageError(f"An array frame must be (H,W,3) uint8 RGB; got {frame.shape} {frame.dtype}.")
        return staged(from_uint8_hwc(frame), device)
    if isinstance(frame, torch.Tensor):
        return staged(frame if frame.dim() == 4 else frame.unsqueeze(0), device)
    raise InvalidImageError(f"A frame must be an (H,W,3) uint8 array or a [1,3,H,W] tensor; got {type(frame).__name__}.")
