"""``video IN OUT``: the file through the one pipeline into the resumable writer.

Frames stream from the decoder through :func:`~dream_core.pipeline.render_range`
into the encoder one at a time (memory does not grow with clip length); decoding,
the next frame's flow and encoding run on threads while the model dreams. Flow
is estimated on the fly between consecutive raw frames at the dream
resolution. Output is written in committed segments next to ``OUT``; a run
stopped half-way continues from the last committed frame when started again
with the same arguments.
"""

from __future__ import annotations

import argparse
import logging
import time

from ..clip import FrameDreamer
from ..flow import DEFAULT_FLOW_METHOD, FLOW_METHODS, FlowEstimator
from ..image_io import load_image
from ..pipeline import VideoFileSource, WriterSink, open_writer, render_range, resume_state
from ..video import DEFAULT_SEGMENT_FRAMES, X264_PRESETS
from .animation_args import add_animation_arguments
from ..ranking import rank_clip
from .distributed_args import add_distributed_arguments
from .args import SETTINGS, HelpFormatter, add_dream_arguments, add_setting_argument, pick_device

from .video_run import check_video_run, output_options

log = logging.getLogger("dream_core")


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~dream_core.clip.settings.VideoSettings`, the flow, the range and the encoder."""
    g = p.add_argument_group("video")
    for name in ("mode", "carry", "temporal_weight", "later_iterations", "occlusion_feather"):
        add_setting_argument(g, SETTINGS[name], schedules=True)
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
    g.add_argument("--no-overlap", action="store_true",
                   help="decode, estimate the flow and encode between dreams instead of on threads while the model "
                        "dreams (the output is the same). The threads run only when the model is on a CUDA GPU: on the "
                        "CPU they compete with the dream for the cores")


def run_video(args: argparse.Namespace) -> int:
    """Dream a video file to a video file: :func:`~dream_core.pipeline.render_range` from the file into the
    resumable writer (or segments on Ray workers)."""
    from tqdm import tqdm

    if getattr(args, "workers", 1) > 1 or getattr(args, "ray_address", None):  # demo and animate have neither
        from .distributed import run_video_distributed

        return run_video_distributed(args)
    device = pick_device(args.device)
    run = check_video_run(args, device)
    estimator = FlowEstimator(args.flow, weights=args.flow_weights) if run.video.needs_flow else None
    start_image = load_image(args.start_image) if args.start_image else None
    writer = open_writer(args.output, run.info.frame_rate, output_options(args), source=args.input,
                         start_frame=run.frames.start, identity=run.identity)
    t0 = time.perf_counter()
    with writer, FrameDreamer(run.model, run.objective, run.settings, run.video, start_image=start_image) as dreamer:
        # ranked picks (layer:strong8): on the run's first frame, resumed or not
        point, start = resume_state(writer, device)
        source = VideoFileSource(args.input, range(point.next_frame, run.frames.stop), max_side=args.max_side,
                                 device=device, num_frames=run.info.num_frames)
        rank_clip(dreamer.ranks, run.model, run.plan.objectives, lambda: source.frame(run.frames.start))
        with tqdm(total=len(run.frames), initial=point.frames_done, unit="frame", desc="dreaming video",
                  dynamic_ncols=True) as bar:
            render_range(source, dreamer, estimator, WriterSink(writer), start=start, plan=run.plan, masks=run.masks,
                         on_frame=lambda _: bar.update(1), overlap=False if args.no_overlap else None)
    log.info("Wrote %s: %d frames at %s fps in %.1f s", args.output, len(run.frames), run.info.frame_rate,
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
