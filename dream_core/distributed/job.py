"""Dreaming one segment of a clip on its own: what a worker runs (no Ray in here).

:func:`dream_segment` runs the one pipeline (:func:`~dream_core.pipeline.render_range`)
over the segment's frame range of the source (decoded from a seek) from a fresh start
at its first burn-in frame, and returns what the driver needs to
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
from ..flow.estimate import DEFAULT_FLOW_METHOD, FlowEstimator
from ..image_io import from_uint8_hwc, to_uint8_hwc
from ..models import load_model
from ..models.spec import DreamModel
from ..ranking import rank_clip
from ..video.encoder import SEGMENT_PRESET, H264Encoder, pad_to_even, segment_crf
from ..clip.frame_dreamer import FrameDreamer
from ..clip.loop import DreamedFrame, MaskProvider, PlanSource
from ..clip.settings import VideoSettings
from ..pipeline import VideoFileSource, render_range
from ..pipeline.sinks import check_dreamed_frame
from ..video.writer import SEGMENT_FORMAT
from .segments import Segment

log = logging.getLogger(__name__)

#: ``make(model) -> (plan, masks)``: builds the per-frame plan and mask source on the worker (they hold the
#: model, so they are made where it lives). Must be picklable (a module-level function or a ``partial``).
PlanFactory = Callable[[DreamModel], "tuple[Optional[PlanSource], Optional[MaskProvider]]"]

#: ``report(segment, kept_done, dreamed)`` after every frame a worker dreams.
SegmentReport = Callable[[int, int, int], None]


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
        overlap: decode, estimate flows and encode on threads while the model dreams
            (:func:`~dream_core.pipeline.render_range`; the same frames either way; ``None``: on a CUDA GPU only).
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
    overlap: Optional[bool] = None


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
    sink = SegmentSink(segment)
    done_so_far = {"kept": 0, "dreamed": 0}

    def on_frame(done: DreamedFrame) -> None:
        done_so_far["dreamed"] += 1
        if done.index in segment.keep:
            done_so_far["kept"] += 1
            _maybe_fail(job, segment)
        if report is not None:
            report(segment.number, done_so_far["kept"], done_so_far["dreamed"])

    source = VideoFileSource(job.source, segment.dream, max_side=job.max_side, device=device)
    with FrameDreamer(model, objective, job.settings, job.video, start_image=start_image) as dreamer:
        # Ranked picks: on the run's first frame, as the one-worker command ranks them, whichever segment this is.
        rank_clip(dreamer.ranks, model, getattr(plan, "objectives", [dreamer.objective]),
                  lambda: source.frame(job.first_frame))
        dreamed = render_range(source, dreamer, estimator, sink, plan=plan, masks=masks, on_frame=on_frame,
                               overlap=job.overlap)
    data, count = encode_segment(sink.body, job.rate, job.crf)
    height, width = sink.body[0].shape[:2]
    empty = np.zeros((0, height, width, 3), np.uint8)
    return SegmentResult(
        number=segment.number, body=data, body_frames=count, size=(width, height),
        blend_in=np.stack(sink.blend_in) if sink.blend_in else empty,
        blend_out=np.stack(sink.blend_out) if sink.blend_out else empty,
        dreamed=dreamed, seconds=time.perf_counter() - t0, worker=worker_name(),
    )


class SegmentSink:
    """A segment's dreamed frames, sorted into its parts as ``(H,W,3) uint8`` padded to even sides (as the
    one-worker writer pads them): its dream of the previous segment's ``blend_out`` (``blend_in``), its
    ``body`` and its ``blend_out``; the other burn-in frames are dropped."""

    background = True

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        self.blend_in: list[np.ndarray] = []
        self.body: list[np.ndarray] = []
        self.blend_out: list[np.ndarray] = []

    def write(self, done: DreamedFrame) -> None:
        seg = self.segment
        part = (self.blend_in if done.index in seg.blend_in else self.body if done.index in seg.body
                else self.blend_out if done.index in seg.blend_out else None)
        if part is not None:
            check_dreamed_frame(bool(torch.isfinite(done.image).all()), done.index)
            part.append(pad_to_even(to_uint8_hwc(done.image)))  # yuv420p, as the one-worker writer pads it


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
