"""What a dreamable architecture declares: input normalisation, layers, weights.

A :class:`ModelSpec` is a small, immutable description registered once per
architecture (see :mod:`dream_core.models.registry`). Loading a spec yields a
:class:`DreamModel`, which owns the ``nn.Module``, knows how to turn an RGB
image in ``0..1`` into the network's input, and maps friendly layer names to
modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class InputNormalization:
    """How an RGB image in ``0..1`` becomes the network's input.

    ``model_input = (image[:, order] * value_scale - mean) / std`` where
    ``order`` is RGB or BGR and ``mean``/``std`` are given in the model's own
    channel order and value units.

    Examples:
        torchvision ImageNet: ``InputNormalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))``.
        Caffe BVLC GoogLeNet: ``InputNormalization((104.0, 117.0, 123.0), (1, 1, 1), value_scale=255, bgr=True)``.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_scale: float = 1.0
    bgr: bool = False

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        """Map ``image`` ``[B,3,H,W]`` RGB ``0..1`` to the network's input (same device/dtype)."""
        x = image.flip(1) if self.bgr else image
        # Per channel with the constants as numbers: no tensor copied to a GPU, so a dream step that
        # normalises this way never waits for the GPU and can be captured in a CUDA graph.
        return torch.stack([(c * self.value_scale - m) / s for c, m, s in zip(x.unbind(1), self.mean, self.std)], dim=1)


IMAGENET = InputNormalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    Attributes:
        name: registry key, e.g. ``"efficientnet_lite0"``.
        description: one line for model lists and UI tooltips.
        build: returns the architecture with random weights (no download).
        layers: friendly layer name -> dotted module path inside ``build()``'s
            module, ordered shallow to deep. Only these names are dreamable.
        normalization: how RGB ``0..1`` maps to the network's input.
        default_objective: objective string used when the user gives none.
        min_size: smallest input side (pixels) the network accepts down to its
            deepest layer; octaves smaller than this are refused.
        load_default_weights: returns the default state dict (packaged file or
            torchvision download) or ``None`` when the model has no default and
            needs a user file.
        weights_hint: where a user gets weights; quoted in error messages.
        convert_state_dict: optional key remapping applied to any loaded state
            dict before ``load_state_dict`` (e.g. a checkpoint's own names).
        offline: True when default weights need no network access.
    """

    name: str
    description: str
    build: Callable[[], nn.Module]
    layers: Mapping[str, str]
    normalization: InputNormalization
    default_objective: str
    min_size: int
    load_default_weights: Optional[Callable[[], Optional[StateDict]]] = None
    weights_hint: str = ""
    convert_state_dict: Optional[Callable[[StateDict], StateDict]] = None
    offline: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)


class DreamModel(nn.Module):
    """A loaded network plus what dreaming needs to know about it.

    Parameters are frozen (``requires_grad=False``): dreaming differentiates
    with respect to the image only. The module is in ``eval()`` mode.

    Args:
        spec: the registry entry this model was built from.
        net: the architecture with weights loaded.
        weights_source: a human-readable origin ("packaged", a file path, ...).
    """

    def __init__(self, spec: ModelSpec, net: nn.Module, weights_source: str) -> None:
        super().__init__()
        self.spec = spec
        self.net = net.eval()
        self.weights_source = weights_source
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._channels: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def layer_names(self) -> list[str]:
        return self.spec.layer_names

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def module_for(self, layer: str) -> nn.Module:
        """Return the module whose output is the friendly layer ``layer``."""
        from ..errors import UnknownLayerError, did_you_mean

        if layer not in self.spec.layers:
            raise UnknownLayerError(
                f"Model '{self.name}' has no layer '{layer}'.{did_you_mean(layer, self.spec.layers)} "
                f"Its layers: {', '.join(self.spec.layers)}.",
                parameter="objective",
            )
        return self.net.get_submodule(self.spec.layers[layer])

    def layer_depth(self, layer: str) -> int:
        """Index of ``layer`` in the shallow-to-deep order."""
        return self.spec.layer_names.index(layer)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """RGB ``[B,3,H,W]`` in ``0..1`` -> network input."""
        return self.spec.normalization.apply(image)

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer``'s output (computed once by a dry run)."""
        self.module_for(layer)  # validates the name
        if not self._channels:
            self._channels = self._probe_channels()
        return self._channels[layer]

    def layer_channels(self) -> dict[str, int]:
        """Friendly layer name -> channel count, shallow to deep."""
        if not self._channels:
            self._channels = self._probe_channels()
        return dict(self._channels)

    def _probe_channels(self) -> dict[str, int]:
        """One forward of a blank image through ``net`` with a hook per layer, recording channel counts."""
        size = max(self.spec.min_size, 64)
        probe = torch.zeros(1, 3, size, size, device=self.device, dtype=self.dtype)
        counts: dict[str, int] = {}
        handles = []
        for name in self.layer_names:
            def record(_module: nn.Module, _inputs: object, output: object, name: str = name) -> None:
                out = output[0] if isinstance(output, (tuple, list)) else output
                counts.setdefault(name, int(out.shape[1]))  # type: ignore[union-attr]
            handles.append(self.module_for(name).register_forward_hook(record))
        try:
            with torch.inference_mode(False), torch.no_grad():
                self.net(self.normalize(probe))
        finally:
            for handle in handles:
                handle.remove()
        return {name: counts[name] for name in self.layer_names}

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - convenience
        """Full network on RGB ``0..1`` input (classification logits where the net has a head)."""
        return self.net(self.normalize(image))
