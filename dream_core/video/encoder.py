"""H.264 encoding of RGB frames: one ``yuv420p`` stream in an output container, BT.709 limited range.

:func:`check_frame` validates what callers hand the writer; :func:`pad_to_even`
makes a frame ``yuv420p``-compatible. :func:`segment_crf` is the quality of the
writer's resumable segments: near-lossless, so that the single final encode (see
:mod:`.mux`) starts from (almost) the dreamed pixels.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np

from ..errors import InvalidImageError

#: x264 speed presets (slower = smaller file at the same quality).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

#: Quality of the resumable segments (x264 CRF) when the output's is lower: visually lossless,
#: about 3-4x the size of a CRF 18 file. Each segment starts with a keyframe; a keyframe's coding
#: noise differs from the frame before it, so segments at the output's own quality joined as
#: they are showed a quality jump at every join (warp error 1.5x the median pair's at CRF 18);
#: re-encoded once from CRF 8 segments, 1.1x (benchmarks/look.py --video).
SEGMENT_CRF = 8.0
#: x264 preset of the segments: fast to write, and their size only matters until the run finishes.
SEGMENT_PRESET = "veryfast"

_Interp = av.video.reformatter.Interpolation
_ENCODE_INTERPOLATION = _Interp.BILINEAR | _Interp.ACCURATE_RND


def check_frame(frame: Any, index: int) -> np.ndarray:
    if hasattr(frame, "detach") and hasattr(frame, "cpu"):  # a torch tensor
        frame = frame.detach().cpu().numpy()
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidImageError(f"Frame {index} has shape {tuple(arr.shape)}; expected (H, W, 3) RGB.")
    if arr.dtype != np.uint8:
        raise InvalidImageError(
            f"Frame {index} has dtype {arr.dtype}; expected uint8 values 0..255. "
            "Convert a float image in [0, 1] with (img.clip(0, 1) * 255).round().astype(np.uint8)."
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InvalidImageError(f"Frame {index} is {arr.shape[1]}x{arr.shape[0]}; at least 2x2 pixels are needed.")
    return np.ascontiguousarray(arr)


def segment_crf(crf: float) -> float:
    """x264 CRF of the segments for an output at ``crf``: the output's own when it is finer
    than :data:`SEGMENT_CRF` (``0`` stays lossless), else :data:`SEGMENT_CRF`."""
    return min(float(crf), SEGMENT_CRF)


class H264Encoder:
    """An H.264 ``yuv420p`` video stream in an output container, fed RGB frames or decoded pictures."""

    def __init__(self, container: av.container.OutputContainer, rate: Fraction, width: int, height: int,
                 crf: float, preset: str) -> None:
        self.container = container
        self.stream = container.add_stream("libx264", rate=rate)
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = 1 / rate
        self.stream.options = {"crf": f"{crf:g}", "preset": preset}
        ctx = self.stream.codec_context
        ctx.colorspace = av.video.reformatter.Colorspace.ITU709
        ctx.color_range = av.video.reformatter.ColorRange.MPEG
        ctx.color_primaries = av.video.reformatter.ColorPrimaries.BT709
        ctx.color_trc = av.video.reformatter.ColorTrc.BT709
        self.count = 0

    def encode(self, rgb: np.ndarray) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(
            format="yuv420p",
            src_colorspace=av.video.reformatter.Colorspace.ITU709,
            dst_colorspace=av.video.reformatter.Colorspace.ITU709,
            dst_color_range=av.video.reformatter.ColorRange.MPEG,
            interpolation=_ENCODE_INTERPOLATION,
        )
        frame.pts = self.count
        self.count += 1
        return self.stream.encode(frame)

    def encode_picture(self, picture: av.VideoFrame) -> list[av.Packet]:
        """Encode a decoded ``yuv420p`` BT.709 picture (e.g. from a segment) as the next frame.

        The picture is copied into a fresh frame, so nothing of its decoding (its
        keyframe flag, which x264 would turn into a keyframe of the output, its
        timestamps) carries over.
        """
        frame = av.VideoFrame.from_ndarray(picture.to_ndarray(format="yuv420p"), format="yuv420p")
        frame.colorspace = av.video.reformatter.Colorspace.ITU709
        frame.color_range = av.video.reformatter.ColorRange.MPEG
        frame.pts = self.count
        self.count += 1
        return self.stream.encode(frame)

    def flush(self) -> list[av.Packet]:
        return self.stream.encode(None)


def pad_to_even(arr: np.ndarray) -> np.ndarray:
    """``arr`` with an odd width or height padded by one pixel (its last column/row repeated).

    ``yuv420p`` needs even sides.
    """
    h, w = arr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return arr
    return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
