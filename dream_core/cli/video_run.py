"""What the flags of ``video`` describe, checked before any frame is dreamed: shared by one worker
(:mod:`.video`) and many (:mod:`.distributed`)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Optional

import torch

from ..clip import VideoSettings, frame_range
from ..clip.loop import MaskProvider
from ..clip.plan import ClipPlan
from ..dream import DreamSettings
from ..image_ops import fit_size
from ..models import load_model
from ..models.spec import DreamModel
from ..objectives import Objective
from ..video import VideoInfo, check_frame_count, check_output_writable, file_identity, probe_video
from .animation_args import animation_identity, colour_coherence_from_args, masks_from_args, plan_from_args
from ..errors import InvalidParameterError
from .args import FLAGS, Keyed, settings_from_args
from .paths import check_distinct_paths

_V = VideoSettings()

#: Frame sides of a dreamed video are rounded to multiples of this (H.264 yuv420p).
EVEN = 2


def video_settings_from_args(args: argparse.Namespace) -> VideoSettings:
    """The :class:`VideoSettings` the video flags describe, validated.

    Raises:
        InvalidParameterError: a flag given to a mode that never reads it (``--carry`` with ``--mode
            independent``); a schedule of one is refused by the :class:`ClipPlan`.
    """
    values = {name: getattr(args, name) for name in ("carry", "temporal_weight", "later_iterations", "occlusion_feather")}
    video = VideoSettings(mode=args.mode, colour_coherence=colour_coherence_from_args(args),
                          **{k: getattr(_V, k) if v is None or isinstance(v, Keyed) else v for k, v in values.items()})
    video.validate()
    unused = [FLAGS[k] for k, v in values.items() if v is not None and k in video.unused(getattr(args, "cadence", 1))]
    if unused:
        raise InvalidParameterError(
            f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing in --mode {video.mode} (only "
            f"--mode stable reads {'it' if len(unused) == 1 else 'them'}{'; --occlusion-feather also seed with a --cadence' if video.mode == 'seed' else ''}). "
            "Leave it out, or use --mode stable.")
    return video


@dataclasses.dataclass
class VideoRun:
    """What the flags of ``video`` describe, checked before any frame is dreamed (shared by one and many workers)."""

    settings: DreamSettings
    video: VideoSettings
    info: VideoInfo
    frames: range
    size: tuple[int, int]
    model: DreamModel
    objective: Objective
    plan: ClipPlan
    masks: Optional[MaskProvider]
    #: What a resumed run must share with this one (the writer's ``settings``).
    identity: dict[str, Any]


def check_video_run(args: argparse.Namespace, device: torch.device,
                    load: Optional[Callable[[str, Optional[str], torch.device], DreamModel]] = None) -> VideoRun:
    """Parse and check the ``video`` flags against the input and the model (loaded on ``device`` after the
    other checks, with ``load(name, weights, device)`` when given, e.g. a per-process cache).

    Raises:
        DreamError: bad flags, an unreadable input or output, a model or objective that does not fit.
    """
    settings = settings_from_args(args)
    video = video_settings_from_args(args)
    check_output_writable(args.output, args.input)
    check_distinct_paths(args)
    info = probe_video(args.input)
    frames = frame_range(info.num_frames, args.start, args.end)
    if video.needs_flow:
        check_frame_count(info, purpose=f"video mode '{video.mode}'")
    model = load(args.model, args.weights, device) if load else load_model(args.model, weights=args.weights,
                                                                             device=device)
    plan = plan_from_args(args, model, settings, video, fps=info.frame_rate, cadence_start=frames.start)
    masks = masks_from_args(args)
    size = fit_size(info.height, info.width, args.max_side, multiple=EVEN)
    plan.check(frames, size=size, masks=masks)  # every frame's octaves, the cadence's memory, the masks' length
    objective = plan(frames.start).objective
    identity = {
        "model": model.name, "weights": file_identity(args.weights), "objective": objective.to_string(),
        "dream": dataclasses.asdict(settings), "video": dataclasses.asdict(video), "end": frames.stop,
        "size": size, "flow": args.flow, "flow_weights": file_identity(args.flow_weights),
        "start_image": file_identity(args.start_image), "animation": animation_identity(args),
    }
    return VideoRun(settings, video, info, frames, size, model, objective, plan, masks, identity)
