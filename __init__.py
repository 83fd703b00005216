"""DeepDream Video: ComfyUI node pack (model, layers, image dream, optical flow, flow-warped video dream).

The library lives in ``dream_core/`` (pure PyTorch, usable without ComfyUI); the
nodes in ``nodes/``. Importing this package imports no ComfyUI module.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, setup_host

WEB_DIRECTORY = "./web"

setup_host()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
