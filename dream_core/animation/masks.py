"""Where to dream, per frame: a mask from an image file, a video file, or a batch of masks.

Convention: a mask is ``[1,1,H,W]`` float in ``0..1``; white (1) = dream at full
strength, black (0) = keep the frame as it is, values between scale every step
(a feathered edge). Image and video files are read as their luminance
(BT.601), so any grey-scale or colour picture works. A mask of another size
than the frames is resized to them (bilinear).

Every source is called as ``source(index)`` with a frame's global index, the
interface of :func:`dream_core.clip.loop.dream_clip`'s ``masks``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ..errors import InvalidImageError
from ..image_ops import as_mask, luminance

#: Files read as video masks (one mask per frame); everything else is read as an image.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


class MaskSource:
    """The same mask for every frame.

    Args:
        mask: ``[H,W]``, ``[1,H,W]`` or ``[1,1,H,W]`` in ``0..1``.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = as_mask(mask, tuple(mask.shape[-2:]))

    def __call__(self, index: int) -> Optional[torch.Tensor]:
        return self.mask


class MaskBatch:
    """One mask per frame from a batch ``[N,H,W]`` (a ComfyUI MASK): mask ``k`` is frame ``offset + k``;
    a batch of one is used for every frame.

    Raises:
        InvalidImageError: not ``[N,H,W]``.
    """

    def __init__(self, masks: torch.Tensor, offset: int = 0) -> None:
        if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
            shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise InvalidImageError(f"A batch of masks must be [N,H,W]; got {shape}.", parameter="mask")
        self.masks = masks
        self.offset = offset

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def check_frames(self, indices: range) -> None:
        """Before the first frame: one mask for all, or one for every frame of ``indices``.

        Raises:
            InvalidImageError: frames without a mask (``parameter="mask"``).
        """
        if len(self) > 1 and len(indices) and not (self.offset <= indices.start and indices.stop <= self.offset + len(self)):
            raise InvalidImageError(
                f"There are {len(self)} masks, for frames {self.offset}..{self.offset + len(self) - 1}; the clip's frames "
                f"{indices.start}..{indices.stop - 1} need one each. Give one mask, or one per frame.", parameter="mask",
            )

    def __call__(self, index: int) -> Optional[torch.Tensor]:
        if len(self) == 1:
            return self.masks[0]
        k = index - self.offset
        if not 0 <= k < len(self):
            raise InvalidImageError(
                f"There is no mask for frame {index}: the masks cover frames {self.offset}..{self.offset + len(self) - 1}. "
                "Give one mask, or one per frame.", parameter="mask",
            )
        return self.masks[k]


class VideoMask:
    """Masks decoded from a video file, frame ``k`` of the file for global frame ``k`` (streamed: frames
    asked in order are decoded once; a jump re-opens the file at that frame).

    Raises:
        VideoError: the file cannot be read (from :func:`dream_core.video.read_frames`).
        InvalidImageError: a frame beyond the mask video's end.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from ..video import probe_video

        self.path = Path(path)
        self.info = probe_video(self.path)
        self._frames: Optional[Iterator[np.ndarray]] = None
        self._next = -1

    def check_frames(self, indices: range) -> None:
        """Before the first frame: the mask video reaches the last frame of ``indices``.

        Raises:
            InvalidImageError: it is shorter (``parameter="mask"``).
        """
        if len(indices) and indices.stop > self.info.num_frames:
            raise InvalidImageError(
                f"The mask video '{self.path}' has {self.info.num_frames} frames; the clip's frames {indices.start}.."
                f"{indices.stop - 1} need one each. Give a mask video at least as long as the clip, or one mask image.",
                parameter="mask",
            )

    def __call__(self, index: int) -> Optional[torch.Tensor]:
        from ..video import read_frames

        if index >= self.info.num_frames:
            raise InvalidImageError(
                f"The mask video '{self.path}' has {self.info.num_frames} frames; there is none for frame {index}. "
                "Give a mask video at least as long as the clip, or one mask image.", parameter="mask",
            )
        if self._frames is None or index != self._next:
            self._frames = iter(read_frames(self.path, index, num_frames=self.info.num_frames))
        self._next = index + 1
        return _luminance_mask(next(self._frames))


def _luminance_mask(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    return luminance(x)


def load_mask(path: str | os.PathLike[str]) -> MaskSource | VideoMask:
    """A mask source from a file: a video (one mask per frame) or an image (the same mask for every frame).

    Raises:
        InvalidImageError: the file is missing or cannot be read as an image.
        VideoError: a video file that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"Mask file not found: '{path}'.", parameter="mask")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoMask(path)
    from ..image_io import load_image

    return MaskSource(luminance(load_image(path)))
