"""DeepDream Image: dream every image of an IMAGE batch (the slim node, and the legacy one with every widget)."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..dream_core import DreamModel, Objective, dream_image, resolve_objective
from . import comfy_adapter as host
from .common import (
    CATEGORY,
    DREAM_WIDGETS,
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    SETTINGS_TYPE,
    STEP_WIDGETS,
    check_image,
    explained,
    mask_batch,
    merge_settings,
    preset_input,
    rgb_frame,
    setting_inputs,
    to_image,
)
from .device_room import claim_device, release_device
from .model_nodes import check_model

log = logging.getLogger(__name__)


#: The tooltip of every dream node's ``settings`` input.
SETTINGS_TOOLTIP = ("From DeepDream Settings: octaves, iterations, jitter, smoothing, step rule, tiles, precision and the "
                    "video settings; its values win over this node's. Not connected -> their defaults.")


class DDVDreamImageV2:
    """Thin wrapper over :func:`dream_core.dream_image`, one batch item at a time; the everyday widgets on the
    node, the rest from an optional DeepDream Settings node (:func:`~.common.merge_settings`)."""

    DESCRIPTION = (
        "DeepDream on every image of the batch: octaves of gradient ascent on the chosen layers. A preset picks "
        "the look, learning_rate the strength; a DeepDream Settings node sets the rest. Shows progress and a live "
        "preview on the node; Cancel stops it within a step."
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
                **preset_input(),
                **setting_inputs("learning_rate", "seed"),
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
                "settings": (SETTINGS_TYPE, {"tooltip": SETTINGS_TOOLTIP}),
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
        settings: Optional[dict[str, Any]] = None,
        **widgets: Any,
    ) -> tuple[torch.Tensor]:
        images = check_image(images)
        model = check_model(model)
        dreaming, _ = merge_settings(widgets, settings)
        objective = resolve_objective(model, objective)
        device = claim_device(model, int(images.shape[1]), int(images.shape[2]), dreaming)
        guide_rgb = rgb_frame(check_image(guide, "guide"), 0, device) if guide is not None else None
        count, height, width, _ = images.shape
        masks = mask_batch(mask)
        out = torch.empty(count, height, width, 3, dtype=torch.float32, device=host.intermediate_device())
        steps = dreaming.num_octaves * dreaming.num_iterations
        progress = host.Progress(count * steps)
        started = time.perf_counter()
        try:
            for index in range(count):
                def on_step(step: int, total: int, current: torch.Tensor, _done: int = index * steps) -> None:
                    host.check_interrupt()
                    progress.update(_done + step, current)

                dreamed = dream_image(model, rgb_frame(images, index, device), objective, dreaming,
                                      guide=guide_rgb, on_step=on_step,
                                      mask=None if masks is None else masks(index).to(device))
                out[index].copy_(to_image(dreamed)[0])
                progress.update((index + 1) * steps, dreamed, force_preview=True)
        finally:
            release_device(model)
        log.info("DeepDream Image: %d image(s) of %dx%d, objective %s, in %.1f s",
                 count, width, height, objective.to_string(), time.perf_counter() - started)
        return (out,)


class DDVDreamImage(DDVDreamImageV2):
    """The first DeepDream Image, every dream setting a widget: kept, hidden from search, so that workflows saved
    with it load their widget values in place (ComfyUI maps them by position) and dream the same."""

    DEPRECATED = True
    DESCRIPTION = "DeepDream Image with every setting as a widget, as saved in older workflows; use DeepDream Image."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        slim = DDVDreamImageV2.INPUT_TYPES()
        return {
            "required": {"images": slim["required"]["images"], "model": slim["required"]["model"],
                         **setting_inputs(*DREAM_WIDGETS)},
            "optional": {name: slim["optional"][name] for name in ("objective", "guide", "mask")}
                        | setting_inputs(*STEP_WIDGETS) | preset_input(),
        }
