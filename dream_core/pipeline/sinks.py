"""Where a rendered range's dreamed frames go: a *sink* takes each :class:`DreamedFrame`, in order.

A :class:`~dream_core.clip.loop.DreamedFrame` carries the frame's global index, the dreamed image
``[1,3,H,W]`` in ``0..1`` on the model's device, and the carry state to resume after it
(:meth:`ClipState.carry <dream_core.clip.loop.ClipState.carry>`). A sink's ``background`` flag says
whether its :meth:`~FrameSink.write` may run on the pipeline's encode thread (a file writer, a tensor)
or must run on the caller's (anything that touches a UI). A background sink may also have ``stage(done)``:
called on the dreaming thread as each frame is handed over (to start its copy off the GPU), its
result is what ``write`` then receives on the encode thread.

* :class:`WriterSink`: into a resumable :class:`~dream_core.video.writer.VideoWriter` (frame + carry);
* :class:`TensorSink`: into a preallocated ``[N,H,W,3]`` tensor (a ComfyUI IMAGE batch).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol

import numpy as np
import torch

from ..clip.loop import DreamedFrame
from ..errors import InvalidImageError, InvalidParameterError
from ..image_io import uint8_hwc
from ..transfer import HostCopy


class FrameSink(Protocol):
    """Takes the dreamed frames of a range, in order (:meth:`write`); ``background``: whether ``write`` may
    run on the pipeline's encode thread."""

    background: bool

    def write(self, done: DreamedFrame) -> None:
        ...


class FrameWriter(Protocol):
    """What :class:`WriterSink` writes to: :class:`~dream_core.video.writer.VideoWriter`'s ``write``."""

    def write(self, frame: np.ndarray, carry: Mapping[str, Any] | None = None) -> None:
        ...


class _Staged:
    """A dreamed frame handed over (:meth:`WriterSink.stage`, :meth:`TensorSink.stage`): the copy of its pixels
    to the host (``None`` when already in place) and whether they are all finite, both started on the
    dreaming thread without waiting for the GPU."""

    __slots__ = ("done", "copy", "finite")

    def __init__(self, done: DreamedFrame, copy: Optional[HostCopy]) -> None:
        self.done, self.copy = done, copy
        self.finite = HostCopy(torch.isfinite(done.image).all())

    def check(self) -> None:
        """Raise if the frame holds NaN or infinite values (waits for that one flag)."""
        check_dreamed_frame(bool(self.finite.result()), self.done.index)


def check_dreamed_frame(finite: bool, index: int) -> None:
    """The dreamed frame ``index`` must be finite before it is written.

    The frame loop trusts what it was given once checked (no value is read back on a GPU while it
    dreams), so a NaN that got in later (a flow or mask from a custom source, half precision
    overflowing) surfaces here, where the frame is read back anyway.

    Raises:
        InvalidImageError: it is not.
    """
    if not finite:
        raise InvalidImageError(
            f"Frame {index} was dreamed into NaN or infinite values, so it is not written. Look for NaN in the flows "
            "or masks given, or turn half-precision autocast off (autocast none).", parameter="image")


class WriterSink:
    """Dreamed frames into a resumable video writer: each frame as ``(H,W,3) uint8`` with its carry state
    (device tensors; the writer copies them to the host only when it commits a segment).

    Args:
        writer: an open :class:`~dream_core.video.writer.VideoWriter` whose next frame is the range's first.

    Raises (from :meth:`write`):
        InvalidImageError: a frame with NaN or infinite values (:func:`check_dreamed_frame`).
    """

    background = True

    def __init__(self, writer: FrameWriter) -> None:
        self.writer = writer

    def stage(self, done: DreamedFrame) -> _Staged:
        """On the dreaming thread, as the frame is handed to the encode thread: the frame is made ``uint8``
        there and its copy to the host started (:class:`~dream_core.transfer.HostCopy`: for a GPU frame
        the dreaming thread does not wait for the GPU), with its finiteness flag."""
        return _Staged(done, HostCopy(uint8_hwc(done.image)))

    def write(self, done: DreamedFrame | _Staged) -> None:
        """Write a frame :meth:`stage` handed over (on the encode thread), or any frame (staged here)."""
        staged = done if isinstance(done, _Staged) else self.stage(done)
        staged.check()  # waits for this frame's copies only
        assert staged.copy is not None
        self.writer.write(staged.copy.result().numpy(), carry=staged.done.state.carry())


class TensorSink:
    """Dreamed frames into a preallocated channels-last batch: frame ``first + k`` into ``out[k]``.

    With the pipeline's threads (a GPU), a GPU frame's copy to a host ``out`` starts on the dreaming thread
    into a pinned buffer (:meth:`stage`) and lands in ``out`` on the encode thread; every frame is in
    ``out`` when :func:`~dream_core.pipeline.render_range` returns.

    Args:
        out: ``[N,H,W,3]`` float tensor (any device; e.g. a ComfyUI IMAGE on the intermediate device).
        first: global index of the frame that goes into ``out[0]``.

    Raises:
        InvalidParameterError: ``out`` is not ``[N,H,W,3]``; (from :meth:`stage` / :meth:`write`) a frame
            outside it.
        InvalidImageError: (from :meth:`write`) a frame with NaN or infinite values (:func:`check_dreamed_frame`).
    """

    background = True

    def __init__(self, out: torch.Tensor, first: int = 0) -> None:
        if out.dim() != 4 or out.shape[-1] != 3:
            raise InvalidParameterError(f"out must be a [N,H,W,3] tensor; got {tuple(out.shape)}.", parameter="out")
        self.out = out
        self.first = first

    def _row(self, index: int) -> int:
        k = index - self.first
        if not 0 <= k < self.out.shape[0]:
            raise InvalidParameterError(
                f"Frame {index} does not fit the output of frames {self.first}..{self.first + len(self.out) - 1}.",
                parameter="out",
            )
        return k

    def stage(self, done: DreamedFrame) -> _Staged:
        """On the dreaming thread (its row checked here): a GPU frame starts its copy to a host ``out`` (no wait
        on the GPU); any other is copied into ``out`` at once (on a GPU in the dreaming thread's stream order).
        Its finiteness flag goes along to :meth:`write`."""
        k = self._row(done.index)
        if done.image.device.type == "cuda" and self.out.device.type == "cpu":
            return _Staged(done, HostCopy(done.image[0].permute(1, 2, 0)))
        self.out[k].copy_(done.image[0].permute(1, 2, 0))
        return _Staged(done, None)

    def write(self, done: DreamedFrame | _Staged) -> None:
        """Finish a frame :meth:`stage` handed over (on the encode thread), or put any frame in place."""
        staged = done if isinstance(done, _Staged) else self.stage(done)
        staged.check()
        if staged.copy is not None:
            self.out[self._row(staged.done.index)].copy_(staged.copy.result())
