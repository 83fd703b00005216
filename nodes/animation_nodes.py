"""DeepDream Schedule (keyframed settings for the video and animation nodes) and DeepDream Zoom Animation (the slim
node, and the legacy one with every widget)."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional

import torch

from ..dream_core import DreamedFrame, DreamModel, FrameDreamer, Objective
from ..dream_core.animation import FeedbackFrames, Motion, feedback_plan
from ..dream_core.clip import INTERPOLATIONS, SCHEDULABLE, ClipPlan, Schedule
from ..dream_core.clip.plan import parse_setting_schedule
from ..dream_core.animation.feedback import DEFAULT_LATER_ITERATIONS
from ..dream_core.ranking import rank_clip
from ..dream_core.clip import VideoSettings
from ..dream_core.pipeline import TensorSink, render_range
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    DREAM_WIDGETS,
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

#: Progress units per frame of an animation.
_UNITS = 100
MAX_ANIMATION_FRAMES = 10_000


class DDVSchedule:
    """A keyframed schedule for one setting, chainable: the video and animation nodes evaluate it per frame."""

    DESCRIPTION = (
        "Keyframes for one setting of DeepDream Video or DeepDream Zoom Animation, written as "
        "'0:(0.01), 48:(0.04), 96:(0.02)' (frame numbers of the clip) or '0s:(0.01), 2.5s:(0.04)' (seconds, "
        "kept when the frame rate changes). Between keys: linear, smooth or hold. Chain several nodes through "
        "'schedule' to schedule several settings; the objective takes layer names: '0:(block8_dw), 60:(block12_dw)'."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SCHEDULE_TYPE,)
    RETURN_NAMES = ("schedule",)
    OUTPUT_TOOLTIPS = ("The schedules so far, for the 'schedule' input of DeepDream Video or Zoom Animation.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "setting": (list(SCHEDULABLE), {
                    "default": "learning_rate",
                    "tooltip": "The setting this schedule drives. translate takes pairs '0:(0,0), 48:(4,-2)'; "
                               "objective takes objectives '0:(block8_dw), 60:(block12_dw:[3,7])' (cross-faded).",
                }),
                "keyframes": ("STRING", {
                    "default": "0:(0.01), 48:(0.03)", "multiline": True,
                    "tooltip": "frame:(value), frame:(value), ... or seconds 2.5s:(value). Before the first key its "
                               "value holds, after the last key the last one.",
                }),
                "interpolation": (list(INTERPOLATIONS), {
                    "default": "linear",
                    "tooltip": "Between keys: linear; smooth (eases out of one key and into the next, never "
                               "overshoots); hold (keeps each key's value until the next key: a switch).",
                }),
            },
            "optional": {
                "schedule": (SCHEDULE_TYPE, {"tooltip": "Schedules of other settings to add this one to."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, setting: str, keyframes: str, interpolation: str) -> bool | str:
        if setting not in SCHEDULABLE:
            return f"'{setting}' cannot be scheduled; choose one of {', '.join(SCHEDULABLE)}."
        try:
            parse_setting_schedule(setting, keyframes, interpolation)  # bounded as a whole, objectives included
        except ValueError as exc:
            return str(exc)
        return True

    @explained
    def build(self, setting: str, keyframes: str, interpolation: str,
              schedule: Optional[Mapping[str, Schedule]] = None) -> tuple[dict[str, Schedule]]:
        parsed = parse_setting_schedule(setting, keyframes, interpolation)
        out = dict(schedule or {})
        if setting in out:
            log.warning("DeepDream Schedule: '%s' is scheduled twice in the chain; this node's keyframes win.", setting)
        out[setting] = parsed
        return (out,)


class DDVAnimateV2:
    """Thin wrapper over :class:`dream_core.animation.FeedbackFrames` driven by the one frame loop; the motion and
    the everyday widgets on the node, the rest from an optional DeepDream Settings node."""

    DESCRIPTION = (
        "A feedback ('infinite zoom') animation from one image: every frame is the previous dreamed frame zoomed, "
        "rotated and moved a little, then dreamed again. Connect a DeepDream Schedule to change any setting over "
        "time (zoom, rotate, translate, learning_rate, the objective, ...), a DeepDream Settings node for the less "
        "used settings. Outputs the frames as a batch: feed Create Video. Progress and a preview per frame; Cancel "
        "stops within a step."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The animation's frames, first to last (the first is the image dreamed).",)
    FUNCTION = "animate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {**cls._motion_inputs(), **preset_input(), **setting_inputs("learning_rate", "seed")},
            "optional": {**cls._link_inputs(), "settings": (SETTINGS_TYPE, {"tooltip": SETTINGS_TOOLTIP}),
                         **cls._fps_input()},
        }

    @staticmethod
    def _motion_inputs() -> dict[str, Any]:
        return {
            "image": ("IMAGE", {"tooltip": "The start image (the first of a batch)."}),
            "model": (MODEL_TYPE, {"tooltip": "From DeepDream Model Loader."}),
            "frames": ("INT", {
                "default": 48, "min": 1, "max": MAX_ANIMATION_FRAMES,
                "tooltip": "How many frames. They are held in memory as a batch (about 3 MB per 512x512 frame).",
            }),
            "zoom": ("FLOAT", {
                "default": 1.02, "min": 0.5, "max": 2.0, "step": 0.005,
                "tooltip": "Scale per frame about the centre: 1.02 zooms in 2% per frame, below 1 zooms out, "
                           "1 = none. A schedule of 'zoom' overrides it.",
            }),
            "rotate": ("FLOAT", {
                "default": 0.0, "min": -45.0, "max": 45.0, "step": 0.1,
                "tooltip": "Degrees per frame, positive = counter-clockwise.",
            }),
            "translate_x": ("FLOAT", {
                "default": 0.0, "min": -256.0, "max": 256.0, "step": 0.5,
                "tooltip": "Pixels per frame the picture moves to the right (negative: left).",
            }),
            "translate_y": ("FLOAT", {
                "default": 0.0, "min": -256.0, "max": 256.0, "step": 0.5,
                "tooltip": "Pixels per frame the picture moves down (negative: up).",
            }),
            "later_iterations": setting_input(
                "later_iterations", default=DEFAULT_LATER_ITERATIONS,
                tooltip="Iterations of the frames after the first, as a fraction of num_iterations: each starts "
                        "from the previous dream. Higher -> the picture fills with creatures sooner. (The "
                        "DeepDream Settings node's later_iterations is the video's stable mode's.)"),
        }

    @staticmethod
    def _link_inputs() -> dict[str, Any]:
        return {
            "objective": (OBJECTIVE_TYPE, {
                "tooltip": "From DeepDream Layers: what to maximise. Not connected -> the model's default layer.",
            }),
            "schedule": (SCHEDULE_TYPE, {"tooltip": "From DeepDream Schedule: settings that change over time."}),
            "mask": ("MASK", {
                "tooltip": "Where to dream (1 = dream, 0 = keep); one mask, or one per frame. Outside it the "
                           "picture only moves.",
            }),
        }

    @staticmethod
    def _fps_input() -> dict[str, Any]:
        return {"fps": ("FLOAT", {
            "default": 30.0, "min": 1.0, "max": 240.0, "step": 0.001,
            "tooltip": "The animation's frame rate (give Create Video the same), for schedule keys in seconds.",
        })}

    @explained
    def animate(
        self,
        image: torch.Tensor,
        model: DreamModel,
        frames: int,
        zoom: float,
        rotate: float,
        translate_x: float,
        translate_y: float,
        later_iterations: float,
        objective: Optional[Objective] = None,
        schedule: Optional[Mapping[str, Schedule]] = None,
        mask: Optional[torch.Tensor] = None,
        fps: float = 30.0,
        settings: Optional[dict[str, Any]] = None,
        **widgets: Any,
    ) -> tuple[torch.Tensor]:
        # validation
        image = check_image(image, "image")
        model = check_model(model)
        dreaming, chained = merge_settings(widgets, settings)  # of the video settings only colour_coherence applies
        video = VideoSettings(mode="independent", colour_coherence=chained.colour_coherence,
                              later_iterations=float(later_iterations))  # the node's own widget (zoom's default)
        video.validate()
        clip_plan = ClipPlan(model, dreaming, objective=objective, video=video, schedules=dict(schedule or {}),
                             motion=Motion(zoom=zoom, rotate=rotate, translate=(translate_x, translate_y)), fps=fps,
                             feedback=True)  # a later_iterations schedule is read; carry & co. are refused
        count = int(frames)
        masks = mask_batch(mask)
        clip_plan.check(range(count), size=tuple(image.shape[1:3]), masks=masks)
        plan = feedback_plan(clip_plan)  # each frame's later_iterations: the widget, or its schedule
        device = claim_device(model, int(image.shape[1]), int(image.shape[2]), dreaming)
        start = rgb_frame(image, 0, device)
        _, _, height, width = start.shape

        # the loop, with progress per step and a preview per frame
        out = torch.empty(count, height, width, 3, dtype=torch.float32, device=host.intermediate_device())
        progress = host.Progress(count * _UNITS)

        def on_step(index: int, step: int, total: int, current: torch.Tensor) -> None:
            host.check_interrupt()
            progress.update(index * _UNITS + (_UNITS - 1) * step // total, current)

        def on_frame(done: DreamedFrame) -> None:
            # a preview at most every half second (each one waits for the GPU), and the last frame's
            progress.update((done.index + 1) * _UNITS, done.image, force_preview=done.index == count - 1)
            host.check_interrupt()

        started = time.perf_counter()
        try:
            with FrameDreamer(model, plan(0).objective, dreaming, video, colour_reference=start) as dreamer:
                rank_clip(dreamer.ranks, model, clip_plan.objectives, lambda: start)  # ranked picks: the start image
                feedback = FeedbackFrames(dreamer, start, count, lambda k: plan(k).motion)
                render_range(feedback, dreamer, None, TensorSink(out), on_step=on_step, on_frame=on_frame, plan=plan,
                             masks=masks)
        finally:
            release_device(model)
        elapsed = time.perf_counter() - started
        log.info("DeepDream Zoom Animation: %d frames of %dx%d in %.1f s (%.2f s/frame)", count, width, height,
                 elapsed, elapsed / count)
        return (out,)


class DDVAnimate(DDVAnimateV2):
    """The first DeepDream Zoom Animation, every setting a widget: kept, hidden from search, so that workflows saved
    with it load their widget values in place (ComfyUI maps them by position) and animate the same."""

    DEPRECATED = True
    DESCRIPTION = ("DeepDream Zoom Animation with every setting as a widget, as saved in older workflows; use "
                   "DeepDream Zoom Animation.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {**cls._motion_inputs(), **setting_inputs(*DREAM_WIDGETS)},
            "optional": {**cls._link_inputs(), **setting_inputs(*STEP_WIDGETS), **preset_input(), **cls._fps_input(),
                         **setting_inputs("colour_coherence")},
        }
