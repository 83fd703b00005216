"""Model registry and architectures."""

from .registry import DEFAULT_MODEL, get_spec, list_models, load_model
from .spec import DreamModel, InputNormalization, ModelSpec

__all__ = ["DEFAULT_MODEL", "DreamModel", "InputNormalization", "ModelSpec", "get_spec", "list_models", "load_model"]
