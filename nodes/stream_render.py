"""The streaming node's run: decoder -> frame loop -> resumable writer, with ComfyUI's progress and Cancel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..dream_core import DreamModel, DreamSettings, VideoSettings
from ..dream_core.clip import ClipPlan, ClipState, FrameDreamer, dream_clip
from ..dream_core.clip.loop import MaskProvider
from ..dream_core.flow import FlowEstimator
from ..dream_core.image_io import from_uint8_hwc, to_uint8_hwc
from ..dream_core.image_ops import resize
from ..dream_core.video import VideoInfo, VideoWriter, read_frames
from . import comfy_adapter as host

log = logging.getLogger(__name__)

#: Progress units per frame (the bar moves within a frame as its steps run).
UNITS = 100


@dataclass
class StreamJob:
    """A checked streaming run: what to read, what to write, how to dream.

    Attributes:
        source: the video file frames are decoded from.
        output: the file to write (its work folder sits next to it).
        info: ``probe_video(source)``.
        frames: global indices of the frames to dream.
        size: ``(height, width)`` the frames are dreamed (and written) at.
        identity: what a resumed run must share with this one (the writer's ``settings``).
    """

    source: Path
    output: Path
    info: VideoInfo
    frames: range
    size: tuple[int, int]
    model: DreamModel
    plan: ClipPlan
    settings: DreamSettings
    video: VideoSettings
    masks: Optional[MaskProvider]
    flow_method: str
    crf: int
    audio: bool
    identity: Mapping[str, Any]


def render(job: StreamJob, device: torch.device) -> None:
    """Dream ``job`` on ``device`` into ``job.output``, continuing an unfinished run of the same identity.

    Progress per step on the node, a preview now and then; Cancel (ComfyUI's interrupt) is checked at
    every step and every frame: the frames written so far are committed for the next run.
    """
    frames = job.frames
    estimator = FlowEstimator(job.flow_method) if job.video.needs_flow else None
    writer = VideoWriter(job.output, job.info.frame_rate, source=job.source, start_frame=frames.start,
                         settings=job.identity, crf=job.crf, resume=True, audio=job.audio)
    progress = host.Progress(len(frames) * UNITS)

    def on_step(index: int, step: int, total: int, current: torch.Tensor) -> None:
        host.check_interrupt()
        progress.update((index - frames.start) * UNITS + (UNITS - 1) * step // total, current)

    objective = job.plan(frames.start).objective
    try:
        with writer, FrameDreamer(job.model, objective, job.settings, job.video) as dreamer:
            point = writer.resume_point()
            start = None
            if point.frames_done:
                log.info("Continuing %s at frame %d (%d of %d frames done).", job.output.name, point.next_frame,
                         point.frames_done, len(frames))
                progress.update(point.frames_done * UNITS)
                if point.carry is not None:
                    start = ClipState.from_carry(point.next_frame - 1, point.carry, device)
            raw = ((index, resize(from_uint8_hwc(arr, device), job.size))
                   for index, arr in enumerate(read_frames(job.source, point.next_frame, frames.stop,
                                                           job.info.num_frames), point.next_frame))
            for done in dream_clip(dreamer, raw, estimator, start=start, on_step=on_step, plan=job.plan,
                                   masks=job.masks):
                writer.write(to_uint8_hwc(done.image), carry=done.state.carry())
                progress.update((done.index + 1 - frames.start) * UNITS, done.image)
                host.check_interrupt()
    except BaseException as exc:
        if host.is_interrupt(exc):
            log.info("Cancelled: %d frames of %s are kept in its work folder; queue the same prompt again to "
                     "continue.", writer.frames_done, job.output.name)
        raise

