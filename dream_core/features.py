"""Reading activations of named layers, and stopping the forward pass early.

:class:`FeatureHooks` registers one forward hook per requested layer and
removes every hook on exit, also when the body raises. The hook on the deepest
requested layer raises :class:`_StopForward` so the rest of the network never
runs (the network is *truncated* after the deepest layer without rewriting
any architecture's ``forward``).

With ``optimize=True`` (what the dream loop uses unless a dream's
``DreamSettings.fast_path`` says otherwise) the forward runs on the
*execution copy* of the network (:mod:`dream_core.fastpath`: BatchNorm folded,
``channels_last``, closed-form LRN, polyphase stems; checked on a probe image).
"""

from __future__ import annotations

import logging
import threading
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from . import fastpath
from .errors import InvalidParameterError

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import DreamModel


log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Internal signal: the deepest requested layer has been computed."""


#: network -> the lock its hooks are held under (see :func:`model_lock`).
_MODEL_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model: "DreamModel") -> "threading.RLock":
    """The lock a :class:`FeatureHooks` holds on ``model`` from entering to leaving its ``with`` block.

    Hooks live on the network (and on its one cached execution copy), so two
    dreams running at once with one model would read each other's features.
    The lock makes a second thread wait for the first dream to finish; the same
    thread may enter again (a guide image's features are read inside a dream).
    """
    with _LOCKS_LOCK:
        lock = _MODEL_LOCKS.get(model.net)
        if lock is None:
            lock = _MODEL_LOCKS[model.net] = threading.RLock()
        return lock


class FeatureHooks:
    """Forward hooks capturing the outputs of ``layers`` of ``model``.

    Use as a context manager; run the network with :meth:`run`::

        with FeatureHooks(model, ["block8", "block11"]) as hooks:
            feats = hooks.run(image)   # {"block8": [B,C,h,w], "block11": ...}

    Thread safety: inside the ``with`` block the model is held
    (:func:`model_lock`): another thread entering hooks on the same model
    waits until this block is left, so dreams with one model from several
    threads run one after the other instead of mixing their features.

    Args:
        model: a loaded :class:`~dream_core.models.spec.DreamModel`.
        layers: friendly layer names (validated; unknown names raise
            :class:`~dream_core.errors.UnknownLayerError`).
        truncate: stop the forward pass right after the deepest layer.
        optimize: run the cached execution copy of the network (BatchNorm folded
            into convolutions, ``channels_last``; see
            :func:`dream_core.fastpath.execution_net`) instead of ``model.net``.
            Same features up to float round-off, faster; hooks of your own on
            ``model.net`` do not see these forwards.
        channels_last: with ``optimize``, force the memory format on (``True``)
            or off (``False``); ``None`` picks it by device (on for CPU and CUDA).
        polyphase: with ``optimize``, force the polyphase input gradient of the
            stem on or off; ``None`` picks it by device (on for CPU).
        depthwise: with ``optimize``, force depthwise convolutions onto ATen's native
            kernels (``True``) or leave them to cuDNN (``False``); ``None`` picks it by
            device (on for CUDA; :mod:`dream_core.fastpath.depthwise`).
    """

    def __init__(
        self,
        model: "DreamModel",
        layers: Sequence[str],
        truncate: bool = True,
        *,
        optimize: bool = False,
        channels_last: Optional[bool] = None,
        polyphase: Optional[bool] = None,
        depthwise: Optional[bool] = None,
    ) -> None:
        if not layers:
            raise InvalidParameterError("At least one layer is needed to read features; none was given.")
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: model.module_for(name) for name in self.layers}
        self.deepest = max(self.layers, key=model.layer_depth)
        self.truncate = truncate
        self.optimize = optimize
        self.channels_last = channels_last
        self.polyphase = polyphase
        self.depthwise = depthwise
        self._net: nn.Module = model.net
        self._channels_last = False
        self._norm: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._handles: list[RemovableHandle] = []
        self._store: dict[str, torch.Tensor] = {}
        self._running = False  # hooks act only during this object's own run()
        self._lock: Optional[threading.RLock] = None  # held from entering to remove()
        #: State that lives as long as these hooks and is dropped by :meth:`remove` (the dream
        #: step's captured CUDA graphs, :mod:`dream_core.step_graph`).
        self.cache: dict[object, object] = {}

    def __enter__(self) -> "FeatureHooks":
        lock = model_lock(self.model)
        if not lock.acquire(blocking=False):
            log.info("Another thread is dreaming with %s; waiting for it to finish.", self.model.name)
            lock.acquire()
        self._lock = lock
        try:
            self._attach()
        except BaseException:
            self.remove()
            raise
        return self

    def _attach(self) -> None:
        if self.optimize:
            cl = fastpath.channels_last_pays(self.model) if self.channels_last is None else self.channels_last
            self._net = fastpath.execution_net(self.model, channels_last=cl, polyphase=self.polyphase,
                                               depthwise=self.depthwise)
            self._channels_last = cl
        else:
            self._net, self._channels_last = self.model.net, False
        for name in self.layers:
            module = self._net.get_submodule(self.model.spec.layers[name]) if self.optimize else self.modules[name]
            self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this object registered and let other threads use the model (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._store = {}
        self.cache.clear()
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _make_hook(self, name: str):
        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if not self._running:  # another FeatureHooks on the same network is running
                return
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._store[name] = output
            if self.truncate and name == self.deepest and len(self._store) == len(self.layers):
                raise _StopForward()

        return hook

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not self.optimize:
            return self.model.normalize(image)
        # (x * value_scale - mean) / std as one multiply-add with constants made once.
        norm = self.model.spec.normalization
        if self._norm is None or self._norm[0].device != image.device or self._norm[0].dtype != image.dtype:
            # Filled on the device from numbers (no host tensor copied: that would wait for a GPU's queue).
            scale = torch.empty(1, 3, 1, 1, device=image.device, dtype=image.dtype)
            shift = torch.empty_like(scale)
            for c, (mean, std) in enumerate(zip(norm.mean, norm.std)):
                scale[:, c].fill_(norm.value_scale / std)
                shift[:, c].fill_(-mean / std)
            self._norm = (scale, shift)
        x = image.flip(1) if norm.bgr else image
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self._norm[1], x, self._norm[0])

    def run(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward RGB ``[B,3,H,W]`` ``0..1`` through the network; return captured features.

        Returns:
            ``{layer: tensor [B,C,h,w]}`` for every requested layer, in request order.
        """
        if not self._handles:
            raise RuntimeError("FeatureHooks.run() called outside its 'with' block")
        self._store = {}
        self._running = True
        try:
            self._net(self._normalize(image))
        except _StopForward:
            pass
        finally:
            self._running = False
        missing = [n for n in self.layers if n not in self._store]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no output in the forward pass")
        out = {n: self._store[n] for n in self.layers}
        self._store = {}
        return out


def count_hooks(module: torch.nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``module`` (for leak checks).

    For a :class:`~dream_core.models.spec.DreamModel` this includes the hooks on
    its cached execution copies (:func:`dream_core.fastpath.execution_net`), where
    ``FeatureHooks(..., optimize=True)`` registers them.
    """
    nets = [module, *fastpath.execution_copies(module)]
    return sum(len(m._forward_hooks) for net in nets for m in net.modules())


@contextmanager
def grad_enabled_outside_inference() -> Iterator[None]:
    """Leave any enclosing ``torch.inference_mode()`` and enable autograd.

    ComfyUI runs nodes under ``inference_mode``; gradient ascent on the image
    needs normal tensors and autograd, so the dream loop runs inside this.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield
