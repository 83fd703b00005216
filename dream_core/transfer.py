"""Copies between the host and a GPU that never leave the GPU waiting.

A plain ``tensor.to("cuda")`` from ordinary (pageable) host memory blocks the host until the GPU has
run everything queued before it, and ``tensor.cpu()`` does the same the other way: one such copy per
frame on the dreaming thread drains the GPU's queue, which then idles while the host prepares the
next frame. The pipeline's frames and flows cross with these helpers instead:

* :func:`staged`: a host tensor in page-locked (pinned) memory, ready for an asynchronous copy to a
  GPU; made on the thread that produced it (decoding, the flow), so that thread pays for it.
* :func:`to_device`: the copy to the dream's device, asynchronous from pinned memory (PyTorch keeps
  the pinned block until the copy has run), a plain copy otherwise; the dtype is converted after
  the copy, on the device.
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
    a CUDA device (contiguous), else ``tensor`` itself (any shape, dtype; values unchanged)."""
    if not _to_cuda(tensor, device) or tensor.is_pinned():
        return tensor
    return tensor.contiguous().pin_memory()


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``tensor`` on ``device`` (and in ``dtype``, converted there): without blocking the host when it is a
    pinned host tensor bound for a CUDA device (:func:`staged`), else as ``tensor.to`` copies."""
    out = tensor.to(device=device, non_blocking=_to_cuda(tensor, device) and tensor.is_pinned())
    return out if dtype is None or out.dtype == dtype else out.to(dtype)


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
