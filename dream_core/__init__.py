"""dream_core: DeepDream for images and flow-stable videos, in pure PyTorch (no ComfyUI imports).

Quick use::

    from dream_core import load_model, dream_image, DreamSettings
    model = load_model()                        # offline EfficientNet-Lite0
    out = dream_image(model, image, "block10_dw", DreamSettings(num_octaves=4))

Images are RGB float tensors ``[B,3,H,W]`` in ``0..1``.

Packages: :mod:`.clip` (the one frame loop :func:`dream_clip`), :mod:`.video`
(files), :mod:`.pipeline` (:func:`~dream_core.pipeline.render_range`: a source
through the loop into a sink, what every front end runs), :mod:`.flow` (optical
flow), :mod:`.models`, :mod:`.fastpath` (the execution copy the dream runs),
:mod:`.cli` (the command line).
"""

from .dream import DreamSettings, TemporalAnchor, TileBudget, dream_image, objective_value
from .errors import (
    ChannelOutOfRangeError,
    DreamCancelled,
    DreamError,
    FlowError,
    InvalidImageError,
    InvalidParameterError,
    ObjectiveSyntaxError,
    UnknownLayerError,
    UnknownModelError,
    VideoError,
    WeightsError,
)
from .features import FeatureHooks, count_hooks
from .flow import (
    DEFAULT_FLOW_METHOD,
    FLOW_METHODS,
    FlowEstimator,
    FlowSet,
    compute_flows,
    flow_pair,
    flow_preview,
    flow_to_color,
    warp,
    warp_with_mask,
)
from .models import DEFAULT_MODEL, DreamModel, get_spec, list_models, load_model
from .objectives import Objective, channel, layer, parse_objective, resolve_objective
from .stability import StabilityMetrics, stability_metrics
from .clip import (
    DEFAULT_VIDEO_MODE,
    VIDEO_MODES,
    ClipState,
    DreamedFrame,
    FrameDreamer,
    VideoSettings,
    dream_clip,
    dream_frames,
    frame_range,
)

__all__ = [
    "DEFAULT_FLOW_METHOD", "DEFAULT_VIDEO_MODE", "FLOW_METHODS", "ClipState", "DreamedFrame", "FlowEstimator",
    "FlowSet", "FrameDreamer", "StabilityMetrics", "TileBudget", "VIDEO_MODES", "VideoSettings", "compute_flows",
    "dream_clip", "dream_frames", "flow_pair", "flow_preview", "flow_to_color", "frame_range", "resolve_objective",
    "stability_metrics", "warp", "warp_with_mask",
    "DEFAULT_MODEL", "ChannelOutOfRangeError", "DreamCancelled", "DreamError", "DreamModel", "DreamSettings",
    "FeatureHooks", "FlowError", "InvalidImageError", "InvalidParameterError", "Objective", "ObjectiveSyntaxError",
    "TemporalAnchor", "UnknownLayerError", "UnknownModelError", "VideoError", "WeightsError", "channel",
    "count_hooks", "dream_image", "get_spec", "layer", "list_models", "load_model", "objective_value",
    "parse_objective",
]
