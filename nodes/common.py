"""Shared pieces of the nodes: type names, IMAGE layout conversions, setting widgets and their merge, error remedies.

ComfyUI's IMAGE is ``[B,H,W,C]`` float ``0..1`` on the CPU (``C`` is 3, sometimes 4
or 1); ``dream_core`` works on ``[B,3,H,W]``. Inputs are never modified: they are
ComfyUI's cached outputs of the upstream node.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, TypeVar

import torch

from ..dream_core import DreamError, DreamSettings, InvalidImageError, InvalidParameterError, VideoSettings
from ..dream_core.animation import MaskBatch
from ..dream_core.errors import with_remedy
from ..dream_core.options import Option, options
from ..dream_core.presets import LOOK_FIELDS, PRESETS, preset_look, preset_settings
from . import comfy_adapter as host

CATEGORY = "DeepDream Video"

MODEL_TYPE = "DEEPDREAM_MODEL"
OBJECTIVE_TYPE = "DEEPDREAM_OBJECTIVE"
FLOW_TYPE = "DEEPDREAM_FLOW"
SCHEDULE_TYPE = "DEEPDREAM_SCHEDULE"
#: The DeepDream Settings node's output: a plain dict, setting name -> value (see :func:`merge_settings`).
SETTINGS_TYPE = "DEEPDREAM_SETTINGS"

#: Every dream and video setting's declaration (:mod:`dream_core.options`), by field name.
SETTINGS: dict[str, Option] = {**options(DreamSettings), **options(VideoSettings)}

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
        "settings": "Connect a DeepDream Settings node of this pack to 'settings', or disconnect it.",
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


def setting_input(name: str, *, default: Any = None, tooltip: Optional[str] = None) -> tuple[Any, dict[str, Any]]:
    """The widget of dream or video setting ``name``, made from its declaration (:mod:`dream_core.options`):
    its type or choices, range, step, the front ends' default and its help as the tooltip (``default`` and
    ``tooltip`` for a node parameter that shares the setting's meaning and range, e.g. an animation's own
    ``later_iterations``)."""
    option = SETTINGS[name]
    opts: dict[str, Any] = {"default": option.front_default if default is None else default,
                            "tooltip": tooltip or option.help}
    if option.kind is bool:
        return ("BOOLEAN", opts)
    if option.choices:
        return (list(option.choices), opts)
    opts.update(min=option.minimum, max=option.maximum, step=option.step)
    if name == "seed":
        opts["control_after_generate"] = False  # the same seed, run after run: the dream is reproducible
    return ("INT" if option.kind is int else "FLOAT", opts)


def setting_inputs(*names: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """:func:`setting_input` of each of ``names``, in that order."""
    return {name: setting_input(name) for name in names}


#: The widgets of every dream setting of the first nodes, in their saved order (the legacy nodes keep it).
DREAM_WIDGETS = ("num_octaves", "octave_scale", "num_iterations", "learning_rate", "jitter", "gradient_smoothing",
                 "seed", "luminance_only", "autocast", "tile_size", "tile_overlap")
#: The step widgets added after them (optional, so workflows saved before them still queue).
STEP_WIDGETS = ("step_rule", "colour_decorrelation", "laplacian_levels")


def preset_input() -> dict[str, tuple[Any, dict[str, Any]]]:
    """The ``preset`` widget: a named look, or ``custom`` (the widgets as they are)."""
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    return {"preset": ([CUSTOM_PRESET, *PRESETS], {
        "default": CUSTOM_PRESET,
        "tooltip": f"A named look. Choosing one fills in {', '.join(LOOK_FIELDS)} (here and on a connected DeepDream "
                   f"Settings node); changing any of them afterwards switches back to custom. custom: the widgets as "
                   f"they are. {presets}",
    })}


def merge_settings(widgets: Mapping[str, Any],
                   settings: Optional[Mapping[str, Any]] = None) -> tuple[DreamSettings, VideoSettings]:
    """The validated dream and video settings a node runs, from its widgets and an optional settings input.

    The rule, in order:

    1. every :class:`DreamSettings` and :class:`VideoSettings` field starts at its front ends' default
       (:attr:`~dream_core.options.Option.front_default`);
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
    dream_fields, video_fields = set(options(DreamSettings)), set(options(VideoSettings))
    given = dict(settings or {})
    unknown = sorted(set(given) - dream_fields - video_fields)
    if unknown:
        raise InvalidParameterError(
            f"Not dream or video settings: {', '.join(unknown)}. Valid names: "
            f"{', '.join(sorted(dream_fields | video_fields))}.", parameter="settings")
    values: dict[str, Any] = {name: option.front_default for name, option in SETTINGS.items()}
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


def mask_batch(mask: Optional[torch.Tensor]) -> Optional[MaskBatch]:
    """A ComfyUI MASK (``[B,H,W]``, 1 = dream) as one mask per frame (or one for all); ``None`` stays ``None``."""
    if mask is None:
        return None
    return MaskBatch(mask if mask.dim() == 3 else mask.reshape(-1, *mask.shape[-2:]))
