"""A video run checked before any frame is dreamed: :func:`check_video_run` (one worker and many share it).

What is cheap is checked first (the output can be written, the input can be read and has
frames in the range, a flow mode has at least two frames), then the model is loaded, and the
plan, the frame size and the dream settings are checked against it at the range's first and
last frame. The result (:class:`VideoRun`) holds what a run needs and its identity: what a
resumed run must share with the first one.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any, Callable, Mapping, Optional

import torch

from ..clip.loop import MaskProvider, frame_range
from ..clip.plan import ClipPlan
from ..clip.settings import VideoSettings
from ..dream import DreamSettings, check_image_for_dream
from ..flow.estimate import DEFAULT_FLOW_METHOD
from ..image_ops import fit_size
from ..models import DEFAULT_MODEL, load_model
from ..models.spec import DreamModel
from ..objectives import Objective
from ..video import VideoInfo, check_frame_count, check_output_writable, file_identity, probe_video
from .sources import EVEN

#: ``load(name, weights, device)``: the model (e.g. from a per-process cache).
ModelLoader = Callable[[str, Optional[str], torch.device], DreamModel]

#: ``make(model, fps, cadence_start)``: the run's :class:`~dream_core.clip.plan.ClipPlan` (schedules in
#: seconds need ``fps``; a cadence counts from ``cadence_start``).
PlanFactory = Callable[[DreamModel, Optional[Fraction], int], ClipPlan]


@dataclasses.dataclass(frozen=True)
class VideoRequest:
    """What a video run is asked to do (file paths, settings, range).

    Attributes:
        input, output: the input video and the output file.
        settings, video: the dream and video settings.
        model, weights: the model's registered name and an optional weights file.
        start, end: the global frame range (``end`` ``None``: to the end of the clip).
        max_side: frames are shrunk so their longer side is at most this (``None``: kept).
        flow, flow_weights: the optical-flow method and its RAFT weights file.
        start_image: the dreamed version of the first frame, a file, or ``None``.
    """

    input: str
    output: str
    settings: DreamSettings
    video: VideoSettings
    model: str = DEFAULT_MODEL
    weights: Optional[str] = None
    start: int = 0
    end: Optional[int] = None
    max_side: Optional[int] = None
    flow: str = DEFAULT_FLOW_METHOD
    flow_weights: Optional[str] = None
    start_image: Optional[str] = None


@dataclasses.dataclass
class VideoRun:
    """A :class:`VideoRequest` checked against its input and model.

    Attributes:
        request: what was asked.
        settings, video: its settings.
        info: the input's probed facts.
        frames: the global indices to dream.
        size: ``(height, width)`` the frames are dreamed at (even sides).
        model, objective: the loaded model and the first frame's objective.
        plan: every frame's settings by global index.
        masks: where to dream, by global index, or ``None``.
        identity: what a resumed run must share with this one (the writer's ``identity``).
    """

    request: VideoRequest
    settings: DreamSettings
    video: VideoSettings
    info: VideoInfo
    frames: range
    size: tuple[int, int]
    model: DreamModel
    objective: Objective
    plan: ClipPlan
    masks: Optional[MaskProvider]
    identity: dict[str, Any]


def check_video_run(request: VideoRequest, device: torch.device, *, plan: Optional[PlanFactory] = None,
                    masks: Optional[MaskProvider] = None, load: Optional[ModelLoader] = None,
                    identity: Optional[Mapping[str, Any]] = None) -> VideoRun:
    """Check ``request`` against its input and model before any frame is dreamed.

    Args:
        request: the run.
        device: where the model is loaded (after the other file checks).
        plan: builds the per-frame plan (schedules, motion, cadence); ``None``: the request's settings for
            every frame.
        masks: where to dream, by global index.
        load: ``load(name, weights, device)`` instead of :func:`~dream_core.models.load_model`.
        identity: more of what a resumed run must share (e.g. the animation flags), added to the identity.

    Raises:
        DreamError: an output that cannot be written, an unreadable input, a range outside the clip
            (``parameter="start"``/``"end"``), too few frames for a flow mode, a model, plan or objective
            that does not fit, frames too small or too large for the model.
    """
    settings, video = request.settings, request.video
    check_output_writable(request.output, request.input)
    info = probe_video(request.input)
    frames = frame_range(info.num_frames, request.start, request.end)
    if video.needs_flow:
        check_frame_count(info, purpose=f"video mode '{video.mode}'")
    model = (load or _load)(request.model, request.weights, device)
    clip_plan = (plan(model, info.frame_rate, frames.start) if plan is not None
                 else ClipPlan(model, settings, video=video, cadence_start=frames.start))
    clip_plan.check(frames)
    objective = clip_plan(frames.start).objective
    size = fit_size(info.height, info.width, request.max_side, multiple=EVEN)
    for index in (frames.start, frames.stop - 1):
        check_image_for_dream(torch.zeros(1, 3, *size), model, clip_plan(index).settings)
    run_identity = {
        "model": model.name, "weights": file_identity(request.weights), "objective": objective.to_string(),
        "dream": dataclasses.asdict(settings), "video": dataclasses.asdict(video), "end": frames.stop,
        "size": size, "flow": request.flow, "flow_weights": file_identity(request.flow_weights),
        "start_image": file_identity(request.start_image), **(identity or {}),
    }
    return VideoRun(request, settings, video, info, frames, size, model, objective, clip_plan, masks, run_identity)


def _load(name: str, weights: Optional[str], device: torch.device) -> DreamModel:
    return load_model(name, weights=weights, device=device)
