"""Reading activations of named layers, and stopping the forward pass early.

:class:`FeatureHooks` registers one forward hook per requested layer and
removes every hook on exit, also when the body raises. The hook on the deepest
requested layer raises :class:`_StopForward` so the rest of the network never
runs (the network is *truncated* after the deepest layer without rewriting
any architecture's ``forward``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import DreamModel


class _StopForward(Exception):
    """Internal signal: the deepest requested layer has been computed."""


class FeatureHooks:
    """Forward hooks capturing the outputs of ``layers`` of ``model``.

    Use as a context manager; run the network with :meth:`run`::

        with FeatureHooks(model, ["block8", "block11"]) as hooks:
            feats = hooks.run(image)   # {"block8": [B,C,h,w], "block11": ...}

    Args:
        model: a loaded :class:`~dream_core.models.spec.DreamModel`.
        layers: friendly layer names (validated; unknown names raise
            :class:`~dream_core.errors.UnknownLayerError`).
        truncate: stop the forward pass right after the deepest layer.
    """

    def __init__(self, model: "DreamModel", layers: Sequence[str], truncate: bool = True) -> None:
        if not layers:
            from .errors import InvalidParameterError

            raise InvalidParameterError("At least one layer is needed to read features; none was given.")
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: model.module_for(name) for name in self.layers}
        self.deepest = max(self.layers, key=model.layer_depth)
        self.truncate = truncate
        self._handles: list[RemovableHandle] = []
        self._store: dict[str, torch.Tensor] = {}

    def __enter__(self) -> "FeatureHooks":
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this object registered (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._store = {}

    def _make_hook(self, name: str):
        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._store[name] = output
            if self.truncate and name == self.deepest and len(self._store) == len(self.layers):
                raise _StopForward()

        return hook

    def run(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward RGB ``[B,3,H,W]`` ``0..1`` through the network; return captured features.

        Returns:
            ``{layer: tensor [B,C,h,w]}`` for every requested layer, in request order.
        """
        if not self._handles:
            raise RuntimeError("FeatureHooks.run() called outside its 'with' block")
        self._store = {}
        try:
            self.model.net(self.model.normalize(image))
        except _StopForward:
            pass
        missing = [n for n in self.layers if n not in self._store]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no output in the forward pass")
        out = {n: self._store[n] for n in self.layers}
        self._store = {}
        return out


def capture_features(model: "DreamModel", image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """One-shot helper: features of ``layers`` for ``image`` (hooks removed afterwards)."""
    with FeatureHooks(model, layers) as hooks:
        return hooks.run(image)


def count_hooks(module: torch.nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``module`` (for leak checks)."""
    return sum(len(m._forward_hooks) for m in module.modules())


@contextmanager
def grad_enabled_outside_inference() -> Iterator[None]:
    """Leave any enclosing ``torch.inference_mode()`` and enable autograd.

    ComfyUI runs nodes under ``inference_mode``; gradient ascent on the image
    needs normal tensors and autograd, so the dream loop runs inside this.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield
