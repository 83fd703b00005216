"""``video IN OUT``: reader -> the one frame loop -> writer, streaming and resumable.

Frames stream from the decoder through :func:`~dream_core.clip.loop.dream_clip`
into the encoder one at a time (memory does not grow with clip length). Flow
is estimated on the fly between consecutive raw frames at the dream
resolution. Output is written in committed segments next to ``OUT``; a run
stopped half-way continues from the last committed frame when started again
with the same arguments.
"""

from __future__ import annotations

import argparse
import logging
import time

from ..clip import DEFAULT_VIDEO_MODE, VIDEO_MODES, ClipState, FrameDreamer, VideoSettings, dream_clip
from ..flow import DEFAULT_FLOW_METHOD, FLOW_METHODS, FlowEstimator
from ..image_io import from_uint8_hwc, load_image, to_uint8_hwc
from ..image_ops import fit_max_side
from ..video import DEFAULT_SEGMENT_FRAMES, X264_PRESETS, VideoWriter, read_frames
from .animation_args import add_animation_arguments
from .distributed_args import add_distributed_arguments
from .args import (
    SCHEDULE_HINT,
    HelpFormatter,
    add_dream_arguments,
    number_or_schedule,
    pick_device,
)

from .video_run import EVEN, check_video_run

log = logging.getLogger("dream_core")

_V = VideoSettings()


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~dream_core.clip.settings.VideoSettings`, the flow, the range and the encoder."""
    g = p.add_argument_group("video")
    g.add_argument("--mode", choices=VIDEO_MODES, default=DEFAULT_VIDEO_MODE,
                   help="stable: flow-warped, decaying, occlusion-aware; seed: the original tool's rule; "
                        "independent: no flow (flickers)")
    scheduled = number_or_schedule(float, True)
    # default None: a flag given to a mode that never reads it is refused (video_run.video_settings_from_args)
    g.add_argument("--carry", type=scheduled, default=None,
                   help=f"stable: share of the previous dream carried (0..1){SCHEDULE_HINT} (default: {_V.carry})")
    g.add_argument("--temporal-weight", type=scheduled, default=None,
                   help=f"stable: per-step pull of reliable pixels to the warped previous dream (0..1){SCHEDULE_HINT} "
                        f"(default: {_V.temporal_weight})")
    g.add_argument("--later-iterations", type=scheduled, default=None,
                   help=f"stable: iterations on frames after the first, as a fraction{SCHEDULE_HINT} "
                        f"(default: {_V.later_iterations})")
    g.add_argument("--occlusion-feather", type=scheduled, default=None,
                   help=f"stable, and seed with a cadence: blur (pixels) of the edge where the flow is unreliable"
                        f"{SCHEDULE_HINT} (default: {_V.occlusion_feather})")
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
        point = writer.resume_point()
        start = None
        if point.frames_done and point.carry is not None:
            start = ClipState.from_carry(point.next_frame - 1, point.carry, device)
            log.info("Resuming at frame %d (%d frames already done).", point.next_frame, point.frames_done)
        raw = ((index, fit_max_side(from_uint8_hwc(arr, device), args.max_side, multiple=EVEN))
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
