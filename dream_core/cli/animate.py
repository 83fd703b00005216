"""``animate START OUT --frames N``: a feedback animation ("infinite zoom") from a still image.

Each frame is the previous dreamed frame moved by ``--zoom/--rotate/--translate``
(schedulable) and dreamed again, through the one frame loop
(:class:`~dream_core.animation.FeedbackFrames` through :func:`~dream_core.pipeline.render_range`),
streamed into the same resumable writer as the video command (exact frame rate,
memory flat however many frames).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

from ..animation import FeedbackFrames, feedback_plan
from ..animation.feedback import DEFAULT_LATER_ITERATIONS
from ..image_io import load_image
from ..image_ops import fit_max_side
from ..models import load_model
from ..ranking import rank_clip
from ..video import file_identity
from ..clip import VideoSettings
from ..clip.frame_dreamer import FrameDreamer
from ..pipeline import EVEN, WriterSink, open_writer, render_range, resume_state
from ..video.output import check_output_writable, parse_rate
from .animation_args import add_animation_arguments, animation_identity, colour_coherence_from_args, masks_from_args, plan_from_args
from .args import SCHEDULE_HINT, HelpFormatter, Keyed, add_dream_arguments, number_or_schedule, pick_device, settings_from_args
from .paths import check_distinct_paths
from .video import add_output_arguments
from .video_run import output_options

log = logging.getLogger("dream_core")


def run_animate(args: argparse.Namespace) -> int:
    """Dream ``args.frames`` frames of a feedback animation from ``args.input`` into ``args.output``."""
    from tqdm import tqdm

    from ..errors import InvalidParameterError

    if args.frames < 1:
        raise InvalidParameterError(f"An animation needs at least 1 frame; got {args.frames}.", parameter="frames")
    rate = parse_rate(args.fps)
    settings = settings_from_args(args)
    check_output_writable(args.output, args.input)
    check_distinct_paths(args)
    later = args.later_iterations
    video = VideoSettings(mode="independent", colour_coherence=colour_coherence_from_args(args),
                          later_iterations=DEFAULT_LATER_ITERATIONS if isinstance(later, Keyed) else later)
    video.validate()
    start = fit_max_side(load_image(args.input, max_side=args.max_side), args.max_side, multiple=EVEN)
    h, w = start.shape[-2:]
    if h % 2 or w % 2:  # yuv420p: trim an odd row/column rather than stretch the picture
        start = start[..., : h - h % 2, : w - w % 2]
    device = pick_device(args.device)
    model = load_model(args.model, weights=args.weights, device=device)
    clip_plan = plan_from_args(args, model, settings, video, fps=rate, feedback=True)
    masks = masks_from_args(args)
    clip_plan.check(range(args.frames), size=tuple(start.shape[-2:]), masks=masks)
    plan = feedback_plan(clip_plan)  # each frame's later_iterations: the flag, or its schedule
    run_settings = {
        "command": "animate", "model": model.name, "weights": file_identity(args.weights),
        "start_image": file_identity(args.input),
        "objective": plan(0).objective.to_string(), "dream": dataclasses.asdict(settings), "frames": args.frames,
        "size": list(start.shape[-2:]), "animation": animation_identity(args), "later_iterations": args.later_iterations,
    }
    writer = open_writer(args.output, rate, output_options(args), identity=run_settings)
    t0 = time.perf_counter()
    with writer, FrameDreamer(model, plan(0).objective, settings, video, colour_reference=start.to(device)) as dreamer:
        rank_clip(dreamer.ranks, model, clip_plan.objectives, lambda: start)  # ranked picks: on the start image
        point, state = resume_state(writer, device)
        feedback = FeedbackFrames(dreamer, start.to(device), args.frames, lambda k: plan(k).motion,
                                  first=point.next_frame, previous=None if state is None else state.dream)
        with tqdm(total=args.frames, initial=point.frames_done, unit="frame", desc="dreaming animation",
                  dynamic_ncols=True) as bar:
            render_range(feedback, dreamer, None, WriterSink(writer), plan=plan, masks=masks,
                         on_frame=lambda _: bar.update(1), overlap=False if args.no_overlap else None)
    log.info("Wrote %s: %d frames at %s fps in %.1f s", args.output, args.frames, rate, time.perf_counter() - t0)
    return 0


def add_animate_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("animate", help="a zoom/rotate/translate feedback animation from a still image",
                       description="Dream a still image again and again, moving it a little before every frame "
                                   "(an 'infinite zoom'), into a video file.",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="start image (PNG/JPEG/WebP): frame 0 is this image dreamed")
    p.add_argument("output", help="output video (.mp4, .mov, .mkv)")
    p.add_argument("--frames", type=int, default=120, help="number of frames")
    p.add_argument("--fps", default="30", help="frame rate, e.g. 30, 24 or 30000/1001")
    p.add_argument("--later-iterations", type=number_or_schedule(float, True), default=DEFAULT_LATER_ITERATIONS,
                   help="iterations of the frames after the first, as a fraction: each starts from the previous "
                        f"dream (higher -> the picture saturates with creatures sooner){SCHEDULE_HINT}")
    add_dream_arguments(p, schedules=True)
    add_animation_arguments(p, cadence=False, motion_help="camera move between frames")
    g = p.add_argument_group("output")
    add_output_arguments(g)
    p.set_defaults(func=run_animate)
