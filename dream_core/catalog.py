"""What the registered models offer to choose from: their layers and each layer's channel count.

Counts come from one dry run of the architecture with random weights (no
weights file or download needed), made once per model and cached. Front ends
list them (the command line's ``--list-layers``, the node pack's layer dropdown).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .models.registry import DEFAULT_MODEL, get_spec, list_models
from .models.spec import DreamModel
from .objectives import parse_objective


def default_layer(model_name: str) -> str:
    """The first layer of ``model_name``'s default objective."""
    return parse_objective(get_spec(model_name).default_objective).layers()[0]


@functools.lru_cache(maxsize=None)
def layer_catalog(model_name: str) -> dict[str, Any]:
    """Layers of ``model_name`` with channel counts, shallow to deep.

    Returns:
        ``{"model", "default" (first layer of the default objective), "objective" (the default
        objective), "layers": [{"name", "channels"}, ...]}``.

    Raises:
        UnknownModelError: with close matches.
    """
    spec = get_spec(model_name)
    with torch.inference_mode(False), torch.no_grad():
        counts = DreamModel(spec, spec.build(), "random init (channel counts only)").layer_channels()
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
