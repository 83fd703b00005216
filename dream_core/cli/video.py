"""``video IN OUT``: reader -> the one frame loop -> writer, streaming and resumable.

Frames stream from the decoder through :func:`~dream_core.video.loop.dream_clip`
into the encoder one at a time (memory does not grow with clip length). Flow
is estimated on the fly between consecutive raw frames at the dream
resolution. Output is written in committed segments next to ``OUT``; a run
stopped half-way continues from the last committed frame when started again
with the same arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from typing import Any, Callable, Optional

import torch

from ..animation.plan import ClipPlan
from ..dream import DreamSettings, check_image_for_dream
from ..flow import DEFAULT_FLOW_METHOD, FLOW_METHODS, FlowEstimator
from ..image_io import from_uint8_hwc, load_image, to_uint8_hwc
from ..image_ops import fit_max_side, fit_size
from ..models import load_model
from ..models.spec import DreamModel
from ..objectives import Objective
from ..ranking import rank_clip
from ..video import (
    DEFAULT_SEGMENT_FRAMES,
    DEFAULT_VIDEO_MODE,
    VIDEO_MODES,
    X264_PRESETS,
    ClipState,
    FrameDreamer,
    VideoSettings,
    VideoInfo,
    VideoWriter,
    check_frame_count,
    check_output_writable,
    dream_clip,
    file_identity,
    frame_range,
    probe_video,
    read_frames,
)
from ..video.loop import MaskProvider
from .animation_args import add_animation_arguments, animation_identity, colour_coherence_from_args, masks_from_args, plan_from_args
from .distributed_args import add_distributed_arguments
from .args import (
    SCHEDULE_HINT,
    HelpFormatter,
    Keyed,
    add_dream_arguments,
    number_or_schedule,
    pick_device,
    settings_from_args,
)

log = logging.getLogger("dream_core")

_V = VideoSettings()

#: Frame sides of a dreamed video are rounded to multiples of this (H.264 yuv420p).
_EVEN = 2


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~dream_core.video.settings.VideoSettings`, the flow, the range and the encoder."""
    g = p.add_argument_group("video")
    g.add_argument("--mode", choices=VIDEO_MODES, default=DEFAULT_VIDEO_MODE,
                   help="stable: flow-warped, decaying, occlusion-aware; seed: the original tool's rule; "
                        "independent: no flow (flickers)")
    scheduled = number_or_schedule(float, True)
    g.add_argument("--carry", type=scheduled, default=_V.carry,
                   help=f"stable: share of the previous dream carried (0..1){SCHEDULE_HINT}")
    g.add_argument("--temporal-weight", type=scheduled, default=_V.temporal_weight,
                   help=f"stable: per-step pull of reliable pixels to the warped previous dream (0..1){SCHEDULE_HINT}")
    g.add_argument("--later-iterations", type=scheduled, default=_V.later_iterations,
                   help=f"stable: iterations on frames after the first, as a fraction{SCHEDULE_HINT}")
    g.add_argument("--occlusion-feather", type=scheduled, default=_V.occlusion_feather,
                   help=f"stable: blur (pixels) of the edge where the flow is unreliable{SCHEDULE_HINT}")
    g.add_argument("--flow", choices=FLOW_METHODS, default=DEFAULT_FLOW_METHOD, help="optical flow method")
    g.add_argument("--flow-weights", default=None, help="RAFT weights file (.pth); none: torchvision's download")
    g.add_argument("--start", type=int, default=0, help="first frame to dream (0-based)")
    g.add_argument("--end", type=int, default=None, help="stop before this frame; none: the end of the clip")
    g.add_argument("--start-image", default=None, help="dreamed version of the first frame (e.g. from an earlier run)")
    add_output_arguments(g)
    g.add_argument("--no-audio", action="store_true", help="do not copy the audio track")


def add_output_arguments(g: "argparse._ArgumentGroup | argparse.ArgumentParser") -> None:
    """The encoder and resume flags of every command that writes a video."""
    g.add_argument("--crf", type=float, default=18,
                   help="x264 quality of the output, 0..51 (lower = better, 0 = lossless); segments are kept near "
                        "lossless until the run finishes, then encoded once at this quality")
    g.add_argument("--x264-preset", choices=X264_PRESETS, default="medium",
                   help="x264 speed preset of the output (slower = smaller file)")
    g.add_argument("--segment-frames", type=int, default=DEFAULT_SEGMENT_FRAMES,
                   help="frames per committed output segment (at most this many are redone after a crash)")
    g.add_argument("--no-resume", action="store_true", help="start over even if an unfinished run exists")


def video_settings_from_args(args: argparse.Namespace) -> VideoSettings:
    """The :class:`VideoSettings` the video flags describe, validated."""
    values = {name: getattr(args, name) for name in ("carry", "temporal_weight", "later_iterations", "occlusion_feather")}
    video = VideoSettings(mode=args.mode, colour_coherence=colour_coherence_from_args(args),
                          **{k: getattr(_V, k) if isinstance(v, Keyed) else v for k, v in values.items()})
    video.validate()
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
    info = probe_video(args.input)
    frames = frame_range(info.num_frames, args.start, args.end)
    if video.needs_flow:
        check_frame_count(info, purpose=f"video mode '{video.mode}'")
    model = load(args.model, args.weights, device) if load else load_model(args.model, weights=args.weights,
                                                                             device=device)
    plan = plan_from_args(args, model, settings, video, fps=info.frame_rate, cadence_start=frames.start)
    plan.check(frames)
    masks = masks_from_args(args)
    objective = plan(frames.start).objective
    size = fit_size(info.height, info.width, args.max_side, multiple=_EVEN)
    for index in (frames.start, frames.stop - 1):
        check_image_for_dream(torch.zeros(1, 3, *size), model, plan(index).settings)
    identity = {
        "model": model.name, "weights": file_identity(args.weights), "objective": objective.to_string(),
        "dream": dataclasses.asdict(settings), "video": dataclasses.asdict(video), "end": frames.stop,
        "size": size, "flow": args.flow, "flow_weights": file_identity(args.flow_weights),
        "start_image": file_identity(args.start_image), "animation": animation_identity(args),
    }
    return VideoRun(settings, video, info, frames, size, model, objective, plan, masks, identity)


def run_video(args: argparse.Namespace) -> int:
    """Dream a video file to a video file: reader -> :func:`dream_clip` -> writer (or segments on Ray workers)."""
    from tqdm import tqdm

    if getattr(args, "workers", 1) > 1 or getattr(args, "ray_address", None):  # demo and animate have neither
        from .distributed import run_video_distributed

        return run_video_distributed(args)
    device = pick_device(args.device)
    run = check_video_run(args, device)
    settings, video, info, frames, model, plan, masks = (run.settings, run.video, run.info, run.frames, run.model,
                                                         run.plan, run.masks)
    objective, run_settings = run.objective, run.identity
    estimator = FlowEstimator(args.flow, weights=args.flow_weights) if video.needs_flow else None
    start_image = load_image(args.start_image) if args.start_image else None
    writer = VideoWriter(args.output, info.frame_rate, source=args.input, start_frame=frames.start,
                         settings=run_settings, crf=args.crf, x264_preset=args.x264_preset,
                         segment_frames=args.segment_frames, resume=not args.no_resume, audio=not args.no_audio)
    with writer, FrameDreamer(model, objective, settings, video, start_image=start_image) as dreamer:
        rank_clip(dreamer.ranks, model, plan.objectives, lambda: fit_max_side(from_uint8_hwc(
            next(read_frames(args.input, frames.start, frames.start + 1, info.num_frames)), device),
            args.max_side, multiple=_EVEN))  # ranked picks: on the run's first frame, resumed or not
        point = writer.resume_point()
        start = None
        if point.frames_done and point.carry is not None:
            start = ClipState.from_carry(point.next_frame - 1, point.carry, device)
            log.info("Resuming at frame %d (%d frames already done).", point.next_frame, point.frames_done)
        raw = ((index, fit_max_side(from_uint8_hwc(arr, device), args.max_side, multiple=_EVEN))
               for index, arr in enumerate(read_frames(args.input, point.next_frame, frames.stop, info.num_frames),
                                           point.next_frame))
        bar = tqdm(total=len(frames), initial=point.frames_done, unit="frame", desc="dreaming video",
                   dynamic_ncols=True)
        t0 = time.perf_counter()
        for done in dream_clip(dreamer, raw, estimator, start=start, plan=plan, masks=masks):
            # Device tensors: the writer copies the carry to the host only when it commits a segment.
            writer.write(to_uint8_hwc(done.image), carry=done.state.carry())
            bar.update(1)
        bar.close()
    log.info("Wrote %s: %d frames at %s fps in %.1f s", args.output, len(frames), info.frame_rate,
             time.perf_counter() - t0)
    return 0


def add_video_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("video", help="dream a video file (flow-stable; keeps audio and frame rate)",
                       description="Dream a video file frame by frame with optical flow keeping the dream stable.",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="input video (mp4, mov, mkv, ...)")
    p.add_argument("output", help="output video (.mp4, .mov, .mkv)")
    add_clip_arguments(p)
    p.set_defaults(func=run_video)


def add_clip_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of dreaming a clip (``video`` and ``batch``): dream, video, animation, workers."""
    add_dream_arguments(p, schedules=True)
    add_video_arguments(p)
    add_animation_arguments(p, cadence=True, motion_help="drift of the carried dream over the scene")
    add_distributed_arguments(p)
