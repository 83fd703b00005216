"""The model registry: one :class:`ModelSpec` per architecture, and loading.

Each architecture module exposes ``SPECS: list[ModelSpec]``; this module
collects them in a fixed order (the first is the offline default).
"""

from __future__ import annotations

import importlib
import logging
import os
from functools import lru_cache
from typing import Optional

import torch

from ..devices import check_device
from ..errors import UnknownModelError, WeightsError, did_you_mean
from .spec import DreamModel, ModelSpec
from .weights import load_into, read_state_dict

log = logging.getLogger(__name__)

_ARCH_MODULES = (
    "dream_core.models.efficientnet_lite",
    "dream_core.models.torchvision_models",
    "dream_core.models.bvlc_googlenet",
)

DEFAULT_MODEL = "efficientnet_lite0"


@lru_cache(maxsize=1)
def _registry() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    package = __name__.rsplit(".", 1)[0]
    for mod_name in _ARCH_MODULES:
        module = importlib.import_module("." + mod_name.rsplit(".", 1)[1], package)
        for spec in module.SPECS:
            specs[spec.name] = spec
    return specs


def list_models() -> list[str]:
    """Registered model names, the offline default first."""
    return list(_registry())


def get_spec(name: str) -> ModelSpec:
    """Return the spec registered as ``name``.

    Raises:
        UnknownModelError: with close matches and the full list.
    """
    reg = _registry()
    if name not in reg:
        raise UnknownModelError(
            f"Unknown model '{name}'.{did_you_mean(name, reg)} Registered models: {', '.join(reg)}.",
            parameter="model",
        )
    return reg[name]


def load_model(
    name: str = DEFAULT_MODEL,
    weights: Optional[str | os.PathLike[str]] = None,
    device: Optional[torch.device | str] = None,
    dtype: torch.dtype = torch.float32,
) -> DreamModel:
    """Build ``name`` and load its weights.

    Args:
        name: a registered model name (see :func:`list_models`).
        weights: a ``.pth``/``.pt``/``.safetensors`` state dict for this
            architecture; ``None`` uses the spec's default weights (packaged
            file, or torchvision's download when online).
        device: where the model lives (default CPU).
        dtype: parameter dtype (float32 recommended; use autocast for speed).

    Returns:
        A :class:`DreamModel` in eval mode with frozen parameters. Built outside
        any ``torch.inference_mode`` so autograd can use it later.

    Raises:
        UnknownModelError, WeightsError (also for weights that are NaN or infinite),
        InvalidParameterError: a device this machine does not have (``parameter="device"``).
    """
    spec = get_spec(name)
    device = check_device(device) if device is not None else torch.device("cpu")
    if weights is None and spec.load_default_weights is None:
        raise WeightsError(f"Model '{name}' has no default weights; give a weights file. {spec.weights_hint}",
                           parameter="weights")
    with torch.inference_mode(False), torch.no_grad():
        net = spec.build()
        if weights is not None:
            source = os.fspath(weights)
            sd = read_state_dict(source)
        else:
            assert spec.load_default_weights is not None
            source = "default weights"
            try:
                sd = spec.load_default_weights()
            except WeightsError:
                raise
            except Exception as exc:  # network/download errors from torchvision
                raise WeightsError(
                    f"Could not get default weights for '{name}': {type(exc).__name__}: {exc}. {spec.weights_hint}",
                    parameter="weights",
                ) from exc
            if sd is None:
                raise WeightsError(f"Model '{name}' has no default weights; give a weights file. {spec.weights_hint}",
                                   parameter="weights")
        if spec.convert_state_dict is not None:
            sd = spec.convert_state_dict(sd)
        load_into(net, sd, source, name)
        net = net.to(device=device, dtype=dtype)
    log.info("Loaded model %s from %s", name, source)
    return DreamModel(spec, net, source)
