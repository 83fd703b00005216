"""DeepDream Image: dream every image of an IMAGE batch."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..dream_core import DreamModel, Objective, dream_image, resolve_objective
from . import comfy_adapter as host
from .common import (
    mask_batch,
    CATEGORY,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    check_image,
    dream_inputs,
    look_inputs,
    merge_settings,
    explained,
    rgb_frame,
    to_image,
)
from .device_room import claim_device, release_device
from .model_nodes import check_model

log = logging.getLogger(__name__)


class DDVDreamImage:
    """Thin wrapper over :func:`dream_core.dream_image`, one batch item at a time."""

    DESCRIPTION = (
        "DeepDream on every image of the batch: octaves of gradient ascent on the chosen layers. "
        "Shows progress and a live preview on the node; Cancel stops it within a step."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The dreamed images, same size and count as the input.",)
    FUNCTION = "dream"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Images to dream (a batch is dreamed one image at a time)."}),
                "model": (MODEL_TYPE, {"tooltip": "From DeepDream Model Loader."}),
                **dream_inputs(),
            },
            "optional": {
                "objective": (OBJECTIVE_TYPE, {
                    "tooltip": "From DeepDream Layers: what to maximise. Not connected -> the model's default layer.",
                }),
                "guide": ("IMAGE", {
                    "tooltip": "Optional guide image: the dream takes on its features (first image of the batch) "
                               "at the objective's layers instead of amplifying whatever it sees.",
                }),
                "mask": ("MASK", {
                    "tooltip": "Where to dream (1 = dream, 0 = keep, between = weaker); one mask for the whole "
                               "batch or one per image. Outside it the image comes back unchanged.",
                }),
                **look_inputs(),
            },
        }

    @explained
    def dream(
        self,
        images: torch.Tensor,
        model: DreamModel,
        objective: Optional[Objective] = None,
        guide: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        **widgets: Any,
    ) -> tuple[torch.Tensor]:
        images = check_image(images)
        model = check_model(model)
        settings, _ = merge_settings(widgets)
        objective = resolve_objective(model, objective)
        device = claim_device(model, int(images.shape[1]), int(images.shape[2]), settings)
        guide_rgb = rgb_frame(check_image(guide, "guide"), 0, device) if guide is not None else None
        count, height, width, _ = images.shape
        masks = mask_batch(mask)
        out = torch.empty(count, height, width, 3, dtype=torch.float32, device=host.intermediate_device())
        steps = settings.num_octaves * settings.num_iterations
        progress = host.Progress(count * steps)
        started = time.perf_counter()
        try:
            for index in range(count):
                def on_step(step: int, total: int, current: torch.Tensor, _done: int = index * steps) -> None:
                    host.check_interrupt()
                    progress.update(_done + step, current)

                dreamed = dream_image(model, rgb_frame(images, index, device), objective, settings,
                                      guide=guide_rgb, on_step=on_step,
                                      mask=None if masks is None else masks(index).to(device))
                out[index].copy_(to_image(dreamed)[0])
                progress.update((index + 1) * steps, dreamed, force_preview=True)
        finally:
            release_device(model)
        log.info("DeepDream Image: %d image(s) of %dx%d, objective %s, in %.1f s",
                 count, width, height, objective.to_string(), time.perf_counter() - started)
        return (out,)
