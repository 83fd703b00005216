"""What the registered models offer to choose from: their layers and each layer's channel count.

Counts come from one dry run of the architecture on PyTorch's ``meta`` device
(shapes only: no weights file, no download and no memory for the weights),
made once per model and cached; concurrent first requests for one model wait
for a single build. Front ends list them (the command line's ``--list-layers``,
the node pack's layer dropdown, served to the web extension by a route that
many browser tabs may call at once).
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import torch

from .models.registry import DEFAULT_MODEL, get_spec, list_models
from .models.spec import DreamModel
from .objectives import parse_objective


def default_layer(model_name: str) -> str:
    """The first layer of ``model_name``'s default objective."""
    return parse_objective(get_spec(model_name).default_objective).layers()[0]


log = logging.getLogger(__name__)

_CATALOG_LOCK = threading.Lock()
_CATALOGS: dict[str, dict[str, Any]] = {}


def layer_catalog(model_name: str) -> dict[str, Any]:
    """Layers of ``model_name`` with channel counts, shallow to deep (built once per model; thread-safe).

    Returns:
        ``{"model", "default" (first layer of the default objective), "objective" (the default
        objective), "layers": [{"name", "channels"}, ...]}``. The same cached dict each time:
        do not modify it.

    Raises:
        UnknownModelError: with close matches.
    """
    spec = get_spec(model_name)  # unknown names fail before taking the lock
    with _CATALOG_LOCK:  # a second caller waits for the first build instead of building its own
        if spec.name not in _CATALOGS:
            _CATALOGS[spec.name] = _build_catalog(spec.name)
        return _CATALOGS[spec.name]


def _channel_counts(model_name: str) -> dict[str, int]:
    """Channel counts from a forward of a blank probe: on the ``meta`` device (shapes only), else the CPU."""
    spec = get_spec(model_name)
    with torch.inference_mode(False), torch.no_grad():
        try:
            with torch.device("meta"):
                net = spec.build()
            return DreamModel(spec, net, "meta (channel counts only)").layer_channels()
        except (NotImplementedError, RuntimeError) as exc:  # an operator without a meta kernel
            log.debug("Counting %s's channels on the meta device failed (%s); using the CPU.", model_name, exc)
            return DreamModel(spec, spec.build(), "random init (channel counts only)").layer_channels()


def _build_catalog(model_name: str) -> dict[str, Any]:
    spec = get_spec(model_name)
    counts = _channel_counts(model_name)
    return {
        "model": spec.name,
        "default": default_layer(model_name),
        "objective": spec.default_objective,
        "layers": [{"name": name, "channels": int(counts[name])} for name in spec.layer_names],
    }


@functools.lru_cache(maxsize=None)
def all_layer_names() -> tuple[str, ...]:
    """Every registered model's layer names, the default model's first, without repeats."""
    names: dict[str, None] = {}
    for name in [DEFAULT_MODEL] + [m for m in list_models() if m != DEFAULT_MODEL]:
        names.update(dict.fromkeys(get_spec(name).layer_names))
    return tuple(names)
