"""Everything the node pack needs from its ComfyUI host, with plain fallbacks.

This is the only module of the pack that imports ``comfy.*``, ``folder_paths``,
``server`` or ``aiohttp``, and it does so lazily inside functions. Without
ComfyUI (unit tests, the CLI, a notebook) every function still works:

==========================  ======================================  =============================
function                    inside ComfyUI                          fallback
==========================  ======================================  =============================
:func:`compute_device`      ``model_management.get_torch_device()`` ``cuda`` if available, else ``cpu``
:func:`intermediate_device` ``model_management.intermediate_device`` ``cpu``
:func:`soft_empty_cache`    ``model_management.soft_empty_cache()`` ``torch.cuda.empty_cache()`` if CUDA
:func:`check_interrupt`     raises when the user pressed Cancel     no-op
:func:`is_interrupt`        ``InterruptProcessingException``        never
:func:`make_room`           ``free_memory`` for our model and       the model to the compute
                            frames, the model to the GPU            device
:func:`give_back`           the model to the offload device,        ``soft_empty_cache``
                            ``soft_empty_cache``
:func:`out_of_memory_types` ``OOM_EXCEPTION`` (+ torch's)            ``torch.OutOfMemoryError``
:class:`Progress`           ``comfy.utils.ProgressBar`` + preview    debug log
:func:`output_directory`    ``folder_paths.get_output_directory()`` ``<tmp>/deepdream_video_output``
:func:`temp_directory`      ``folder_paths.get_temp_directory()``   ``<tmp>/deepdream_video_temp``
:func:`video_from_file`     ``comfy_api``'s ``VideoFromFile``       :class:`~.video_files.FileVideo`
weights folder functions    ``folder_paths`` ``deepdream`` folder   no folder (paths used as given)
:func:`setup_host`          registers folder and HTTP route         no-op
==========================  ======================================  =============================
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

log = logging.getLogger(__name__)

#: Name of our model folder (``ComfyUI/models/deepdream``; remappable in extra_model_paths.yaml).
MODEL_FOLDER = "deepdream"
#: Files listed in that folder (set explicitly: a new folder name otherwise lists every file).
WEIGHT_EXTENSIONS = frozenset({".pth", ".pt", ".safetensors", ".bin"})
#: HTTP route (also served under ``/api``) that the web extension asks for a model's layers.
LAYERS_ROUTE = "/deepdream_video/layers"
PRESETS_ROUTE = "/deepdream_video/presets"


# --------------------------------------------------------------------------- host modules


def _model_management() -> Any:
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm


def _folder_paths() -> Any:
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths if hasattr(folder_paths, "folder_names_and_paths") else None


def in_comfyui() -> bool:
    """True when running inside a ComfyUI server process."""
    return _folder_paths() is not None and _model_management() is not None


# --------------------------------------------------------------------------- devices, memory, interrupt


def compute_device() -> torch.device:
    """Where models run and images are dreamed."""
    mm = _model_management()
    if mm is not None:
        return torch.device(mm.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE batches, flows) are kept between nodes."""
    mm = _model_management()
    if mm is not None:
        return torch.device(mm.intermediate_device())
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Give cached accelerator memory back after a heavy node."""
    mm = _model_management()
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel (no-op outside ComfyUI)."""
    mm = _model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def is_interrupt(exc: BaseException) -> bool:
    """True for the exception :func:`check_interrupt` raises on Cancel (never outside ComfyUI)."""
    mm = _model_management()
    return mm is not None and isinstance(exc, mm.InterruptProcessingException)


def offload_device() -> torch.device:
    """Where a model waits between dreams: ComfyUI's offload device (the CPU, or the GPU itself with
    --highvram / --gpu-only); outside ComfyUI the compute device (nothing moves)."""
    mm = _model_management()
    if mm is not None:
        return torch.device(mm.unet_offload_device())
    return compute_device()


def out_of_memory_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the device ran out of memory" (ComfyUI's ``OOM_EXCEPTION`` and torch's)."""
    kinds: list[type[BaseException]] = [torch.OutOfMemoryError]
    mm = _model_management()
    oom = getattr(mm, "OOM_EXCEPTION", None) if mm is not None else None
    if isinstance(oom, type) and oom is not Exception and oom not in kinds:  # Exception when CUDA is absent
        kinds.append(oom)
    return tuple(kinds)


def make_room(model: torch.nn.Module, working_bytes: float) -> torch.device:
    """Make room on the compute device for ``model`` and ``working_bytes`` of frames and activations, and
    move the model there; returns that device.

    Inside ComfyUI, on a GPU, ``model_management.free_memory`` unloads ComfyUI's own models (a diffusion
    checkpoint, a VAE) until the model's size plus ``working_bytes`` are free, as core does for upscale
    models; with ``--novram`` every other model is unloaded. With ``--cpu`` nothing is unloaded.
    """
    device = compute_device()
    mm = _model_management()
    if mm is not None and device.type != "cpu":
        need = float(mm.module_size(model)) + float(working_bytes)
        if mm.vram_state == mm.VRAMState.NO_VRAM:
            need = 1e30  # --novram: the device is too small to share; everything else goes
        mm.free_memory(need, device)
    with torch.inference_mode(False), torch.no_grad():  # ComfyUI runs nodes in inference mode; the dream needs
        model.to(device)                                # parameters autograd can save (not inference tensors)
    return device


def give_back(model: torch.nn.Module, released: Optional[Callable[[], None]] = None) -> None:
    """After a dream: the model to the offload device (the CPU, unless ``--highvram`` / ``--gpu-only``),
    ``released()`` drops what was made for it on the compute device (e.g. execution copies), and the
    cached device blocks go back (``soft_empty_cache``)."""
    home = offload_device()
    moved = any(p.device != home for p in model.parameters())
    with torch.inference_mode(False), torch.no_grad():
        model.to(home)
    if moved and released is not None:
        released()
    soft_empty_cache()


# --------------------------------------------------------------------------- progress with preview


def tensor_to_pil(image: torch.Tensor) -> Any:
    """First image of ``[B,3,H,W]`` (or ``[3,H,W]``) in ``0..1`` as a PIL RGB image."""
    from PIL import Image

    x = image.detach()
    if x.dim() == 4:
        x = x[0]
    x = x[:3].float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy(), "RGB")


class Progress:
    """Progress bar on the executing node, with an optional live JPEG preview.

    Args:
        total: number of units (steps, frames, pairs).
        preview_interval: minimum seconds between two previews (turning a tensor
            into a JPEG costs time, so not every step gets one).
        preview_size: longest side of the preview in pixels.

    Example:
        >>> bar = Progress(100)
        >>> bar.update(10, image)          # image: [B,3,H,W] tensor, or a callable returning one
    """

    def __init__(self, total: int, preview_interval: float = 0.5, preview_size: int = 512) -> None:
        self.total = max(1, int(total))
        self.preview_interval = preview_interval
        self.preview_size = preview_size
        self._last_preview = float("-inf")
        self._bar = None
        try:
            import comfy.utils

            self._bar = comfy.utils.ProgressBar(self.total)
        except ImportError:
            pass

    def update(
        self,
        value: float,
        image: Optional[torch.Tensor | Callable[[], torch.Tensor]] = None,
        force_preview: bool = False,
    ) -> None:
        """Set the bar to ``value``; attach ``image`` as preview if the interval has passed."""
        preview = None
        now = time.monotonic()
        if image is not None and (force_preview or now - self._last_preview >= self.preview_interval):
            if self._bar is not None:
                tensor = image() if callable(image) else image
                preview = ("JPEG", tensor_to_pil(tensor), self.preview_size)
            self._last_preview = now
        if self._bar is not None:
            self._bar.update_absolute(min(value, self.total), self.total, preview)
        else:
            log.debug("progress %s/%s", value, self.total)


# --------------------------------------------------------------------------- folders and VIDEO objects


def output_directory() -> Path:
    """ComfyUI's output folder; outside ComfyUI a folder in the system's temporary directory."""
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.get_output_directory())
    return Path(tempfile.gettempdir()) / "deepdream_video_output"


def temp_directory() -> Path:
    """ComfyUI's temp folder (emptied when the server starts); outside ComfyUI one in the system's."""
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.get_temp_directory())
    return Path(tempfile.gettempdir()) / "deepdream_video_temp"


def video_from_file(path: str | os.PathLike[str]) -> Any:
    """A VIDEO value for a file: core's ``VideoFromFile`` (what LoadVideo gives, so SaveVideo and the
    preview nodes take it); outside ComfyUI our :class:`~.video_files.FileVideo` stand-in."""
    try:
        from comfy_api.input_impl import VideoFromFile
    except ImportError:
        from .video_files import FileVideo

        return FileVideo(os.fspath(path))
    return VideoFromFile(os.fspath(path))


# --------------------------------------------------------------------------- weights folder


def register_model_folder() -> None:
    """Register ``models/deepdream`` with our weight extensions (keeps paths from extra_model_paths.yaml)."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, MODEL_FOLDER)
    paths, exts = fp.folder_names_and_paths.get(MODEL_FOLDER, ([], set()))
    paths = list(paths)
    if default not in paths:
        paths.append(default)
    # A folder first named in extra_model_paths.yaml has an empty extension set (= every file).
    fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | set(WEIGHT_EXTENSIONS))


def model_folders() -> list[str]:
    """Folders searched for weights files (for messages); a placeholder outside ComfyUI."""
    fp = _folder_paths()
    if fp is None or MODEL_FOLDER not in fp.folder_names_and_paths:
        return [os.path.join("ComfyUI", "models", MODEL_FOLDER)]
    return list(fp.get_folder_paths(MODEL_FOLDER))


def list_weight_files() -> list[str]:
    """Weights files in the model folder(s), relative names, sorted; empty outside ComfyUI."""
    fp = _folder_paths()
    if fp is None or MODEL_FOLDER not in fp.folder_names_and_paths:
        return []
    return list(fp.get_filename_list(MODEL_FOLDER))


def resolve_weights(name: str) -> Optional[str]:
    """Full path of weights file ``name`` from the model folder(s), or ``None``.

    Inside ComfyUI only a file listed in the registered ``deepdream`` folder(s)
    resolves (a relative name from :func:`list_weight_files`, found through
    ``folder_paths``): a server never reads, or reveals the time stamp of, a file
    a client names elsewhere (an absolute path, ``..``, another extension).
    Outside ComfyUI (tests, a notebook) there is no folder and an existing file
    path is used as given.
    """
    if not isinstance(name, str) or not name:
        return None
    fp = _folder_paths()
    if fp is None:
        return name if os.path.isfile(name) else None
    if MODEL_FOLDER not in fp.folder_names_and_paths or name not in list_weight_files():
        return None
    return fp.get_full_path(MODEL_FOLDER, name)


# --------------------------------------------------------------------------- HTTP route for the web extension


def register_layers_route(catalog: Callable[[str], dict]) -> None:
    """Serve ``GET /deepdream_video/layers?model=NAME`` -> ``catalog(NAME)`` as JSON (404 for unknown names)."""
    async def layers(request: "web.Request") -> "web.Response":
        import asyncio

        from aiohttp import web  # ComfyUI's server brings it

        name = request.query.get("model", "")
        try:
            # The first call per model builds it once (random init) to count channels: not on the event loop.
            info = await asyncio.get_running_loop().run_in_executor(None, catalog, name)
        except ValueError as exc:  # UnknownModelError is a ValueError
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(info)

    _add_get_route(LAYERS_ROUTE, layers)


def register_presets_route(payload: Callable[[], dict]) -> None:
    """Serve ``GET /deepdream_video/presets`` -> ``payload()`` as JSON (the web extension fills widgets from it)."""
    async def presets(_request: "web.Request") -> "web.Response":
        from aiohttp import web

        return web.json_response(payload())

    _add_get_route(PRESETS_ROUTE, presets)


def _add_get_route(path: str, handler: Callable[..., Any]) -> None:
    """Register ``GET path`` on ComfyUI's server; nothing outside ComfyUI (no server, or no instance yet)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if server is not None:
        server.routes.get(path)(handler)


def setup_host(catalog: Callable[[str], dict], presets: Callable[[], dict]) -> None:
    """Called once at pack import: register the weights folder, the layers and the presets routes inside ComfyUI."""
    if _folder_paths() is None:
        return
    register_model_folder()
    register_layers_route(catalog)
    register_presets_route(presets)
    log.info("DeepDream Video: weights folder(s) %s", ", ".join(model_folders()))
