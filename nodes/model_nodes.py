"""DeepDream Model Loader and DeepDream Layers: the model, and what to maximise in it."""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

from ..dream_core import (
    DEFAULT_MODEL,
    DreamError,
    DreamModel,
    InvalidParameterError,
    Objective,
    UnknownModelError,
    WeightsError,
    get_spec,
    list_models,
    load_model,
    parse_objective,
    resolve_objective,
)
from ..dream_core.channel_select import CAPTURES, DEFAULT_CAPTURE, MAX_CHANNEL
from ..dream_core.errors import did_you_mean
from ..dream_core.loss_modes import DEFAULT_LOSS, LOSS_MODES
from ..dream_core.catalog import all_layer_names, default_layer
from . import comfy_adapter as host
from .common import CATEGORY, MODEL_TYPE, OBJECTIVE_TYPE, explained

log = logging.getLogger(__name__)

#: The weights combo entry meaning "the model's own default weights".
DEFAULT_WEIGHTS = "(default)"


def check_model(model: Any) -> DreamModel:
    """Raise a clear error when ``model`` is not what the DeepDream Model Loader gives."""
    if not (hasattr(model, "spec") and hasattr(model, "net") and hasattr(model, "layer_names")):
        raise InvalidParameterError(
            f"'model' must come from the DeepDream Model Loader node; got {type(model).__name__}."
        )
    return model


# --------------------------------------------------------------------------- model loader


def _weights_hint(model_name: str) -> str:
    try:
        return get_spec(model_name).weights_hint
    except UnknownModelError:
        return ""


def _folders_text() -> str:
    return ", ".join(host.model_folders())


class DDVModelLoader:
    """Loads a DeepDream model once; ComfyUI keeps it cached while the inputs stay the same."""

    DESCRIPTION = (
        "Loads a DeepDream network onto ComfyUI's compute device. efficientnet_lite0 works offline out of the box; "
        "other models use their torchvision download or a weights file from ComfyUI/models/deepdream."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded network; connect it to DeepDream Layers and the dream nodes.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model_name": (list_models(), {
                    "default": DEFAULT_MODEL,
                    "tooltip": "The network to dream with. efficientnet_lite0 needs no download; googlenet, "
                               "inception_v3, vgg16/19 and resnet50 download torchvision weights on first use "
                               "(or take a file from models/deepdream); bvlc_googlenet (the original DeepDream "
                               "model) needs bvlc_googlenet.pth in models/deepdream.",
                }),
                "weights": ([DEFAULT_WEIGHTS] + host.list_weight_files(), {
                    "default": DEFAULT_WEIGHTS,
                    "tooltip": "(default): the model's own weights. Or a .pth/.pt/.safetensors/.bin state dict for "
                               "this architecture from ComfyUI/models/deepdream (press R to refresh the list).",
                }),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name: str, weights: str) -> bool | str:
        if model_name not in list_models():
            return (f"Unknown model '{model_name}'.{did_you_mean(str(model_name), list_models())} "
                    f"Registered models: {', '.join(list_models())}.")
        if weights == DEFAULT_WEIGHTS:
            if get_spec(model_name).load_default_weights is None:
                return (f"Model '{model_name}' has no default weights: put its weights file in the models/deepdream "
                        f"folder ({_folders_text()}), press R, and choose it in 'weights'. {_weights_hint(model_name)}")
            return True
        # Naming 'weights' here switches off ComfyUI's own check against the list, so this is that check:
        # only a file of the registered folder(s) resolves, never a path a client makes up.
        if host.resolve_weights(weights) is None:
            return (f"Weights file '{weights}' is not in the models/deepdream folder ({_folders_text()}). Put it "
                    f"there and press R, or choose '{DEFAULT_WEIGHTS}'. {_weights_hint(model_name)}")
        return True

    @classmethod
    def IS_CHANGED(cls, model_name: str, weights: str) -> str:
        """Reload when the chosen weights file changes on disk; otherwise ComfyUI's cache keeps the model.

        Only a file of the models/deepdream folder(s) is looked at (:func:`comfy_adapter.resolve_weights`).
        """
        path = host.resolve_weights(weights) if weights != DEFAULT_WEIGHTS else None
        if path is None:
            return f"{model_name}|{weights}"
        return f"{model_name}|{path}|{os.path.getmtime(path)}"

    @explained
    def load(self, model_name: str, weights: str) -> tuple[DreamModel]:
        hint = _weights_hint(model_name)
        path = None
        if weights != DEFAULT_WEIGHTS:
            path = host.resolve_weights(weights)
            if path is None:
                raise WeightsError(
                    f"Weights file '{weights}' is not in the models/deepdream folder ({_folders_text()}). "
                    f"Put it there and press R, or choose '{DEFAULT_WEIGHTS}'. {hint}"
                )
        elif get_spec(model_name).load_default_weights is None:
            raise WeightsError(
                f"Model '{model_name}' has no default weights: put its weights file in the models/deepdream folder "
                f"({_folders_text()}), press R, and choose it in 'weights'. {hint}"
            )
        device = host.offload_device()  # the dream nodes move it to the compute device and back (device_room)
        model = load_model(model_name, weights=path, device=device)
        log.info("DeepDream model %s loaded on %s from %s", model.name, device, model.weights_source)
        return (model,)


# --------------------------------------------------------------------------- layers / objective


def _channels_text(channels: str) -> str:
    text = channels.strip()
    if not text or text.lower() == "all":
        return ""
    return text if text.startswith("[") else f"[{text}]"


#: The Layers node's ``pick`` choices: the channel list as written, every channel but the listed ones, or a
#: pick of ``count`` channels by mean activation on the picture (:mod:`dream_core.channel_select`).
PICKS = ("listed", "all but listed", "strong", "avg", "weak")
_RANKED = ("strong", "avg", "weak")


def _term_text(layer: str, channels: str, pick: str, count: int, rank_on: str, loss: str) -> str:
    """The objective shorthand of one Layers node: ``layer[:selection][@loss]``.

    Raises:
        InvalidParameterError: an unknown ``pick``, or 'all but listed' with an empty channel list.
    """
    chans = _channels_text(str(channels))
    if pick not in PICKS:
        raise InvalidParameterError(f"DeepDream Layers: 'pick' is {pick!r}.{did_you_mean(str(pick), PICKS)} "
                                    f"Choose one of {', '.join(PICKS)}.")
    if pick in _RANKED:
        if chans:
            log.warning("DeepDream Layers: pick '%s' ranks the channels itself; the channel list %r is not used.",
                        pick, channels)
        when = "" if rank_on == DEFAULT_CAPTURE else f"/{rank_on}"
        selection = f":{pick}{int(count)}{when}"
    elif pick == "all but listed":
        if not chans:
            raise InvalidParameterError(
                "DeepDream Layers: pick 'all but listed' needs the channels to leave out in 'channels' "
                "(e.g. 3,7); or choose pick 'listed' to dream every channel.")
        selection = f":!{chans}"
    else:
        selection = f":{chans}" if chans else ""
    return f"{layer}{selection}" + ("" if loss == DEFAULT_LOSS else f"@{loss}")


class DDVLayerSelect:
    """Builds the objective: a layer (optionally some of its channels) with a weight, chained onto another."""

    DESCRIPTION = (
        "What the dream maximises: one layer of the model, optionally only some channels (listed, all but listed, "
        "or the strongest / middle / weakest on the picture), with a weight and a loss mode. Chain several "
        "DeepDream Layers nodes through 'objective' to mix layers. The layer list follows the connected model."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (OBJECTIVE_TYPE,)
    RETURN_NAMES = ("objective",)
    OUTPUT_TOOLTIPS = ("The objective; connect it to a dream node or to another DeepDream Layers node.",)
    FUNCTION = "select"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        names = list(all_layer_names())
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "The model whose layer is chosen (from DeepDream Model Loader)."}),
                "layer": (names, {
                    "default": default_layer(DEFAULT_MODEL),
                    "tooltip": "Layer to amplify, shallow to deep. Shallower -> strokes and textures; deeper -> "
                               "eyes, animals, objects. The list follows the connected model.",
                }),
                "channels": ("STRING", {
                    "default": "",
                    "tooltip": "Empty = all channels of the layer. Or one channel (12), a range (10-20) or a list "
                               "(3,7,10-20): fewer channels -> one distinct motif. The label shows the valid range. "
                               "With pick 'all but listed': the channels to leave out; unused by strong/avg/weak.",
                }),
                "weight": ("FLOAT", {
                    "default": 1.0, "min": -10.0, "max": 10.0, "step": 0.05,
                    "tooltip": "Weight of this layer in the objective. Larger -> its patterns dominate the chain; "
                               "negative -> suppresses them.",
                }),
            },
            "optional": {
                "objective": (OBJECTIVE_TYPE, {
                    "tooltip": "Chain: the objective of another DeepDream Layers node; this node adds its layer to it.",
                }),
                "pick": (list(PICKS), {
                    "default": "listed",
                    "tooltip": "listed: the channels in 'channels' (empty = all). all but listed: every channel except "
                               "them. strong / avg / weak: the 'count' channels the picture excites most / around the "
                               "median / least (a video: ranked on its first frame). strong -> the picture's own "
                               "motifs grow; weak -> patterns it barely shows appear.",
                }),
                "count": ("INT", {
                    "default": 8, "min": 1, "max": MAX_CHANNEL,
                    "tooltip": "How many channels strong / avg / weak dream (at most the layer's channel count). Fewer "
                               "-> fewer, more distinct motifs.",
                }),
                "rank_on": (list(CAPTURES), {
                    "default": DEFAULT_CAPTURE,
                    "tooltip": "When strong / avg / weak are ranked. clip: once (a video keeps the same channels on "
                               "every frame, no jumps); frame: again on every frame (the motifs follow the picture "
                               "but can jump); step: again at every gradient step.",
                }),
                "loss": (list(LOSS_MODES), {
                    "default": DEFAULT_LOSS,
                    "tooltip": "How the activations become the value the dream raises. l2: mean square (classic). "
                               "norm: every channel pushes equally hard. mean / abs_mean: average (absolute) "
                               "activation. abs_l2 = norm, mse = l2, bce: the original tool's names.",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, layer: str, channels: Optional[str], pick: Optional[str] = None) -> bool | str:
        names = all_layer_names()
        if layer not in names:
            return (f"Unknown layer '{layer}'.{did_you_mean(str(layer), names)} Pick a layer from the list; it "
                    "follows the model connected to this node.")
        if channels is not None and _channels_text(str(channels)) and (pick or "listed") not in _RANKED:
            try:  # bounded: a huge range such as 0-99999999 is refused before any list of indices is made
                parse_objective(f"{layer}:{_channels_text(str(channels))}")
            except DreamError as exc:
                return str(exc)
        return True

    @explained
    def select(
        self, model: DreamModel, layer: str, channels: str, weight: float, objective: Optional[Objective] = None,
        pick: str = "listed", count: int = 8, rank_on: str = DEFAULT_CAPTURE, loss: str = DEFAULT_LOSS,
    ) -> tuple[Objective]:
        model = check_model(model)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight == 0:
            raise InvalidParameterError(
                f"DeepDream Layers: 'weight' is {weight!r}; give a finite, non-zero weight (e.g. 1.0, or -1.0 to "
                "suppress the layer's patterns). A weight of 0 would leave the images unchanged."
            )
        term = parse_objective(_term_text(layer, channels, pick, count, rank_on, loss), model)
        if weight != 1.0:
            term = float(weight) * term
        result = term if objective is None else resolve_objective(model, objective) + term
        log.info("DeepDream objective: %s", result.to_string())
        return (result,)
