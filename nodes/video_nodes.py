"""DeepDream Video (flow-warped): dream a clip frame by frame, carrying the dream along the optical flow (the slim
node, and the legacy one with every widget)."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..dream_core import DreamedFrame, DreamModel, FlowSet, FrameDreamer, Objective, frame_range
from ..dream_core.clip import ClipPlan, Schedule
from ..dream_core.clip import check_clip_flows
from ..dream_core.ranking import rank_clip
from ..dream_core.pipeline import IndexedFrames, TensorSink, render_range
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    DREAM_WIDGETS,
    FLOW_TYPE,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    SCHEDULE_TYPE,
    SETTINGS_TYPE,
    STEP_WIDGETS,
    check_image,
    explained,
    mask_batch,
    merge_settings,
    preset_input,
    rgb_frame,
    setting_input,
    setting_inputs,
)
from .device_room import claim_device, release_device
from .image_nodes import SETTINGS_TOOLTIP
from .model_nodes import check_model

log = logging.getLogger(__name__)

#: Progress units per frame (the bar moves within a frame as its steps run).
_UNITS = 100
MAX_FRAMES = 1_000_000


#: The video settings of the first video node, in their saved order (the legacy node keeps it).
VIDEO_WIDGETS = ("mode", "carry", "temporal_weight", "later_iterations", "occlusion_feather")


class DDVVideoDreamV2:
    """Validation -> :func:`dream_core.pipeline.render_range` (the IMAGE batch in, a preallocated IMAGE out) ->
    progress. The everyday widgets on the node, the rest from an optional DeepDream Settings node."""

    DESCRIPTION = (
        "DeepDream a clip frame by frame. In 'stable' mode each frame starts from the previous dream warped along "
        "the optical flow (fading with 'carry', skipped where the flow is unreliable), so patterns stick to the "
        "scene instead of flickering. A preset picks the look, learning_rate the strength; a DeepDream Settings "
        "node sets the rest (carry, temporal weight, octaves, ...). Progress and a preview per frame; Cancel stops "
        "within a step. Takes and gives an IMAGE batch, which holds the whole clip in memory (about 11 MB a frame "
        "at 720p): for short clips and for chaining with other image nodes. For long clips use DeepDream Video "
        "(streaming), which reads and writes a VIDEO file frame by frame and continues after Cancel."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The dreamed frames of the range (all frames by default), same size as the input.",)
    FUNCTION = "dream"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **cls._clip_inputs(),
                "mode": setting_input("mode"),
                **preset_input(),
                **setting_inputs("learning_rate", "seed"),
                **cls._range_inputs(),
            },
            "optional": {
                **cls._link_inputs(),
                "settings": (SETTINGS_TYPE, {"tooltip": SETTINGS_TOOLTIP}),
                **cls._last_inputs(),
            },
        }

    @staticmethod
    def _clip_inputs() -> dict[str, Any]:
        return {
            "images": ("IMAGE", {"tooltip": "The clip's frames, in order (e.g. GetVideoComponents' images). The "
                                            "whole batch sits in memory (11 MB a 720p frame): a few seconds of "
                                            "video; for longer clips use DeepDream Video (streaming)."}),
            "model": (MODEL_TYPE, {"tooltip": "From DeepDream Model Loader."}),
        }

    @staticmethod
    def _range_inputs() -> dict[str, Any]:
        return {
            "start_frame": ("INT", {
                "default": 0, "min": 0, "max": MAX_FRAMES,
                "tooltip": "First frame to dream (0-based). With start_image, continue an earlier run from here.",
            }),
            "frame_count": ("INT", {
                "default": 0, "min": 0, "max": MAX_FRAMES,
                "tooltip": "How many frames to dream from start_frame; 0 = to the end of the clip. The output "
                           "holds only these frames.",
            }),
        }

    @staticmethod
    def _link_inputs() -> dict[str, Any]:
        return {
            "flow": (FLOW_TYPE, {
                "tooltip": "From DeepDream Optical Flow on the same frames. Needed by modes stable and seed.",
            }),
            "objective": (OBJECTIVE_TYPE, {
                "tooltip": "From DeepDream Layers: what to maximise. Not connected -> the model's default layer.",
            }),
            "start_image": ("IMAGE", {
                "tooltip": "predefined_start: the already dreamed version of the first frame of the range (e.g. "
                           "the last frame of an earlier run); used as is instead of dreaming that frame.",
            }),
            "schedule": (SCHEDULE_TYPE, {
                "tooltip": "From DeepDream Schedule: settings that change over the clip (learning_rate, carry, "
                           "the objective, a zoom/rotate/translate drift of the dream over the scene, ...).",
            }),
            "mask": ("MASK", {
                "tooltip": "Where to dream (1 = dream, 0 = keep the frame as it is, between = weaker); one mask "
                           "for every frame, or one per frame.",
            }),
        }

    @staticmethod
    def _last_inputs() -> dict[str, Any]:
        return {
            "cadence": ("INT", {
                "default": 1, "min": 1, "max": 16,
                "tooltip": "Dream every Nth frame; the frames between take the dreams on both sides, carried "
                           "along the optical flow and cross-faded. N times fewer dreamed frames (every frame "
                           "still needs its flow), about as steady; 1 = dream every frame.",
            }),
            "fps": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 240.0, "step": 0.001,
                "tooltip": "The clip's frame rate (connect Get Video Components' fps), for schedule keys in "
                           "seconds; 0 = not known.",
            }),
        }

    @explained
    def dream(
        self,
        images: torch.Tensor,
        model: DreamModel,
        start_frame: int,
        frame_count: int,
        flow: Optional[FlowSet] = None,
        objective: Optional[Objective] = None,
        start_image: Optional[torch.Tensor] = None,
        schedule: Optional[dict[str, Schedule]] = None,
        mask: Optional[torch.Tensor] = None,
        cadence: int = 1,
        fps: float = 0.0,
        settings: Optional[dict[str, Any]] = None,
        **widgets: Any,
    ) -> tuple[torch.Tensor]:
        # validation
        images = check_image(images)
        model = check_model(model)
        dreaming, video = merge_settings(widgets, settings)
        num_frames, height, width, _ = images.shape
        frames = frame_range(num_frames, int(start_frame), int(start_frame) + int(frame_count) if frame_count > 0 else None)
        check_clip_flows(video, flow, frames, num_frames, height, width)
        plan = ClipPlan(model, dreaming, objective=objective, video=video, schedules=dict(schedule or {}),
                        cadence=int(cadence), cadence_start=frames.start, fps=fps or None)
        masks = mask_batch(mask)
        plan.check(frames, size=(height, width), masks=masks)
        objective = plan(frames.start).objective
        device = claim_device(model, height, width, dreaming)
        start_rgb = rgb_frame(check_image(start_image, "start_image"), 0, device) if start_image is not None else None

        # the loop, with progress per step and a preview per frame
        out = torch.empty(len(frames), height, width, 3, dtype=torch.float32, device=host.intermediate_device())
        progress = host.Progress(len(frames) * _UNITS)

        def on_step(index: int, step: int, total: int, current: torch.Tensor) -> None:
            host.check_interrupt()
            progress.update((index - frames.start) * _UNITS + (_UNITS - 1) * step // total, current)

        def on_frame(done: DreamedFrame) -> None:
            # a preview at most every half second (each one waits for the GPU), and the last frame's
            progress.update((done.index - frames.start + 1) * _UNITS, done.image, force_preview=done.index == frames.stop - 1)
            host.check_interrupt()

        started = time.perf_counter()
        try:
            with FrameDreamer(model, objective, dreaming, video, start_image=start_rgb) as dreamer:
                # ranked picks (layer:strong8): on the first frame of the range, for every scheduled objective
                rank_clip(dreamer.ranks, model, plan.objectives, lambda: rgb_frame(images, frames.start, device))
                # frames where the IMAGE is (the host: pinned ahead for a GPU, on the pipeline's thread)
                clip = IndexedFrames(frames, ((t, rgb_frame(images, t, images.device)) for t in frames), background=True,
                                     name="the images")
                render_range(clip, dreamer, flow, TensorSink(out, frames.start), on_step=on_step, on_frame=on_frame,
                             plan=plan, masks=masks)
        finally:
            release_device(model)
        elapsed = time.perf_counter() - started
        log.info("DeepDream Video: %s mode, frames %d..%d of %dx%d in %.1f s (%.2f s/frame), objective %s",
                 video.mode, frames.start, frames.stop - 1, width, height, elapsed, elapsed / len(frames),
                 objective.to_string())
        return (out,)


class DDVVideoDream(DDVVideoDreamV2):
    """The first DeepDream Video, every setting a widget: kept, hidden from search, so that workflows saved with it
    load their widget values in place (ComfyUI maps them by position) and dream the same."""

    DEPRECATED = True
    DESCRIPTION = ("DeepDream Video with every setting as a widget, as saved in older workflows; use DeepDream Video "
                   "(flow-warped).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **cls._clip_inputs(),
                **setting_inputs(*VIDEO_WIDGETS),
                **cls._range_inputs(),
                **setting_inputs(*DREAM_WIDGETS),
            },
            "optional": {
                **cls._link_inputs(),
                **setting_inputs(*STEP_WIDGETS),
                **preset_input(),
                **cls._last_inputs(),
                **setting_inputs("colour_coherence"),
            },
        }
