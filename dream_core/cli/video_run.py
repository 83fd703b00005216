"""The flags of ``video`` -> the core's run check (:func:`dream_core.pipeline.check_video_run`): shared by one
worker (:mod:`.video`) and many (:mod:`.distributed`)."""

from __future__ import annotations

import argparse
import functools
from fractions import Fraction
from typing import Optional

import torch

from ..clip import VideoSettings
from ..clip.plan import ClipPlan
from ..models.spec import DreamModel
from ..pipeline import ModelLoader, OutputOptions, VideoRequest, VideoRun
from ..pipeline import check_video_run as check_request
from ..settings import DreamSettings
from .animation_args import animation_identity, colour_coherence_from_args, masks_from_args, plan_from_args
from .args import Keyed, settings_from_args

_V = VideoSettings()


def video_settings_from_args(args: argparse.Namespace) -> VideoSettings:
    """The :class:`VideoSettings` the video flags describe, validated."""
    values = {name: getattr(args, name) for name in ("carry", "temporal_weight", "later_iterations", "occlusion_feather")}
    video = VideoSettings(mode=args.mode, colour_coherence=colour_coherence_from_args(args),
                          **{k: getattr(_V, k) if isinstance(v, Keyed) else v for k, v in values.items()})
    video.validate()
    return video


def output_options(args: argparse.Namespace) -> OutputOptions:
    """The encoder and resume flags (:func:`~.video.add_output_arguments`)."""
    return OutputOptions(crf=args.crf, x264_preset=args.x264_preset, segment_frames=args.segment_frames,
                         resume=not args.no_resume, audio=not getattr(args, "no_audio", False))


def request_from_args(args: argparse.Namespace) -> VideoRequest:
    """The :class:`~dream_core.pipeline.VideoRequest` the ``video`` flags describe (settings validated)."""
    return VideoRequest(
        input=args.input, output=args.output, settings=settings_from_args(args), video=video_settings_from_args(args),
        model=args.model, weights=args.weights, start=args.start, end=args.end, max_side=args.max_side,
        flow=args.flow, flow_weights=args.flow_weights, start_image=args.start_image,
    )


def _plan(args: argparse.Namespace, settings: DreamSettings, video: VideoSettings, model: DreamModel,
          fps: Optional[Fraction], cadence_start: int) -> ClipPlan:
    return plan_from_args(args, model, settings, video, fps=fps, cadence_start=cadence_start)


def check_video_run(args: argparse.Namespace, device: torch.device, load: Optional[ModelLoader] = None) -> VideoRun:
    """Parse the ``video`` flags and check the run against the input and the model (loaded on ``device`` after
    the other checks, with ``load(name, weights, device)`` when given, e.g. a per-process cache).

    Raises:
        DreamError: bad flags, an unreadable input or output, a model or objective that does not fit.
    """
    request = request_from_args(args)
    return check_request(request, device, plan=functools.partial(_plan, args, request.settings, request.video),
                         masks=masks_from_args(args), load=load, identity={"animation": animation_identity(args)})
