"""DeepDream Optical Flow: flows and reliability masks of consecutive frames, in their own node.

Keeping flow out of the dream node means ComfyUI's cache holds it while the user
tweaks dream parameters: only the dream re-runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Optional

import torch

from ..dream_core import DEFAULT_FLOW_METHOD, FLOW_METHODS, FlowEstimator, FlowSet, WeightsError, compute_flows
from ..dream_core.flow import RAFT_METHODS, flow_preview
from . import comfy_adapter as host
from .common import CATEGORY, FLOW_TYPE, check_image, explained, rgb_frame

log = logging.getLogger(__name__)

RAFT_DOWNLOAD = "(torchvision download)"


class _LazyFrames(Sequence):
    """The IMAGE batch as a sequence of RGB ``[1,3,H,W]`` frames, converted (and moved) one at a time."""

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.images = images
        self.device = device

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("frame index must be an int")
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return rgb_frame(self.images, index % len(self), self.device)


class DDVOpticalFlow:
    """Thin wrapper over :func:`dream_core.flow.compute_flows`."""

    DESCRIPTION = (
        "Optical flow between consecutive frames (backward and forward flows plus a reliability mask), for "
        "DeepDream Video. Computed once and cached by ComfyUI while you tweak the dream."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (FLOW_TYPE, "IMAGE")
    RETURN_NAMES = ("flow", "preview")
    OUTPUT_TOOLTIPS = (
        "Flows of every frame pair; connect to DeepDream Video (same frames).",
        "Colour-coded flow per frame (hue = direction, saturation = speed; dark = unreliable, the dream restarts "
        "there), longest side at most 512 px.",
    )
    FUNCTION = "compute"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The clip's frames, in order (the same frames the video dream gets)."}),
                "method": (list(FLOW_METHODS), {
                    "default": DEFAULT_FLOW_METHOD,
                    "tooltip": "dis: OpenCV DIS, fast and good on CPU. farneback: the original tool's method, "
                               "smoother, slower. raft_small / raft_large: neural flow, most accurate at motion "
                               "edges, slow on CPU, weights downloaded by torchvision once (or raft_weights).",
                }),
                "max_side": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 8,
                    "tooltip": "0: estimate at the frames' size. Otherwise estimate on frames shrunk to this longer "
                               "side and upsample the flow: smaller -> faster, less detailed motion.",
                }),
            },
            "optional": {
                "raft_weights": ([RAFT_DOWNLOAD] + host.list_weight_files(), {
                    "default": RAFT_DOWNLOAD,
                    "tooltip": "RAFT only: a RAFT state dict from models/deepdream (for offline use); "
                               f"{RAFT_DOWNLOAD} uses torchvision's file, downloaded once.",
                }),
            },
        }

    @explained
    def compute(
        self, images: torch.Tensor, method: str, max_side: int, raft_weights: Optional[str] = None
    ) -> tuple[FlowSet, torch.Tensor]:
        images = check_image(images)
        weights = None
        if method in RAFT_METHODS and raft_weights not in (None, RAFT_DOWNLOAD):
            weights = host.resolve_weights(raft_weights)
            if weights is None:
                raise WeightsError(
                    f"RAFT weights file '{raft_weights}' is not in the models/deepdream folder "
                    f"({', '.join(host.model_folders())}); put it there and press R, or choose {RAFT_DOWNLOAD}."
                )
        estimator = FlowEstimator(method, weights=weights, max_side=int(max_side) or None)
        # OpenCV methods run on the CPU; RAFT runs where ComfyUI computes.
        device = host.compute_device() if method in RAFT_METHODS else torch.device("cpu")
        pairs = max(0, int(images.shape[0]) - 1)
        progress = host.Progress(max(1, pairs))

        def on_pair(done: int, total: Optional[int]) -> None:
            host.check_interrupt()
            progress.update(done)

        started = time.perf_counter()
        try:
            flows = compute_flows(_LazyFrames(images, device), estimator=estimator, on_pair=on_pair,
                                  storage_device=host.intermediate_device())
        finally:
            host.soft_empty_cache()
        preview = flow_preview(flows).to(host.intermediate_device())
        log.info("DeepDream Optical Flow: %s, %d frames of %dx%d in %.1f s", method, flows.num_frames,
                 flows.width, flows.height, time.perf_counter() - started)
        return (flows, preview)
