"""The ComfyUI nodes (V1 API) of DeepDream Video: thin wrappers over ``dream_core``.

Importing this package never imports ComfyUI; :mod:`.comfy_adapter` does that lazily.
"""

from __future__ import annotations

from . import comfy_adapter
from .animation_nodes import DDVAnimate, DDVAnimateV2, DDVSchedule
from .flow_nodes import DDVOpticalFlow
from .common import presets_payload
from .image_nodes import DDVDreamImage, DDVDreamImageV2
from ..dream_core.catalog import layer_catalog
from .model_nodes import DDVLayerSelect, DDVModelLoader
from .settings_nodes import DDVSettings
from .stream_nodes import DDVVideoStream
from .video_nodes import DDVVideoDream, DDVVideoDreamV2

NODE_CLASS_MAPPINGS = {
    "DDVModelLoader": DDVModelLoader,
    "DDVLayerSelect": DDVLayerSelect,
    "DDVDreamImageV2": DDVDreamImageV2,
    "DDVOpticalFlow": DDVOpticalFlow,
    "DDVVideoDreamV2": DDVVideoDreamV2,
    "DDVVideoStream": DDVVideoStream,
    "DDVSchedule": DDVSchedule,
    "DDVAnimateV2": DDVAnimateV2,
    "DDVSettings": DDVSettings,
    # The first dream nodes, every setting a widget: DEPRECATED (hidden from search), kept so that workflows saved
    # with them load their positional widget values in place and dream the same.
    "DDVDreamImage": DDVDreamImage,
    "DDVVideoDream": DDVVideoDream,
    "DDVAnimate": DDVAnimate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DDVModelLoader": "DeepDream Model Loader",
    "DDVLayerSelect": "DeepDream Layers",
    "DDVDreamImageV2": "DeepDream Image",
    "DDVOpticalFlow": "DeepDream Optical Flow",
    "DDVVideoDreamV2": "DeepDream Video (flow-warped)",
    "DDVVideoStream": "DeepDream Video (streaming)",
    "DDVSchedule": "DeepDream Schedule",
    "DDVAnimateV2": "DeepDream Zoom Animation",
    "DDVSettings": "DeepDream Settings",
    "DDVDreamImage": "DeepDream Image (legacy, every widget)",
    "DDVVideoDream": "DeepDream Video (legacy, every widget)",
    "DDVAnimate": "DeepDream Zoom Animation (legacy, every widget)",
}


def setup_host() -> None:
    """Inside ComfyUI: register the models/deepdream folder, the layer-list and preset routes (no-op elsewhere)."""
    comfy_adapter.setup_host(layer_catalog, presets_payload)


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "setup_host"]
