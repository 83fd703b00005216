"""DeepDream Video (streaming): core's VIDEO in, VIDEO out; frames stream decoder -> frame loop -> encoder.

Memory does not grow with the clip's length: no IMAGE batch is made, one frame at a time is decoded,
dreamed and encoded. The output is a file in ComfyUI's output folder whose name holds a digest of
everything that shapes it (:func:`run_identity`): queued again after Cancel or a crash, the same
settings find their work folder and continue after the last committed frame; a changed setting is
another file, dreamed from the start; a finished file is handed on at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..dream_core import DreamModel, DreamSettings, Objective, VideoSettings
from ..dream_core.animation import MaskBatch, VideoMask
from ..dream_core.clip import ClipPlan, Schedule, frame_range
from ..dream_core.dream import check_image_for_dream
from ..dream_core.errors import DeviceMemoryError, InvalidParameterError
from ..dream_core.flow import DEFAULT_FLOW_METHOD, FLOW_METHODS
from ..dream_core.image_ops import fit_size
from ..dream_core.video import VideoInfo, check_frame_count, file_identity, probe_video
from ..dream_core.video.journal import WORK_SUFFIX
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    SCHEDULE_TYPE,
    colour_coherence_input,
    dream_inputs,
    dream_settings,
    explained,
    look_inputs,
    mask_batch,
    video_inputs,
    video_settings,
)
from .model_nodes import check_model
from .stream_render import StreamJob, render
from .video_files import output_path, run_key, video_file

log = logging.getLogger(__name__)

MAX_FRAMES = 10_000_000
#: Frame sides of an H.264 yuv420p output are multiples of this.
EVEN = 2
#: Rough device bytes per pixel of a dream tile (activations and their gradients, EfficientNet-Lite0 and
#: GoogLeNet measured ~1 KB on the CPU, benchmarks/RESULTS.md "Memory") and full-size float copies of a
#: frame the loop holds (image, base, gradient, warped dream, flow, masks ...): what ComfyUI is asked to free.
ACTIVATION_BYTES_PER_PIXEL = 1536
FRAME_COPIES = 24
DEFAULT_PREFIX = "deepdream/stream"


def working_bytes(height: int, width: int, settings: DreamSettings) -> int:
    """Device memory a dream of ``height x width`` frames needs besides the weights (an estimate)."""
    tile = settings.tile_size + 2 * settings.tile_overlap
    return min(height, tile) * min(width, tile) * ACTIVATION_BYTES_PER_PIXEL + height * width * 3 * 4 * FRAME_COPIES


def _tensor_identity(x: Optional[torch.Tensor]) -> Optional[dict[str, Any]]:
    if x is None:
        return None
    data = x.detach().to("cpu", torch.float32).contiguous()
    return {"shape": list(data.shape), "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest()}


def run_identity(source: Path, info: VideoInfo, model: DreamModel, plan: ClipPlan, settings: DreamSettings,
                 video: VideoSettings, frames: range, size: tuple[int, int], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that shapes the output (the output's name holds its digest; the work folder checks it)."""
    stat = source.resolve().stat()
    objective = plan.objective.to_string() if plan.objective is not None else None
    return {
        "source": {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                   "rate": f"{info.frame_rate.numerator}/{info.frame_rate.denominator}"},
        "model": model.name, "weights": model.weights_source, "objective": objective,
        "dream": dataclasses.asdict(settings), "video": dataclasses.asdict(video),
        "range": [frames.start, frames.stop], "size": list(size), "cadence": plan.cadence,
        "schedules": {k: [s.text, s.interpolation, s.kind] for k, s in sorted(plan.schedules.items())},
        **extra,
    }


class DDVVideoStream:
    """VIDEO -> validation -> :func:`.stream_render.render` (decoder -> frame loop -> encoder) -> VIDEO."""

    DESCRIPTION = (
        "DeepDream a video file of any length: frames stream from the decoder through the flow-warped dream "
        "into the encoder, so memory stays the same for a 10-second or a 10-minute clip (no IMAGE batch). Keeps "
        "the source's exact frame rate and its audio. Queue again after Cancel or a crash and it continues after "
        "the last saved frame (same settings; a changed setting starts over). Optical flow is computed as it "
        "goes. For long clips; for a few seconds that you want to chain with image nodes use DeepDream Video "
        "(flow-warped) on an IMAGE batch."
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
                **video_inputs(),
                "start_frame": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "First frame to dream (0-based); the output starts here, its audio too.",
                }),
                "frame_count": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "How many frames to dream from start_frame; 0 = to the end of the clip.",
                }),
                **dream_inputs(),
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
                **look_inputs(),
                "cadence": ("INT", {
                    "default": 1, "min": 1, "max": 16,
                    "tooltip": "Dream every Nth frame; the frames between take the dreams on both sides, carried "
                               "along the optical flow and cross-faded. 1 = dream every frame.",
                }),
                **colour_coherence_input("its source frame's"),
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
        settings = dream_settings(widgets)
        clip_settings = video_settings(widgets)
        if flow_method not in FLOW_METHODS:
            raise InvalidParameterError(f"flow_method must be one of {', '.join(FLOW_METHODS)}; got {flow_method!r}.",
                                        parameter="flow_method")
        if mask is not None and mask_video is not None:
            raise InvalidParameterError("Connect either 'mask' (one mask, or one per frame) or 'mask_video', not both.",
                                        parameter="mask")
        spool = host.temp_directory() / "deepdream_sources"
        source = video_file(video, spool, "video")
        info = probe_video(source)
        frames = frame_range(info.num_frames, int(start_frame), int(start_frame) + int(frame_count) if frame_count else None)
        if clip_settings.needs_flow:
            check_frame_count(info, purpose=f"mode '{clip_settings.mode}'")
        plan = ClipPlan(model, settings, objective=objective, video=clip_settings, schedules=dict(schedule or {}),
                        cadence=int(cadence), cadence_start=frames.start, fps=float(info.frame_rate))
        plan.check(frames)
        size = fit_size(info.height, info.width, int(max_side) or None, multiple=EVEN)
        for index in (frames.start, frames.stop - 1):
            check_image_for_dream(torch.zeros(1, 3, *size), model, plan(index).settings)
        masks: Any = mask_batch(mask)
        mask_file = None
        if mask_video is not None:
            mask_file = video_file(mask_video, spool, "mask_video")
            masks = VideoMask(mask_file)
        extra = {"flow": flow_method, "max_side": int(max_side), "crf": int(crf), "audio": bool(keep_audio),
                 "mask": _tensor_identity(masks.masks) if isinstance(masks, MaskBatch) else None,
                 "mask_video": file_identity(mask_file)}
        identity = run_identity(source, info, model, plan, settings, clip_settings, frames, size, extra)
        out = output_path(host.output_directory(), filename_prefix, source, run_key(identity))
        work = out.with_name(out.name + WORK_SUFFIX)
        if out.is_file() and not work.exists():
            log.info("DeepDream Video (streaming): %s is already dreamed with these settings; handing it on "
                     "(delete it to dream it again).", out)
            return (host.video_from_file(out),)
        out.parent.mkdir(parents=True, exist_ok=True)
        job = StreamJob(source=source, output=out, info=info, frames=frames, size=size, model=model, plan=plan,
                        settings=settings, video=clip_settings, masks=masks, flow_method=flow_method, crf=int(crf),
                        audio=bool(keep_audio), identity=identity)
        started = time.perf_counter()
        self._render_with_room(job)
        log.info("DeepDream Video (streaming): %s mode, frames %d..%d at %dx%d -> %s in %.1f s", clip_settings.mode,
                 frames.start, frames.stop - 1, size[1], size[0], out, time.perf_counter() - started)
        return (host.video_from_file(out),)

    @staticmethod
    def _render_with_room(job: StreamJob) -> None:
        """Render inside :func:`~.comfy_adapter.dream_room`; after an out-of-memory error (the dream has already
        halved its tiles as far as it can) free every other model and continue from the committed frames once,
        then give up with what to change."""
        from ..dream_core.fastpath import forget_execution_copies

        need = working_bytes(job.size[0], job.size[1], job.settings)
        for attempt in (1, 2):
            failed: Optional[BaseException] = None
            try:
                with host.dream_room(job.model, need if attempt == 1 else 1 << 62,
                                     released=lambda: forget_execution_copies(job.model)) as device:
                    render(job, device)
                return
            except host.out_of_memory_types() as exc:
                failed = exc
            if attempt == 2:
                raise _memory_error(job, failed) from failed
            failed = None  # outside the except block: the failed attempt's tensors are freed before retrying
            log.warning("Out of memory while dreaming %s; unloading every other model and continuing from the "
                        "last committed frame.", job.output.name)


def _memory_error(job: StreamJob, exc: Optional[BaseException]) -> DeviceMemoryError:
    h, w = job.size
    smaller = max(64, (max(h, w) * 2 // 3) // EVEN * EVEN)
    return DeviceMemoryError(
        f"Out of memory on {host.compute_device()} dreaming {w}x{h} frames, even with the dream's tiles halved "
        f"down to their minimum and ComfyUI's other models unloaded ({type(exc).__name__}). Change one of these and "
        f"queue again (a changed setting dreams from the first frame): set max_side to dream smaller frames (e.g. "
        f"{smaller}); lower tile_size (now {job.settings.tile_size}) or num_octaves; pick a smaller model "
        "(efficientnet_lite0); set autocast to fp16/bf16 on a GPU; or start ComfyUI with --lowvram, or --cpu.",
        parameter="tile_size",
    )
