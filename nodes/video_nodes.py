"""DeepDream Video (flow-warped): dream a clip frame by frame, carrying the dream along the optical flow."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..dream_core import DreamModel, FlowError, FlowSet, FrameDreamer, InvalidParameterError, Objective
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    FLOW_PRODUCER,
    FLOW_TYPE,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    check_image,
    dream_inputs,
    dream_settings,
    rgb_frame,
    video_inputs,
    video_settings,
)
from .model_nodes import check_model, resolve_objective

log = logging.getLogger(__name__)

#: Progress units per frame (the bar moves within a frame as its steps run).
_UNITS = 100
MAX_FRAMES = 1_000_000


def frame_range(num_frames: int, start_frame: int, frame_count: int) -> tuple[int, int]:
    """``[start, end)`` of the frames to dream; ``frame_count`` 0 means "to the end" (longer counts are capped).

    Raises:
        InvalidParameterError: ``start_frame`` beyond the clip.
    """
    if not 0 <= start_frame < num_frames:
        raise InvalidParameterError(
            f"start_frame {start_frame} is outside the clip: it has {num_frames} frames (0..{num_frames - 1})."
        )
    end = num_frames if frame_count <= 0 else min(num_frames, start_frame + frame_count)
    if frame_count > 0 and start_frame + frame_count > num_frames:
        log.warning("frame_count %d from frame %d runs past the clip's %d frames; dreaming frames %d..%d",
                    frame_count, start_frame, num_frames, start_frame, end - 1)
    return start_frame, end


class DDVVideoDream:
    """Thin wrapper over :class:`dream_core.video_dream.FrameDreamer`."""

    DESCRIPTION = (
        "DeepDream a clip frame by frame. In 'stable' mode each frame starts from the previous dream warped along "
        "the optical flow (fading with 'carry', skipped where the flow is unreliable), so patterns stick to the "
        "scene instead of flickering. Progress and a preview per frame; Cancel stops within a step."
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
                "images": ("IMAGE", {"tooltip": "The clip's frames, in order (e.g. GetVideoComponents' images)."}),
                "model": (MODEL_TYPE, {"tooltip": "From DeepDream Model Loader."}),
                **video_inputs(),
                "start_frame": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "First frame to dream (0-based). With start_image, continue an earlier run from here.",
                }),
                "frame_count": ("INT", {
                    "default": 0, "min": 0, "max": MAX_FRAMES,
                    "tooltip": "How many frames to dream from start_frame; 0 = to the end of the clip. The output "
                               "holds only these frames.",
                }),
                **dream_inputs(),
            },
            "optional": {
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
            },
        }

    def dream(
        self,
        images: torch.Tensor,
        model: DreamModel,
        start_frame: int,
        frame_count: int,
        flow: Optional[FlowSet] = None,
        objective: Optional[Objective] = None,
        start_image: Optional[torch.Tensor] = None,
        **widgets: Any,
    ) -> tuple[torch.Tensor]:
        images = check_image(images)
        model = check_model(model)
        settings = dream_settings(widgets)
        video = video_settings(widgets)
        num_frames, height, width, _ = images.shape
        start, end = frame_range(num_frames, int(start_frame), int(frame_count))
        if video.needs_flow and end - start > 1:
            if flow is None:
                raise FlowError(
                    f"Video mode '{video.mode}' needs optical flow: connect the 'flow' output of {FLOW_PRODUCER} "
                    "(computed on these same frames), or choose mode 'independent'."
                )
            if not isinstance(flow, FlowSet):
                raise FlowError(f"'flow' must come from {FLOW_PRODUCER}; got {type(flow).__name__}.")
            flow.check_matches(num_frames, height, width, producer=FLOW_PRODUCER)
        objective = resolve_objective(model, objective)
        device = model.device
        start_rgb = rgb_frame(check_image(start_image, "start_image"), 0, device) if start_image is not None else None

        out = torch.empty(end - start, height, width, 3, dtype=torch.float32, device=host.intermediate_device())
        progress = host.Progress((end - start) * _UNITS)
        done = [0]  # frames finished, read by the step callback

        def on_step(step: int, total: int, current: torch.Tensor) -> None:
            host.check_interrupt()
            progress.update(done[0] * _UNITS + (_UNITS - 1) * step // total, current)

        started = time.perf_counter()
        try:
            with FrameDreamer(model, objective, settings, video, start_image=start_rgb, on_step=on_step) as dreamer:
                for k, t in enumerate(range(start, end)):
                    backward = reliable = None
                    if k > 0 and video.needs_flow:
                        backward, reliable = flow.for_frame(t)  # type: ignore[union-attr]
                    dreamed = dreamer.dream_next(rgb_frame(images, t, device), backward, reliable)
                    out[k].copy_(dreamed[0].permute(1, 2, 0))
                    done[0] = k + 1
                    progress.update(done[0] * _UNITS, dreamed, force_preview=True)
                    host.check_interrupt()
        finally:
            host.soft_empty_cache()
        elapsed = time.perf_counter() - started
        log.info("DeepDream Video: %s mode, frames %d..%d of %dx%d in %.1f s (%.2f s/frame), objective %s",
                 video.mode, start, end - 1, width, height, elapsed, elapsed / max(1, end - start),
                 objective.to_string())
        return (out,)
