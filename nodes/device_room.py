"""Room on the compute device for a dream node: ComfyUI frees what our model and frames need before the
first dream, and gets it back afterwards (:func:`~.comfy_adapter.make_room` / :func:`~.comfy_adapter.give_back`).

Every dream node calls :func:`claim_device` before its loop (instead of taking the model's device) and
:func:`release_device` in the ``finally`` after it, so a workflow that also holds a diffusion checkpoint
does not run out of memory, and a node that runs after another finds the model where it needs it.
"""

from __future__ import annotations

import torch

from ..dream_core import DreamModel, DreamSettings
from ..dream_core.fastpath import forget_execution_copies
from . import comfy_adapter as host

#: Rough device bytes per pixel of a dream tile: activations and their gradients (EfficientNet-Lite0 and
#: GoogLeNet held ~1 KB a pixel at 720p on the CPU, benchmarks/RESULTS.md "Memory").
ACTIVATION_BYTES_PER_PIXEL = 1536
#: Full-size float copies of a frame the loop holds at once (image, base, gradient, warped dream, flow, masks ...).
FRAME_COPIES = 24


def working_bytes(height: int, width: int, settings: DreamSettings) -> int:
    """Device memory a dream of ``height x width`` frames needs besides the weights (an estimate, for
    ComfyUI's ``free_memory``; a dream that still runs out halves its tiles)."""
    tile = settings.tile_size + 2 * settings.tile_overlap
    return min(height, tile) * min(width, tile) * ACTIVATION_BYTES_PER_PIXEL + height * width * 3 * 4 * FRAME_COPIES


def claim_device(model: DreamModel, height: int, width: int, settings: DreamSettings,
                 everything: bool = False) -> torch.device:
    """Free room for ``model`` and ``height x width`` dreams (``everything``: unload every other model) and
    move the model to the compute device; returns it."""
    return host.make_room(model, float("inf") if everything else working_bytes(height, width, settings))


def release_device(model: DreamModel) -> None:
    """The model back to the offload device, its execution copies dropped, the device cache emptied."""
    host.give_back(model, released=lambda: forget_execution_copies(model))
