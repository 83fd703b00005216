"""Model registry and architectures, and the catalogue of their layers."""

from .catalog import all_layer_names, default_layer, layer_catalog
from .registry import DEFAULT_MODEL, get_spec, list_models, load_model
from .spec import DreamModel, InputNormalization, ModelSpec

__all__ = [
    "DEFAULT_MODEL", "DreamModel", "InputNormalization", "ModelSpec", "all_layer_names", "default_layer",
    "get_spec", "layer_catalog", "list_models", "load_model",
]
