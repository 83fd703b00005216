"""Torch backend flags around our own calls: set on entering a block, restored on leaving it (also on errors).

ComfyUI runs every node in one process, so the library never changes torch's
process-wide flags (``torch.backends.cudnn.benchmark``, TF32, cuDNN on/off) for
longer than its own calls. :func:`scoped_flags` sets the flags it is given and
puts back exactly what was there before, in reverse order, whatever the block
does; nested blocks restore level by level.

The flags the library uses:

* :func:`dream_flags`: around a dream on CUDA, cuDNN's ``benchmark`` mode off
  (with it on, the first EfficientNet-Lite0 720p frame did not finish within 60 s
  on an H200: every new octave shape is timed against every engine). TF32 is left
  as the process has it (on for convolutions by default).
* :func:`full_precision`: float32 convolutions and matrix products without TF32
  (the reference of the execution copy's check, :mod:`dream_core.fastpath.check`).
* :func:`cudnn_disabled`: ATen's own kernels instead of cuDNN's
  (:mod:`dream_core.fastpath.depthwise`).

TF32 is read and set through ``fp32_precision`` (``"tf32"``/``"ieee"``) where this
torch has it, else through the older ``allow_tf32`` flags; the two are never mixed
(torch refuses to read the old flag after the new one was set per operator).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator, Optional

import torch

_cudnn = torch.backends.cudnn


def _new_api() -> bool:
    """Whether this torch has the per-operator ``fp32_precision`` flags (2.9 and later)."""
    return hasattr(getattr(_cudnn, "conv", None), "fp32_precision") and hasattr(torch.backends.cuda.matmul,
                                                                                 "fp32_precision")


def _resolved(*levels: str) -> str:
    """The first of ``levels`` that is not ``"none"`` (torch's inheritance: operator, backend, generic)."""
    for level in levels:
        if level != "none":
            return level
    return "ieee"


def conv_tf32() -> bool:
    """Whether float32 convolutions on CUDA run in TF32 now (cuDNN's default: yes)."""
    if _new_api():
        return _resolved(_cudnn.conv.fp32_precision, _cudnn.fp32_precision, torch.backends.fp32_precision) == "tf32"
    return bool(_cudnn.allow_tf32)


def matmul_tf32() -> bool:
    """Whether float32 matrix products on CUDA run in TF32 now (torch's default: no)."""
    if _new_api():
        cuda_all = getattr(torch.backends.cuda, "fp32_precision", "none")
        return _resolved(torch.backends.cuda.matmul.fp32_precision, cuda_all, torch.backends.fp32_precision) == "tf32"
    return bool(torch.backends.cuda.matmul.allow_tf32)


class _Flag:
    """One process-wide flag: how to read it and how to write it."""

    def __init__(self, get: Callable[[], object], put: Callable[[object], None]) -> None:
        self.get, self.put = get, put


def _attr_flag(owner: object, name: str) -> _Flag:
    return _Flag(lambda: getattr(owner, name), lambda value: setattr(owner, name, value))


def _tf32_flags(on: bool) -> list[tuple[_Flag, object]]:
    """The flags and values that turn TF32 on or off for convolutions and matrix products."""
    if _new_api():
        value = "tf32" if on else "ieee"
        return [(_attr_flag(_cudnn.conv, "fp32_precision"), value),
                (_attr_flag(torch.backends.cuda.matmul, "fp32_precision"), value)]
    return [(_attr_flag(_cudnn, "allow_tf32"), on), (_attr_flag(torch.backends.cuda.matmul, "allow_tf32"), on)]


@contextmanager
def scoped_flags(*, cudnn_enabled: Optional[bool] = None, cudnn_benchmark: Optional[bool] = None,
                 tf32: Optional[bool] = None) -> Iterator[None]:
    """Set the given backend flags inside the block; restore every one of them on leaving it.

    Args:
        cudnn_enabled: ``torch.backends.cudnn.enabled`` (``False``: ATen's own kernels).
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` (time every engine per new shape).
        tf32: TF32 for float32 convolutions and matrix products on CUDA (``False``: IEEE float32).
        ``None`` leaves a flag alone.
    """
    changes: list[tuple[_Flag, object]] = []
    if cudnn_enabled is not None:
        changes.append((_attr_flag(_cudnn, "enabled"), bool(cudnn_enabled)))
    if cudnn_benchmark is not None:
        changes.append((_attr_flag(_cudnn, "benchmark"), bool(cudnn_benchmark)))
    if tf32 is not None:
        changes.extend(_tf32_flags(bool(tf32)))
    saved: list[tuple[_Flag, object]] = []
    try:
        for flag, value in changes:
            saved.append((flag, flag.get()))
            flag.put(value)
        yield
    finally:
        for flag, old in reversed(saved):
            flag.put(old)


def dream_flags(device: torch.device) -> ContextManager[None]:
    """The flags a dream on ``device`` runs under: on CUDA, cuDNN ``benchmark`` off; elsewhere nothing."""
    return scoped_flags(cudnn_benchmark=False) if device.type == "cuda" else nullcontext()


def full_precision(device: torch.device) -> ContextManager[None]:
    """IEEE float32 on ``device``: TF32 off and autocast off inside the block (CUDA); autocast off elsewhere."""
    stack = ExitStack()
    if device.type == "cuda":
        stack.enter_context(scoped_flags(tf32=False))
    if device.type in ("cuda", "cpu"):
        stack.enter_context(torch.autocast(device.type, enabled=False))
    return stack


def cudnn_disabled() -> ContextManager[None]:
    """cuDNN off inside the block: convolutions run ATen's own CUDA kernels (e.g. the native depthwise ones)."""
    return scoped_flags(cudnn_enabled=False)


def autocast_enabled(device_type: str) -> bool:
    """Whether an autocast region for ``device_type`` (``"cuda"`` or ``"cpu"``) encloses the caller."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no device type
        return bool(torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled())


def reduced_precision(device: torch.device) -> bool:
    """Whether float32 work on ``device`` runs below IEEE float32 right now: TF32 convolutions or matrix
    products on CUDA, or an enclosing autocast for ``device``'s type."""
    if device.type in ("cuda", "cpu") and autocast_enabled(device.type):
        return True
    return device.type == "cuda" and (conv_tf32() or matmul_tf32())
