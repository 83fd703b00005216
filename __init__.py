"""DeepDream Video: ComfyUI node pack (model, layers, image dream, optical flow, flow-warped video dream).

The library lives in ``dream_core/`` (pure PyTorch, usable without ComfyUI); the
nodes in ``nodes/``. Importing this package imports no ComfyUI module.
"""

WEB_DIRECTORY = "./web"

# ComfyUI imports this file as a package (custom_nodes/<folder>/__init__.py), whatever the
# folder is called. pytest also imports it while collecting tests/, and when the checkout's
# folder name is not a valid module name (e.g. "deepdream-video") it does so as a plain
# module without a parent package, where the relative import below cannot work.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, setup_host

    setup_host()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
