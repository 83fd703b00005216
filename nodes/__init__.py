"""The ComfyUI nodes (V1 API) of DeepDream Video: thin wrappers over ``dream_core``.

Importing this package never imports ComfyUI; :mod:`.comfy_adapter` does that lazily.
"""

from __future__ import annotations

from . import comfy_adapter
from .animation_nodes import DDVAnimate, DDVSchedule
from .flow_nodes import DDVOpticalFlow
from .common import presets_payload
from .image_nodes import DDVDreamImage
from ..dream_core.catalog import layer_catalog
from .model_nodes import DDVLayerSelect, DDVModelLoader
from .settings_nodes import DDVSettings
from .stream_nodes import DDVVideoStream
from .video_nodes import DDVVideoDream

NODE_CLASS_MAPPINGS = {
    "DDVModelLoader": DDVModelLoader,
    "DDVLayerSelect": DDVLayerSelect,
    "DDVDreamImage": DDVDreamImage,
    "DDVOpticalFlow": DDVOpticalFlow,
    "DDVVideoDream": DDVVideoDream,
    "DDVVideoStream": DDVVideoStream,
    "DDVSchedule": DDVSchedule,
    "DDVAnimate": DDVAnimate,
    "DDVSettings": DDVSettings,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DDVModelLoader": "DeepDream Model Loader",
    "DDVLayerSelect": "DeepDream Layers",
    "DDVDreamImage": "DeepDream Image",
    "DDVOpticalFlow": "DeepDream Optical Flow",
    "DDVVideoDream": "DeepDream Video (flow-warped)",
    "DDVVideoStream": "DeepDream Video (streaming)",
    "DDVSchedule": "DeepDream Schedule",
    "DDVAnimate": "DeepDream Zoom Animation",
    "DDVSettings": "DeepDream Settings",
}


def setup_host() -> None:
    """Inside ComfyUI: register the models/deepdream folder, the layer-list and preset routes (no-op elsewhere)."""
    comfy_adapter.setup_host(layer_catalog, presets_payload)


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "setup_host"]
