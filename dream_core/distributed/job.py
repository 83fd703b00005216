"""Dreaming one segment of a clip on its own: what a worker runs (no Ray in here).

:func:`dream_segment` decodes the segment's frame range from the source (seeking),
dreams it with the one frame loop (:func:`~dream_core.clip.loop.dream_clip`) from a
fresh start at its first burn-in frame, and returns what the driver needs to
assemble the output (:class:`SegmentResult`): the body frames encoded as one
near-lossless segment (the writer's own segment format, so the driver commits the
bytes as they are) and the raw ``uint8`` frames of the two overlaps, which the
driver cross-fades with the neighbours'.

Determinism: a frame's dream depends only on its raw frame, the flow from the
previous raw frame, the carried state and the settings. The jitter generator is
re-seeded with ``settings.seed`` for every frame (:func:`~dream_core.dream.dream_image`),
and schedules and cadence are looked up by *global* frame index, so a segment
redone, on any worker, gives the same frames (same device, dtype and thread count).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Optional

import av
import numpy as np
import torch

from ..dream import DreamSettings
from ..errors import VideoError
from ..flow.estimate import DEFAULT_FLOW_METHOD, FlowEstimator
from ..image_io import from_uint8_hwc, to_uint8_hwc
from ..image_ops import fit_max_side
from ..models import load_model
from ..models.spec import DreamModel
from ..ranking import rank_clip
from ..video.encoder import SEGMENT_PRESET, H264Encoder, pad_to_even, segment_crf
from ..clip.frame_dreamer import FrameDreamer
from ..clip.loop import MaskProvider, PlanSource, dream_clip
from ..video.reader import read_frames
from ..clip.settings import VideoSettings
from ..video.writer import SEGMENT_FORMAT
from .segments import Segment

log = logging.getLogger(__name__)

#: ``make(model) -> (plan, masks)``: builds the per-frame plan and mask source on the worker (they hold the
#: model, so they are made where it lives). Must be picklable (a module-level function or a ``partial``).
PlanFactory = Callable[[DreamModel], "tuple[Optional[PlanSource], Optional[MaskProvider]]"]

#: ``report(segment, kept_done, dreamed)`` after every frame a worker dreams.
SegmentReport = Callable[[int, int, int], None]

#: Frames of sides rounded to this (H.264 ``yuv420p`` needs even sides).
EVEN = 2


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs to dream any segment of one clip (picklable, no tensors).

    Attributes:
        source: the input video (a path every worker can read: on a cluster, a shared file system).
        rate: the clip's exact frame rate (the segments' encoding rate).
        first_frame: global index of the run's first frame (only there is ``start_image`` used).
        max_side: frames are resized as the single-worker command does (``None``: kept).
        model, weights: the model to load (once per worker process, :func:`cached_model`).
        objective: objective string (``None``: the model's own), used when ``plan`` gives none.
        settings, video: the dream and video settings.
        flow, flow_weights: optical-flow method and RAFT weights.
        crf: the output's x264 CRF; segments are encoded at ``segment_crf(crf)`` (``0``: lossless).
        device: ``None``: CUDA when the worker sees a GPU, else the CPU.
        plan: builds per-frame schedules/cadence and masks on the worker, or ``None``.
        start_image: dreamed version of the run's first frame ``(H,W,3) uint8``, or ``None``.
        fail_once: ``(segment, marker file)``: the worker process dies (``os._exit``) after the first
            kept frame of that segment unless the marker exists, which it creates first. For fault
            tests and the benchmark; ``None`` in real runs.
    """

    source: str
    rate: Fraction
    first_frame: int
    max_side: Optional[int]
    model: str
    weights: Optional[str]
    objective: Optional[str]
    settings: DreamSettings
    video: VideoSettings
    flow: str = DEFAULT_FLOW_METHOD
    flow_weights: Optional[str] = None
    crf: float = 18.0
    device: Optional[str] = None
    plan: Optional[PlanFactory] = None
    start_image: Optional[np.ndarray] = None
    fail_once: Optional[tuple[int, str]] = None


@dataclass(frozen=True)
class SegmentResult:
    """What a worker returns for one segment (see :class:`~dream_core.distributed.segments.Segment`).

    Attributes:
        number: the segment's number in the plan.
        body: its ``body`` frames encoded as one writer segment (:data:`~dream_core.video.writer.SEGMENT_FORMAT`).
        body_frames: how many frames ``body`` holds.
        size: ``(width, height)`` of the frames.
        blend_in: its dream of the previous segment's ``blend_out`` frames, ``(overlap_in, H, W, 3) uint8``.
        blend_out: its ``blend_out`` frames, ``(overlap_out, H, W, 3) uint8``.
        dreamed: frames dreamed (burn-in included).
        seconds: wall time of the segment on the worker (model load included when it happened).
        worker: ``host:pid`` of the worker process.
    """

    number: int
    body: bytes
    body_frames: int
    size: tuple[int, int]
    blend_in: np.ndarray
    blend_out: np.ndarray
    dreamed: int
    seconds: float
    worker: str


_MODELS: dict[tuple[str, Optional[str], str], DreamModel] = {}
_FLOWS: dict[tuple[str, Optional[str]], FlowEstimator] = {}


def cached_model(name: str, weights: Optional[str], device: torch.device) -> DreamModel:
    """The model, loaded once per process (a Ray worker dreams many segments with it)."""
    key = (name, weights, str(device))
    if key not in _MODELS:
        _MODELS[key] = load_model(name, weights=weights, device=device)
    return _MODELS[key]


def _cached_flow(method: str, weights: Optional[str]) -> FlowEstimator:
    key = (method, weights)
    if key not in _FLOWS:
        _FLOWS[key] = FlowEstimator(method, weights=weights)
    return _FLOWS[key]


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode_segment(frames: Iterable[np.ndarray], rate: Fraction, crf: float) -> tuple[bytes, int]:
    """Frames ``(H,W,3) uint8`` (even sides) encoded as a writer segment at ``segment_crf(crf)``.

    Returns:
        ``(file bytes, frame count)``.
    """
    buffer = io.BytesIO()
    count = 0
    with av.open(buffer, "w", format=SEGMENT_FORMAT) as container:
        encoder: Optional[H264Encoder] = None
        for frame in frames:
            if encoder is None:
                encoder = H264Encoder(container, rate, frame.shape[1], frame.shape[0], segment_crf(crf), SEGMENT_PRESET)
            for packet in encoder.encode(frame):
                container.mux(packet)
            count += 1
        if encoder is not None:
            for packet in encoder.flush():
                container.mux(packet)
    return buffer.getvalue(), count


def _device(name: Optional[str]) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dream_segment(job: SegmentJob, segment: Segment, report: Optional[SegmentReport] = None) -> SegmentResult:
    """Dream ``segment.dream`` from a fresh start and return its body (encoded) and overlaps (raw).

    Args:
        job: the clip's job.
        segment: the segment to dream (global frame indices).
        report: called after every dreamed frame (progress).

    Raises:
        VideoError: the source has fewer frames than the segment needs.
        DreamError: whatever the frame loop raises for bad settings.
    """
    t0 = time.perf_counter()
    device = _device(job.device)
    model = cached_model(job.model, job.weights, device)
    plan, masks = job.plan(model) if job.plan is not None else (None, None)
    objective = plan(segment.dream.start).objective if plan is not None else job.objective
    estimator = _cached_flow(job.flow, job.flow_weights) if job.video.needs_flow else None
    start_image = None
    if job.start_image is not None and segment.dream.start == job.first_frame:
        start_image = from_uint8_hwc(job.start_image)
    raw = ((index, fit_max_side(from_uint8_hwc(arr, device), job.max_side, multiple=EVEN))
           for index, arr in enumerate(read_frames(job.source, segment.dream.start, segment.dream.stop),
                                       segment.dream.start))
    blend_in: list[np.ndarray] = []
    blend_out: list[np.ndarray] = []
    body: list[np.ndarray] = []
    dreamed = kept = 0
    with FrameDreamer(model, objective, job.settings, job.video, start_image=start_image) as dreamer:
        # Ranked picks: on the run's first frame, as the one-worker command ranks them, whichever segment this is.
        rank_clip(dreamer.ranks, model, getattr(plan, "objectives", [dreamer.objective]), lambda: fit_max_side(
            from_uint8_hwc(next(read_frames(job.source, job.first_frame, job.first_frame + 1)), device),
            job.max_side, multiple=EVEN))
        for done in dream_clip(dreamer, raw, estimator, plan=plan, masks=masks):
            frame = pad_to_even(to_uint8_hwc(done.image))  # yuv420p, as the one-worker writer pads it
            dreamed += 1
            if done.index in segment.blend_in:
                blend_in.append(frame)
            elif done.index in segment.body:
                body.append(frame)
            elif done.index in segment.blend_out:
                blend_out.append(frame)
            if done.index in segment.keep:
                kept += 1
                _maybe_fail(job, segment)
            if report is not None:
                report(segment.number, kept, dreamed)
    if dreamed != len(segment.dream):
        raise VideoError(f"'{job.source}' ended after frame {segment.dream.start + dreamed - 1}; segment "
                         f"{segment.number} needs frames {segment.dream.start}..{segment.dream.stop - 1}.")
    data, count = encode_segment(body, job.rate, job.crf)
    height, width = body[0].shape[:2]
    empty = np.zeros((0, height, width, 3), np.uint8)
    return SegmentResult(
        number=segment.number, body=data, body_frames=count, size=(width, height),
        blend_in=np.stack(blend_in) if blend_in else empty, blend_out=np.stack(blend_out) if blend_out else empty,
        dreamed=dreamed, seconds=time.perf_counter() - t0, worker=worker_name(),
    )


def _maybe_fail(job: SegmentJob, segment: Segment) -> None:
    """The fault hook of :attr:`SegmentJob.fail_once`: die like a killed process, once."""
    if job.fail_once is None or job.fail_once[0] != segment.number:
        return
    marker = Path(job.fail_once[1])
    if marker.exists():
        return
    marker.write_text(worker_name())
    log.warning("fail_once: worker %s exits in the middle of segment %d.", worker_name(), segment.number)
    os._exit(1)
