"""``video IN OUT --workers N``: the clip split into segments dreamed on Ray workers, joined by the writer.

The driver (this process) checks the flags as the one-worker command does, plans
the segments (:func:`~dream_core.distributed.segments.choose_plan`), and hands
:func:`~dream_core.distributed.runner.render_segments` a picklable
:class:`~dream_core.distributed.job.SegmentJob`; results are committed to the same
resumable writer, so a run stopped half-way resumes with the same command.
"""

from __future__ import annotations

import argparse
import functools
import logging
from fractions import Fraction
from typing import Optional

import torch

from ..clip.plan import ClipPlan
from ..distributed.assemble import Assembler
from ..distributed.job import SegmentJob, cached_model
from ..distributed.runner import check_address, render_segments, require_ray
from ..distributed.segments import choose_plan
from ..dream import DreamSettings
from ..image_io import load_image, to_uint8_hwc
from ..models.spec import DreamModel
from ..pipeline import open_writer
from ..clip import VideoSettings
from ..clip.loop import MaskProvider
from .animation_args import masks_from_args, plan_from_args
from .paths import absolute_paths
from .video_run import check_video_run, output_options

log = logging.getLogger("dream_core")


def _plan_on_worker(args: argparse.Namespace, settings: DreamSettings, video: VideoSettings, fps: Fraction,
                    cadence_start: int, model: DreamModel) -> tuple[ClipPlan, Optional[MaskProvider]]:
    """The per-frame plan and masks, built on the worker from the same flags (a :data:`PlanFactory`)."""
    return plan_from_args(args, model, settings, video, fps=fps, cadence_start=cadence_start), masks_from_args(args)


def video_job(args: argparse.Namespace, run_settings: DreamSettings, video: VideoSettings, fps: Fraction,
              frames: range, model_name: str) -> SegmentJob:
    """The :class:`SegmentJob` the ``video`` flags describe."""
    # As the one-worker command: the frame dreamer resizes it to the frames' size.
    start_image = to_uint8_hwc(load_image(args.start_image)) if args.start_image else None
    return SegmentJob(
        source=str(args.input), rate=fps, first_frame=frames.start, max_side=args.max_side,
        model=model_name, weights=args.weights, objective=args.layers, settings=run_settings, video=video,
        flow=args.flow, flow_weights=args.flow_weights, crf=args.crf, device=args.device,
        plan=functools.partial(_plan_on_worker, args, run_settings, video, fps, frames.start),
        start_image=start_image, overlap=False if getattr(args, "no_overlap", False) else None,
    )


def run_video_distributed(args: argparse.Namespace) -> int:
    """Dream ``args.input`` on ``args.workers`` Ray workers into ``args.output`` (resumable)."""
    require_ray()  # fail at once, before any work, when Ray is missing
    if args.ray_address:
        check_address(args.ray_address)  # within seconds, before the model is loaded
    args = absolute_paths(args)  # a worker's working folder is not this one (a cluster started elsewhere)
    # The driver only checks (once per process, however many clips a batch holds); workers load their own.
    run = check_video_run(args, torch.device("cpu"), load=cached_model)
    plan = choose_plan(run.frames, args.workers, mode=run.video.mode, segment_length=args.segment_length,
                       burn_in=args.burn_in, overlap=args.overlap)
    layout = {"segment_length": len(plan[0].keep), "burn_in": max(s.burn_in for s in plan),
              "overlap": plan[0].overlap_out if len(plan) > 1 else 0}
    log.info("%d frames in %d segment(s) of %d, burn-in %d, cross-fade %d.", len(run.frames), len(plan),
             layout["segment_length"], layout["burn_in"], layout["overlap"])
    identity = dict(run.identity, segments=layout)
    writer = open_writer(args.output, run.info.frame_rate, output_options(args), source=args.input,
                         start_frame=run.frames.start, identity=identity)
    job = video_job(args, run.settings, run.video, run.info.frame_rate, run.frames, run.model.name)
    with writer:
        assembler = Assembler(writer, plan, run.info.frame_rate, args.crf)
        if writer.frames_done:
            log.info("Resuming: %d frames already done; segments %s to dream.", writer.frames_done,
                     assembler.needed())
        stats = render_segments(job, plan, assembler, workers=args.workers, address=args.ray_address,
                                threads=args.threads, max_retries=args.max_retries)
    per_frame = sum(stats.seconds.values()) / max(1, sum(stats.frames_dreamed.values()))
    log.info("Wrote %s: %d frames at %s fps in %.1f s (%d segments dreamed, %.2f s per dreamed frame per worker).",
             args.output, len(run.frames), run.info.frame_rate, stats.wall, len(stats.dreamed), per_frame)
    return 0
