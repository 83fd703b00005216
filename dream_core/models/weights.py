"""Safe loading of state dicts from ``.pth``/``.pt``/``.bin``/``.safetensors`` files."""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Mapping

import torch
from torch import nn

from ..errors import WeightsError

WEIGHT_EXTENSIONS = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` on the CPU without executing pickled code.

    ``.safetensors`` files use :func:`safetensors.torch.load_file`; the others
    use ``torch.load(weights_only=True)``. A checkpoint wrapping the state dict
    under ``"state_dict"`` or ``"model"`` is unwrapped.

    Raises:
        WeightsError: the file is missing, unreadable, not a state dict, or
            holds something other than tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"Weights file not found: '{path}'. Check the path, or put the file there.",
                           parameter="weights")
    try:
        if path.lower().endswith(".safetensors"):
            from safetensors.torch import load_file

            sd: object = load_file(path, device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(
            f"Could not read weights file '{path}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "The file is corrupt, truncated, or not a PyTorch/safetensors state dict "
            "(pickled full models are refused for safety; save model.state_dict() instead).",
            parameter="weights",
        ) from exc
    except Exception as exc:  # safetensors raises its own SafetensorError type
        raise WeightsError(f"Could not read weights file '{path}': {type(exc).__name__}: {exc}",
                           parameter="weights") from exc
    if isinstance(sd, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = sd.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                sd = inner
                break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"Weights file '{path}' does not hold a state dict of tensors (got {type(sd).__name__}).",
                           parameter="weights")
    return {str(k).removeprefix("module."): v for k, v in sd.items()}


def load_into(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``state_dict`` into ``net`` strictly, with an error that says what did not match.

    Raises:
        WeightsError: keys missing/unexpected, shapes differ, or values are NaN or
            infinite; the message names ``source`` (the file) and ``arch`` and lists a few keys.
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    # BatchNorm counters are harmless when absent.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected_real = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected_real:
            parts.append(f"{len(unexpected_real)} unexpected keys (e.g. {', '.join(unexpected_real[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:2])})")
        raise WeightsError(
            f"Weights from '{source}' do not fit architecture '{arch}': {'; '.join(parts)}. "
            f"Is this file for another model? Choose the model the file was trained for.",
            parameter="weights",
        )
    filtered = {k: v for k, v in state_dict.items() if k in own}
    broken = [k for k, v in filtered.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise WeightsError(
            f"Weights from '{source}' hold NaN or infinite values in {len(broken)} tensors "
            f"(e.g. {', '.join(broken[:3])}); a network with them dreams a black image. The file is damaged, "
            "or was saved from a training run that diverged: use another copy.",
            parameter="weights",
        )
    net.load_state_dict(filtered, strict=False)
