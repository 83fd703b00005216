"""The output file of a run: the one place a resumable :class:`~dream_core.video.writer.VideoWriter` is made,
and where a resumed run picks up its state.

Typical use (what the ``video`` command does)::

    writer = open_writer(output, info.frame_rate, OutputOptions(crf=18), source=input,
                         start_frame=frames.start, identity=run.identity)
    with writer, FrameDreamer(model, objective, settings, video) as dreamer:
        point, state = resume_state(writer, model.device)
        source = VideoFileSource(input, range(point.next_frame, frames.stop), device=model.device)
        render_range(source, dreamer, FlowEstimator("dis"), WriterSink(writer), start=state)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Optional

import torch

from ..clip.loop import ClipState
from ..video.writer import DEFAULT_SEGMENT_FRAMES, ResumePoint, VideoWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    """How a run's output is encoded and resumed (see :class:`~dream_core.video.writer.VideoWriter`).

    Attributes:
        crf: x264 quality of the output, 0..51 (0 = lossless).
        x264_preset: x264 speed preset of the output.
        segment_frames: frames per committed segment (at most this many are redone after a crash).
        resume: continue a matching unfinished run; ``False`` starts over.
        audio: copy the source's audio.
    """

    crf: float = 18.0
    x264_preset: str = "medium"
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    resume: bool = True
    audio: bool = True


def open_writer(path: str | os.PathLike[str], rate: Fraction | int | str, options: OutputOptions = OutputOptions(), *,
                source: Optional[str | os.PathLike[str]] = None, start_frame: int = 0,
                identity: Optional[Mapping[str, Any]] = None) -> VideoWriter:
    """The resumable writer of ``path`` (a matching unfinished run in its work folder is picked up).

    Args:
        path: the output video.
        rate: its exact frame rate.
        options: encoding and resume options.
        source: the input video (audio, and its identity guards a resume), or ``None``.
        start_frame: the source index of the first frame written.
        identity: what a resumed run must share with this one (settings, model, ...; JSON data).

    Raises:
        InvalidParameterError, VideoError: as :class:`~dream_core.video.writer.VideoWriter`.
    """
    return VideoWriter(path, rate, source=source, start_frame=start_frame, settings=identity, crf=options.crf,
                       x264_preset=options.x264_preset, segment_frames=options.segment_frames,
                       resume=options.resume, audio=options.audio)


def resume_state(writer: VideoWriter, device: torch.device | str) -> tuple[ResumePoint, Optional[ClipState]]:
    """Where ``writer``'s run continues, and the carry state to continue from (``None`` on a fresh run).

    Returns:
        ``(point, state)``: ``point.next_frame`` is the first frame still to dream; ``state`` is the
        frame before it (:meth:`ClipState.from_carry <dream_core.clip.loop.ClipState.from_carry>`, on ``device``).
    """
    point = writer.resume_point()
    if not point.frames_done or point.carry is None:
        return point, None
    log.info("Resuming at frame %d (%d frames already done).", point.next_frame, point.frames_done)
    return point, ClipState.from_carry(point.next_frame - 1, point.carry, device)
