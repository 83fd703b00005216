"""Copies between the host and a GPU that never leave the host waiting for the GPU.

A plain ``tensor.to("cuda")`` from ordinary (pageable) host memory blocks the host until the GPU has
run everything queued before it, and ``tensor.cpu()`` does the same the other way: one such copy per
frame on the dreaming thread drains the GPU's queue, which then idles while the host prepares the
next frame. The pipeline's frames and flows cross with these helpers instead:

* :func:`staged`: a host tensor in page-locked (pinned) memory, ready for an asynchronous copy to a
  GPU; made on the thread that produced it (decoding, the flow), so that thread pays for it.
* :func:`to_device`: the copy to the dream's device, asynchronous (a host tensor not staged yet is
  pinned first, on the calling thread: a host copy, no wait on the GPU; PyTorch keeps the pinned
  block until the copy has run); the dtype is converted after the copy, on the device.
* :func:`release_pinned`: hands the cached pinned blocks back to the system after a run (pinned
  memory is locked RAM, and ComfyUI keeps the process).
* :class:`HostCopy`: a GPU tensor's copy to the host, started without waiting (a pinned buffer and
  an event); :meth:`HostCopy.result` waits for that copy alone, on whichever thread needs the data
  (the encoder).

On the CPU and MPS these are plain copies or no copies: the values are the same everywhere.
"""

from __future__ import annotations

from typing import Optional

import torch


def _to_cuda(tensor: torch.Tensor, device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda" and tensor.device.type == "cpu"


def staged(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` ready for an asynchronous copy to ``device``: a pinned copy of a host tensor bound for
    a CUDA device (contiguous), else ``tensor`` itself (any shape, dtype; values unchanged).

    A tensor pinned already is taken as it is: whoever made it must not refill it afterwards (the
    copy to the GPU reads it later; the pipeline's sources make a new tensor per frame).
    """
    if not _to_cuda(tensor, device) or tensor.is_pinned():
        return tensor
    return tensor.contiguous().pin_memory()


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``tensor`` on ``device`` (and in ``dtype``, converted there). A host tensor bound for a CUDA device is
    copied without blocking the host (:func:`staged` first, if it is not pinned yet); anything else as
    ``tensor.to`` copies it."""
    to_cuda = _to_cuda(tensor, device)
    out = (staged(tensor, device) if to_cuda else tensor).to(device=device, non_blocking=to_cuda)
    return out if dtype is None or out.dtype == dtype else out.to(dtype)


def release_pinned() -> None:
    """Give the pinned host blocks cached by PyTorch back to the system (those still in use stay); a no-op
    where PyTorch has no such cache."""
    empty = getattr(torch._C, "_host_emptyCache", None)
    if empty is not None and torch.cuda.is_initialized():
        empty()


class HostCopy:
    """``tensor``'s copy to the host, started now; :meth:`result` waits for it.

    On CUDA the copy goes into a pinned buffer behind the work already queued on the current stream,
    and an event marks its end: the caller's thread goes on at once (no wait on the GPU), and the
    thread that calls :meth:`result` waits for this copy alone. Elsewhere the copy is made at once.

    Args:
        tensor: any tensor; it must not be changed in place afterwards (a new frame's tensor is new).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self._event: Optional[torch.cuda.Event] = None
        if tensor.device.type == "cuda":
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(tensor.device))
        else:
            self._host = tensor.to("cpu", copy=tensor.device.type != "cpu")

    def result(self) -> torch.Tensor:
        """The host tensor, once the copy has finished (waits for it on a GPU)."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host
