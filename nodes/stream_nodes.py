"""DeepDream Video (streaming): core's VIDEO in, VIDEO out; frames stream decoder -> frame loop -> encoder.

Memory does not grow with the clip's length: no IMAGE batch is made; the run is the one pipeline
(:func:`~dream_core.pipeline.render.render_range`: a :class:`~dream_core.pipeline.sources.VideoFileSource`
into a :class:`~dream_core.pipeline.sinks.WriterSink`), checked first by
:func:`~dream_core.pipeline.check.check_video_run`. The output is a file in ComfyUI's output folder whose
name holds a digest of the run's identity: queued again after Cancel or a crash, the same settings find
their work folder and continue after the last committed frame; a changed setting is another file, dreamed
from the start; a finished file is handed on at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..dream_core import DreamModel, Objective
from ..dream_core.animation import MaskBatch, VideoMask
from ..dream_core.clip import ClipPlan, FrameDreamer, Schedule
from ..dream_core.clip.loop import DreamedFrame
from ..dream_core.errors import DeviceMemoryError, InvalidParameterError
from ..dream_core.flow import DEFAULT_FLOW_METHOD, FLOW_METHODS, FlowEstimator
from ..dream_core.pipeline import (
    EVEN,
    OutputOptions,
    VideoFileSource,
    VideoRequest,
    VideoRun,
    WriterSink,
    check_video_run,
    open_writer,
    render_range,
    resume_state,
)
from ..dream_core.video import file_identity
from ..dream_core.video.journal import WORK_SUFFIX
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    SCHEDULE_TYPE,
    SETTINGS_TYPE,
    explained,
    mask_batch,
    merge_settings,
    preset_input,
    setting_input,
    setting_inputs,
)
from .device_room import claim_device, release_device
from .image_nodes import SETTINGS_TOOLTIP
from .model_nodes import check_model
from .video_files import output_path, run_key, video_file

log = logging.getLogger(__name__)

MAX_FRAMES = 10_000_000
#: Progress units per frame (the bar moves within a frame as its steps run).
UNITS = 100
DEFAULT_PREFIX = "deepdream/stream"


def _tensor_identity(x: Optional[torch.Tensor]) -> Optional[dict[str, Any]]:
    if x is None:
        return None
    data = x.detach().to("cpu", torch.float32).contiguous()
    return {"shape": list(data.shape), "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest()}


def _source_identity(path: Path) -> dict[str, Any]:
    stat = path.resolve().stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class DDVVideoStream:
    """VIDEO -> :func:`check_video_run` -> :func:`render_range` (decoder -> frame loop -> encoder) -> VIDEO."""

    DESCRIPTION = (
        "DeepDream a video file of any length: frames stream from the decoder through the flow-warped dream "
        "into the encoder, so memory stays the same for a 10-second or a 10-minute clip (no IMAGE batch). Keeps "
        "the source's exact frame rate and its audio. Queue again after Cancel or a crash and it continues after "
        "the last saved frame (same settings; a changed setting starts over). Optical flow is computed as it "
        "goes. A preset picks the look, learning_rate the strength; a DeepDream Settings node sets the rest. For "
        "long clips; for a few seconds that you want to chain with image nodes use DeepDream Video (flow-warped) "
        "on an IMAGE batch."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("The dreamed video (a file in the output folder, with the source's rate and audio); "
                       "connect Save Video or a preview node.",)
    FUNCTION = "dream"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "video": ("VIDEO", {"tooltip": "The clip (Load Video, or any node that makes a VIDEO)."}),
                "model": (MODEL_TYPE, {"tooltip": "From DeepDream Model Loader."}),
                "mode": setting_input("mode"),
                **preset_input(),
                **setting_inputs("learning_rate", "seed"),
                "start_frame": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "First frame to dream (0-based); the output starts here, its audio too.",
                }),
                "frame_count": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "How many frames to dream from start_frame; 0 = to the end of the clip.",
                }),
                "filename_prefix": ("STRING", {
                    "default": DEFAULT_PREFIX,
                    "tooltip": "Where the dreamed file goes in ComfyUI's output folder; its name adds the source's "
                               "name and a digest of the settings, so the same settings continue an unfinished "
                               "run and other settings make another file.",
                }),
            },
            "optional": {
                "objective": (OBJECTIVE_TYPE, {
                    "tooltip": "From DeepDream Layers: what to maximise. Not connected -> the model's default layer.",
                }),
                "settings": (SETTINGS_TYPE, {"tooltip": SETTINGS_TOOLTIP}),
                "schedule": (SCHEDULE_TYPE, {
                    "tooltip": "From DeepDream Schedule: settings that change over the clip (keys in frames of the "
                               "source, or seconds).",
                }),
                "mask": ("MASK", {
                    "tooltip": "Where to dream (1 = dream, 0 = keep): one mask for every frame (or a short batch, "
                               "one per frame from frame 0). For a moving mask use mask_video.",
                }),
                "mask_video": ("VIDEO", {
                    "tooltip": "A black-and-white video, frame k the mask of frame k (white = dream), streamed "
                               "like the clip.",
                }),
                "cadence": ("INT", {
                    "default": 1, "min": 1, "max": 16,
                    "tooltip": "Dream every Nth frame; the frames between take the dreams on both sides, carried "
                               "along the optical flow and cross-faded. 1 = dream every frame.",
                }),
                "flow_method": (list(FLOW_METHODS), {
                    "default": DEFAULT_FLOW_METHOD,
                    "tooltip": "Optical flow between consecutive frames, computed as the frames stream. dis: fast "
                               "on CPU; farneback: smoother; raft_small / raft_large: neural, most accurate, slow "
                               "on CPU (torchvision weights, downloaded once).",
                }),
                "max_side": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 2,
                    "tooltip": "0 = dream at the clip's size. Otherwise shrink each frame so its longer side is at "
                               "most this (much faster, less memory); the output has that size.",
                }),
                "crf": ("INT", {
                    "default": 18, "min": 0, "max": 51,
                    "tooltip": "H.264 quality of the output: lower = better and larger, 0 = lossless, 18 = visually "
                               "near lossless.",
                }),
                "keep_audio": ("BOOLEAN", {
                    "default": True, "tooltip": "Copy the source's audio for the dreamed range.",
                }),
            },
        }

    @explained
    def dream(
        self,
        video: Any,
        model: DreamModel,
        start_frame: int,
        frame_count: int,
        filename_prefix: str = DEFAULT_PREFIX,
        objective: Optional[Objective] = None,
        settings: Optional[Mapping[str, Any]] = None,
        schedule: Optional[Mapping[str, Schedule]] = None,
        mask: Optional[torch.Tensor] = None,
        mask_video: Any = None,
        cadence: int = 1,
        flow_method: str = DEFAULT_FLOW_METHOD,
        max_side: int = 0,
        crf: int = 18,
        keep_audio: bool = True,
        **widgets: Any,
    ) -> tuple[Any]:
        model = check_model(model)
        dream, clip = merge_settings(widgets, settings)
        if flow_method not in FLOW_METHODS:
            raise InvalidParameterError(f"flow_method must be one of {', '.join(FLOW_METHODS)}; got {flow_method!r}.",
                                        parameter="flow_method")
        if mask is not None and mask_video is not None:
            raise InvalidParameterError("Connect either 'mask' (one mask, or one per frame) or 'mask_video', not both.",
                                        parameter="mask")
        spool = host.temp_directory() / "deepdream_sources"
        source = video_file(video, spool, "video")
        masks: Any = mask_batch(mask)
        mask_file = None
        if mask_video is not None:
            mask_file = video_file(mask_video, spool, "mask_video")
            masks = VideoMask(mask_file)
        folder = output_path(host.output_directory(), filename_prefix, source, "check").parent
        folder.mkdir(parents=True, exist_ok=True)
        start = int(start_frame)
        weights = model.weights_source if os.path.isfile(str(model.weights_source)) else None
        request = VideoRequest(
            input=str(source), output=str(folder / "check.mp4"), settings=dream, video=clip, model=model.name,
            weights=weights, start=start, end=start + int(frame_count) if frame_count else None,
            max_side=int(max_side) or None, flow=flow_method)

        def plan(loaded: DreamModel, fps: Any, first: int) -> ClipPlan:
            return ClipPlan(loaded, dream, objective=objective, video=clip, schedules=dict(schedule or {}),
                            cadence=int(cadence), cadence_start=first, fps=float(fps) if fps else None)

        extra = {
            "source": _source_identity(source), "start": start, "weights_source": str(model.weights_source),
            "schedules": {k: [s.text, s.interpolation, s.kind] if isinstance(s, Schedule) else str(s)
                          for k, s in sorted(dict(schedule or {}).items())},
            "cadence": int(cadence), "max_side": int(max_side), "crf": int(crf), "audio": bool(keep_audio),
            "mask": _tensor_identity(masks.masks) if isinstance(masks, MaskBatch) else None,
            "mask_video": file_identity(mask_file),
        }
        run = check_video_run(request, model.device, plan=plan, masks=masks, load=lambda *_: model, identity=extra)
        out = output_path(host.output_directory(), filename_prefix, source, run_key(run.identity))
        if out.is_file() and not out.with_name(out.name + WORK_SUFFIX).exists():
            log.info("DeepDream Video (streaming): %s is already dreamed with these settings; handing it on "
                     "(delete it to dream it again).", out)
            return (host.video_from_file(out),)
        started = time.perf_counter()
        _render_with_room(run, source, out, OutputOptions(crf=float(crf), audio=bool(keep_audio)))
        log.info("DeepDream Video (streaming): %s mode, frames %d..%d at %dx%d -> %s in %.1f s", clip.mode,
                 run.frames.start, run.frames.stop - 1, run.size[1], run.size[0], out, time.perf_counter() - started)
        return (host.video_from_file(out),)


def render(run: VideoRun, source: Path, out: Path, options: OutputOptions, device: torch.device) -> None:
    """The run on ``device``: the source's frames through :func:`render_range` into ``out``'s resumable writer,
    continuing an unfinished run of the same identity. Progress per step on the node with a preview now and
    then; Cancel (ComfyUI's interrupt) is checked at every step and frame, and the frames written so far are
    committed for the next run."""
    frames = run.frames
    writer = open_writer(out, run.info.frame_rate, options, source=source, start_frame=frames.start,
                         identity=run.identity)
    progress = host.Progress(len(frames) * UNITS)

    def on_step(index: int, step: int, total: int, current: torch.Tensor) -> None:
        host.check_interrupt()
        progress.update((index - frames.start) * UNITS + (UNITS - 1) * step // total, current)

    def on_frame(done: DreamedFrame) -> None:
        progress.update((done.index + 1 - frames.start) * UNITS, done.image)
        host.check_interrupt()

    try:
        with writer, FrameDreamer(run.model, run.objective, run.settings, run.video) as dreamer:
            point, state = resume_state(writer, device)  # both log where an unfinished run continues
            progress.update(point.frames_done * UNITS)
            frame_source = VideoFileSource(source, range(point.next_frame, frames.stop),
                                           max_side=run.request.max_side, device=device,
                                           num_frames=run.info.num_frames)
            flows = FlowEstimator(run.request.flow) if run.video.needs_flow else None
            render_range(frame_source, dreamer, flows, WriterSink(writer), start=state, plan=run.plan,
                         masks=run.masks, on_step=on_step, on_frame=on_frame)
    except BaseException as exc:
        if host.is_interrupt(exc):
            log.info("Cancelled: %d frames of %s are kept in its work folder; queue the same prompt again to "
                     "continue.", writer.frames_done, out.name)
        raise


def _render_with_room(run: VideoRun, source: Path, out: Path, options: OutputOptions) -> None:
    """:func:`render` between :func:`~.device_room.claim_device` and :func:`~.device_room.release_device`; after an out-of-memory error (the dream has
    already halved its tiles as far as it can) free every other model and continue from the committed
    frames once, then give up with what to change."""
    for attempt in (1, 2):
        failed: Optional[BaseException] = None
        try:
            device = claim_device(run.model, run.size[0], run.size[1], run.settings, everything=attempt == 2)
            try:
                render(run, source, out, options, device)
            finally:
                release_device(run.model)
            return
        except host.out_of_memory_types() as exc:
            failed = exc
        if attempt == 2:
            raise _memory_error(run, failed) from failed
        failed = None  # outside the except block: the failed attempt's tensors are freed before retrying
        log.warning("Out of memory while dreaming %s; unloading every other model and continuing from the last "
                    "committed frame.", out.name)


def _memory_error(run: VideoRun, exc: Optional[BaseException]) -> DeviceMemoryError:
    h, w = run.size
    smaller = max(64, (max(h, w) * 2 // 3) // EVEN * EVEN)
    return DeviceMemoryError(
        f"Out of memory on {host.compute_device()} dreaming {w}x{h} frames, even with the dream's tiles halved "
        f"down to their minimum and ComfyUI's other models unloaded ({type(exc).__name__}). Change one of these and "
        f"queue again (a changed setting dreams from the first frame): set max_side to dream smaller frames (e.g. "
        f"{smaller}); lower tile_size (now {run.settings.tile_size}) or num_octaves; pick a smaller model "
        "(efficientnet_lite0); set autocast to fp16/bf16 on a GPU; or start ComfyUI with --lowvram, or --cpu.",
        parameter="tile_size",
    )
