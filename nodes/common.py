"""Shared pieces of the nodes: type names, IMAGE layout conversions, dream-setting widgets, error remedies.

ComfyUI's IMAGE is ``[B,H,W,C]`` float ``0..1`` on the CPU (``C`` is 3, sometimes 4
or 1); ``dream_core`` works on ``[B,3,H,W]``. Inputs are never modified: they are
ComfyUI's cached outputs of the upstream node.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, TypeVar

import torch

from ..dream_core import VIDEO_MODES, DreamError, DreamSettings, InvalidImageError, InvalidParameterError, VideoSettings
from ..dream_core.animation import MaskBatch
from ..dream_core.errors import with_remedy
from ..dream_core.clip.settings import RECOMMENDED_COLOUR_COHERENCE
from ..dream_core.presets import LOOK_FIELDS, PRESETS, preset_look, preset_settings
from ..dream_core.step import STEP_RULES
from . import comfy_adapter as host

CATEGORY = "DeepDream Video"

MODEL_TYPE = "DEEPDREAM_MODEL"
OBJECTIVE_TYPE = "DEEPDREAM_OBJECTIVE"
FLOW_TYPE = "DEEPDREAM_FLOW"
SCHEDULE_TYPE = "DEEPDREAM_SCHEDULE"
#: The DeepDream Settings node's output: a plain dict, setting name -> value (see :func:`merge_settings`).
SETTINGS_TYPE = "DEEPDREAM_SETTINGS"

_D = DreamSettings()
_V = VideoSettings()
MAX_SEED = 0xFFFFFFFF

#: The ``preset`` widget's value that runs the widgets exactly as they are.
CUSTOM_PRESET = "custom"


# --------------------------------------------------------------------------- error remedies


def remedies() -> dict[str, str]:
    """Core parameter -> what the nodes add to a core error about it (node and widget names, folders).

    Dream and video settings need none: their widgets carry the core field names.
    """
    folders = ", ".join(host.model_folders())
    return {
        "flow": "Connect the 'flow' output of the DeepDream Optical Flow node, computed on these same frames.",
        "objective": "Pick the layer again in the DeepDream Layers node; its list follows the connected model.",
        "image": "Scale the images down first, e.g. with an Image Scale node.",
        "model": "Choose a model in the DeepDream Model Loader.",
        "weights": f"Weights files go in the models/deepdream folder ({folders}); press R to refresh the list.",
        "flow_weights": f"Put the RAFT file in the models/deepdream folder ({folders}) and choose it in raft_weights, "
                        "or use the dis method.",
        "start": "Set start_frame inside the clip.",
        "start_image": "Connect an image of the clip's size to start_image.",
    }


F = TypeVar("F", bound=Callable[..., Any])


def explained(method: F) -> F:
    """Decorate a node's FUNCTION: core errors get the node remedy for their parameter (:func:`remedies`)."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except DreamError as exc:
            better = with_remedy(exc, remedies())
            if better is exc:
                raise
            raise better from exc

    return run  # type: ignore[return-value]


# --------------------------------------------------------------------------- tensors


def check_image(images: Any, name: str = "images") -> torch.Tensor:
    """Validate a ComfyUI IMAGE ``[B,H,W,C]`` (C = 1, 3 or 4, float) and return it.

    Raises:
        InvalidImageError: not a tensor, wrong rank/channels, empty, or not float.
    """
    if not isinstance(images, torch.Tensor):
        raise InvalidImageError(f"'{name}' must be an IMAGE tensor [B,H,W,C]; got {type(images).__name__}.")
    if images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
        raise InvalidImageError(
            f"'{name}' must be an IMAGE [B,H,W,C] with C = 3 (RGB), 4 (RGBA) or 1 (gray); got shape {tuple(images.shape)}."
        )
    b, h, w, _ = images.shape
    if b == 0 or h < 2 or w < 2:
        raise InvalidImageError(f"'{name}' is empty or too small: {b} image(s) of {w}x{h}.")
    if not images.is_floating_point():
        raise InvalidImageError(f"'{name}' must be float in 0..1; got {images.dtype}.")
    return images


def rgb_frame(images: torch.Tensor, index: int, device: torch.device | str) -> torch.Tensor:
    """Item ``index`` of an IMAGE as RGB ``[1,3,H,W]`` float32 on ``device`` (a new tensor).

    RGBA is composited on black (as ``dream_core``'s ``to_rgb``), gray repeated.
    """
    x = images[index : index + 1].to(device=device, dtype=torch.float32)
    c = x.shape[-1]
    if c == 4:
        x = x[..., :3] * x[..., 3:4]
    elif c == 1:
        x = x.expand(-1, -1, -1, 3)
    return x.permute(0, 3, 1, 2).contiguous()


def to_image(x: torch.Tensor) -> torch.Tensor:
    """``[B,3,H,W]`` -> ComfyUI IMAGE ``[B,H,W,3]`` float32 (same device)."""
    return x.permute(0, 2, 3, 1).to(torch.float32)


# --------------------------------------------------------------------------- widgets


def dream_inputs(defaults: DreamSettings = _D) -> dict[str, tuple]:
    """One widget per :class:`DreamSettings` field, with tooltips that say which way each pushes the dream."""
    return {
        "num_octaves": ("INT", {
            "default": defaults.num_octaves, "min": 1, "max": 12,
            "tooltip": "Number of scales the dream is built over, smallest first (1 = full size only). "
                       "More -> larger, coarser patterns; fewer -> fine detail only.",
        }),
        "octave_scale": ("FLOAT", {
            "default": defaults.octave_scale, "min": 1.05, "max": 4.0, "step": 0.05,
            "tooltip": "Size ratio between two octaves. Larger -> octaves further apart, bigger patterns; "
                       "too large and the smallest octave gets below the model's minimum size.",
        }),
        "num_iterations": ("INT", {
            "default": defaults.num_iterations, "min": 1, "max": 500,
            "tooltip": "Gradient steps per octave. More -> stronger, more developed dream; time grows in proportion.",
        }),
        "learning_rate": ("FLOAT", {
            "default": defaults.learning_rate, "min": 0.001, "max": 0.5, "step": 0.001,
            "tooltip": "Step size per iteration (image units). Larger -> stronger, harsher dream; smaller -> subtler.",
        }),
        "jitter": ("INT", {
            "default": defaults.jitter, "min": 0, "max": 256,
            "tooltip": "Largest random shift (pixels) of the image before each step. Larger -> fewer grid "
                       "artefacts, softer patterns; 0 disables.",
        }),
        "gradient_smoothing": ("FLOAT", {
            "default": defaults.gradient_smoothing, "min": 0.0, "max": 10.0, "step": 0.1,
            "tooltip": "Gaussian blur (sigma, pixels) of the gradient. Larger -> smoother, less noisy patterns; 0 disables.",
        }),
        "seed": ("INT", {
            "default": defaults.seed, "min": 0, "max": MAX_SEED, "control_after_generate": False,
            "tooltip": "Seeds the jitter. Same seed and inputs -> the same result on the same device and machine "
                       "(another GPU or CPU thread count can change fine detail); another seed -> a slightly "
                       "different dream.",
        }),
        "luminance_only": ("BOOLEAN", {
            "default": defaults.luminance_only,
            "tooltip": "On -> keep the original colours and dream only brightness; off -> the network's colours appear.",
        }),
        "autocast": (["none", "bf16", "fp16"], {
            "default": defaults.autocast,
            "tooltip": "Mixed precision for the forward pass. bf16/fp16 -> faster with less memory on GPUs, tiny "
                       "differences; none -> exact float32 (best on CPU).",
        }),
        "tile_size": ("INT", {
            "default": defaults.tile_size, "min": 64, "max": 8192, "step": 32,
            "tooltip": "Images larger than this (either side, pixels) get their gradient computed tile by tile. "
                       "Smaller -> less memory, a little slower; larger -> faster if memory allows.",
        }),
        "tile_overlap": ("INT", {
            "default": defaults.tile_overlap, "min": 0, "max": 1024, "step": 8,
            "tooltip": "Context pixels around each tile (must stay below tile_size / 2). Larger -> fewer seams, slower.",
        }),
    }


def look_inputs(defaults: DreamSettings = _D) -> dict[str, tuple]:
    """The step and preset widgets: optional, so workflows saved before them load and queue unchanged."""
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    return {
        "step_rule": (list(STEP_RULES), {
            "default": defaults.step_rule,
            "tooltip": "How the gradient becomes a step. lapnorm: colour-decorrelated and Laplacian-normalised -> "
                       "clean, painterly, no colour static; plain: per-pixel RGB steps (earlier versions) -> "
                       "crisper fine detail covered in red/green/blue speckle.",
        }),
        "colour_decorrelation": ("FLOAT", {
            "default": defaults.colour_decorrelation, "min": 0.0, "max": 1.0, "step": 0.05,
            "tooltip": "How much each step favours brightness over colour. Higher -> the picture keeps its own "
                       "colours; lower -> more of the network's colours (and, near 0, colour speckle).",
        }),
        "laplacian_levels": ("INT", {
            "default": defaults.laplacian_levels, "min": 1, "max": 8,
            "tooltip": "lapnorm: frequency bands normalised separately. More -> coarse structures get a larger "
                       "share of every step (bigger, softer shapes); 1 -> one band.",
        }),
        "preset": ([CUSTOM_PRESET, *PRESETS], {
            "default": CUSTOM_PRESET,
            "tooltip": f"A named look. Choosing one fills in {', '.join(LOOK_FIELDS)}; changing any of them "
                       f"afterwards switches back to custom. custom: the widgets as they are. {presets}",
        }),
    }




def merge_settings(widgets: Mapping[str, Any],
                   settings: Optional[Mapping[str, Any]] = None) -> tuple[DreamSettings, VideoSettings]:
    """The validated dream and video settings a node runs, from its widgets and an optional settings input.

    The rule, in order:

    1. every :class:`DreamSettings` and :class:`VideoSettings` field starts at its default (the
       front ends' ``colour_coherence`` is :data:`RECOMMENDED_COLOUR_COHERENCE`);
    2. the node's widgets that carry a field's name replace it (other widgets - images, start_frame,
       ``preset`` - are not settings and are skipped);
    3. ``settings`` (a ``DEEPDREAM_SETTINGS`` input, from the DeepDream Settings node) replaces the
       fields it carries: it wins over the node's own widgets;
    4. a ``preset`` widget other than ``custom`` decides the look fields
       (:data:`~dream_core.presets.LOOK_FIELDS`) wherever they were set; ``custom`` runs them as set.

    Args:
        widgets: the node's widget values by name (``**kwargs`` of its FUNCTION).
        settings: setting name -> value, or ``None`` when nothing is connected.

    Raises:
        InvalidParameterError: a name in ``settings`` that is no setting, a value out of range.
    """
    dream_fields, video_fields = set(_D.__dataclass_fields__), set(_V.__dataclass_fields__)
    given = dict(settings or {})
    unknown = sorted(set(given) - dream_fields - video_fields)
    if unknown:
        raise InvalidParameterError(
            f"Not dream or video settings: {', '.join(unknown)}. Valid names: "
            f"{', '.join(sorted(dream_fields | video_fields))}.", parameter="settings")
    values: dict[str, Any] = {"colour_coherence": RECOMMENDED_COLOUR_COHERENCE}
    values.update({k: v for k, v in widgets.items() if k in dream_fields or k in video_fields})
    values.update(given)
    dream = DreamSettings(**{k: v for k, v in values.items() if k in dream_fields})
    preset = widgets.get("preset", CUSTOM_PRESET)
    if preset != CUSTOM_PRESET:
        dream = preset_settings(preset, dream)
    dream.validate()
    video = VideoSettings(**{k: v for k, v in values.items() if k in video_fields})
    video.validate()
    return dream, video


def presets_payload() -> dict[str, Any]:
    """What the web extension needs to fill the widgets: ``GET /deepdream_video/presets``."""
    return {
        "custom": CUSTOM_PRESET,
        "fields": list(LOOK_FIELDS),
        "presets": {name: {"description": p.description, "values": preset_look(name)} for name, p in PRESETS.items()},
    }


def video_inputs(defaults: VideoSettings = _V) -> dict[str, tuple]:
    """Widgets of :class:`~dream_core.clip.settings.VideoSettings`."""
    return {
        "mode": (list(VIDEO_MODES), {
            "default": defaults.mode,
            "tooltip": "stable: the previous dream is carried along the optical flow, fades (carry), skips "
                       "occluded areas and pulls towards the warped dream (least flicker). seed: the original "
                       "neural-dream rule (warped dream added unchanged, compounds over time). independent: every "
                       "frame dreamed alone, no flow needed (flickers).",
        }),
        "carry": ("FLOAT", {
            "default": defaults.carry, "min": 0.0, "max": 1.0, "step": 0.01,
            "tooltip": "stable: share of the previous frame's dream carried onto this frame. Higher -> steadier "
                       "patterns that follow the scene; lower -> adapts faster to new content, more flicker.",
        }),
        "temporal_weight": ("FLOAT", {
            "default": defaults.temporal_weight, "min": 0.0, "max": 1.0, "step": 0.01,
            "tooltip": "stable: per-step pull of reliable pixels towards the warped previous dream. Higher -> less "
                       "flicker, less new detail; 0 turns the pull off.",
        }),
        "later_iterations": ("FLOAT", {
            "default": defaults.later_iterations, "min": 0.05, "max": 1.0, "step": 0.05,
            "tooltip": "stable: iterations of frames after the first, as a fraction of num_iterations. Lower -> "
                       "faster (the carried dream already holds the pattern); higher -> more new detail per frame.",
        }),
        "occlusion_feather": ("FLOAT", {
            "default": defaults.occlusion_feather, "min": 0.0, "max": 32.0, "step": 0.5,
            "tooltip": "stable: blur (pixels) of the edge where the flow is unreliable (occlusions, new content). "
                       "Larger -> softer seams; 0 -> hard edges.",
        }),
    }


def colour_coherence_input(reference: str) -> dict[str, Any]:
    """The optional ``colour_coherence`` widget (after the others, so saved workflows keep their values)."""
    return {"colour_coherence": ("FLOAT", {
        "default": RECOMMENDED_COLOUR_COHERENCE, "min": 0.0, "max": 1.0, "step": 0.05,
        "tooltip": f"Pull each frame's brightness, contrast and colour cast towards {reference}, so colours do not "
                   "drift over a long clip (the dream's own colours stay). 0 = off, 1 = fully.",
    })}




def mask_batch(mask: Optional[torch.Tensor]) -> Optional[MaskBatch]:
    """A ComfyUI MASK (``[B,H,W]``, 1 = dream) as one mask per frame (or one for all); ``None`` stays ``None``."""
    if mask is None:
        return None
    return MaskBatch(mask if mask.dim() == 3 else mask.reshape(-1, *mask.shape[-2:]))
