"""Where a rendered range's frames come from: ``(global index, frame)`` pairs over a known range.

A *source* (:class:`FrameSource`) is an iterable of ``(index, frame)`` pairs whose indices are
exactly ``source.frames`` in order, frames RGB, either ``(H,W,3) uint8`` arrays (as decoded) or
float tensors ``[1,3,H,W]`` / ``[3,H,W]`` in ``0..1``. Its ``background`` flag says whether it may
be read ahead on a thread: true for frames that do not depend on the dreams (a file, a tensor
batch), false for frames made from the previous dream (a feedback animation).

* :class:`VideoFileSource`: a video file, decoded one frame at a time, fitted to ``max_side``;
* :class:`IndexedFrames`: any iterable of pairs (a tensor batch, a feedback animation, a generator).
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional, Protocol, Union

import numpy as np
import torch

from ..image_io import from_uint8_hwc
from ..transfer import staged
from ..image_ops import fit_max_side
from ..video.reader import read_frames

#: A source's frame: ``(H,W,3) uint8`` RGB, or an RGB float tensor ``[1,3,H,W]`` / ``[3,H,W]`` in ``0..1``.
Frame = Union[np.ndarray, torch.Tensor]

#: Frame sides of a dreamed video are rounded to multiples of this (H.264 ``yuv420p`` needs even sides).
EVEN = 2


class FrameSource(Protocol):
    """``(global index, frame)`` pairs, indices exactly :attr:`frames` in order.

    Attributes:
        frames: the global indices the source yields.
        background: whether the frames may be made ahead of the loop, on another thread (they do
            not depend on the dreams of earlier frames).
    """

    frames: range
    background: bool

    def __iter__(self) -> Iterator[tuple[int, Frame]]:
        ...


class IndexedFrames:
    """Any iterable of ``(index, frame)`` pairs as a :class:`FrameSource`.

    Args:
        frames: the global indices ``pairs`` yields, in order.
        pairs: the frames with their indices, e.g. ``((t, batch[t]) for t in frames)``.
        background: whether ``pairs`` may be iterated ahead of the loop on a thread (``False`` for
            frames made from earlier dreams, e.g. a :class:`~dream_core.animation.FeedbackFrames`).
        name: how messages name it.
    """

    def __init__(self, frames: range, pairs: Iterable[tuple[int, Frame]], *, background: bool = False,
                 name: str = "the frame source") -> None:
        self.frames = frames
        self.pairs = pairs
        self.background = background
        self.name = name

    def __iter__(self) -> Iterator[tuple[int, Frame]]:
        return iter(self.pairs)


class VideoFileSource:
    """Frames ``frames`` of a video file, decoded one at a time (:func:`~dream_core.video.read_frames`).

    Each frame comes as RGB ``[1,3,h,w]`` float32 in ``0..1`` on the host, resized so its longer side
    is at most ``max_side`` with even sides (as a dreamed video is written), and pinned when ``device``
    is a GPU (:func:`~dream_core.transfer.staged`: decoded, resized and pinned on the decoding thread;
    the frame loop copies it to the GPU without waiting).

    Args:
        path: the video file.
        frames: the global indices to read (a range past the file's end yields fewer frames; the
            pipeline reports it).
        max_side: longer side at most this many pixels (``None``: the file's size, rounded to even sides).
        device: the device the frames are dreamed on.
        num_frames: the file's frame count when probed already (saves a pass over its packets).
    """

    background = True

    def __init__(self, path: str | os.PathLike[str], frames: range, *, max_side: Optional[int] = None,
                 device: torch.device | str = "cpu", num_frames: Optional[int] = None) -> None:
        self.path = path
        self.frames = frames
        self.max_side = max_side
        self.device = device
        self.num_frames = num_frames
        self.name = f"'{path}'"

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        decoded = read_frames(self.path, self.frames.start, self.frames.stop, self.num_frames)
        for index, arr in enumerate(decoded, self.frames.start):
            yield index, staged(fit_max_side(from_uint8_hwc(arr), self.max_side, multiple=EVEN), self.device)

    def frame(self, index: int) -> torch.Tensor:
        """Frame ``index`` of the file (any index of the file, not only of :attr:`frames`), as the
        iteration gives it: RGB ``[1,3,H,W]`` in ``0..1`` fitted to ``max_side``, e.g. the run's first
        frame that ranked channel picks are taken on when a resumed run or a segment starts later."""
        arr = next(read_frames(self.path, index, index + 1, self.num_frames))
        return fit_max_side(from_uint8_hwc(arr), self.max_side, multiple=EVEN)
