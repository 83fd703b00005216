"""Facts about a video file, read without decoding it all: :func:`probe_video` -> :class:`VideoInfo`.

The frame count comes from counting demuxed packets (exact and cheap), the
frame rate stays an exact :class:`~fractions.Fraction` (``30000/1001`` stays
``30000/1001``). The small PyAV helpers here (opening a file, finding its video
stream, scanning its packets, the first line of an FFmpeg error) are shared by
the reader, the writer and the muxer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import VideoError

logger = logging.getLogger(__name__)

#: Frames the flow-based video modes need (one pair for an optical flow).
MIN_FLOW_FRAMES = 2


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__



@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video file, as read by :func:`probe_video`.

    Attributes:
        path: the file.
        width: frame width in pixels, as :func:`~dream_core.video.reader.read_frames`
            yields the frames: upright, after ``rotation``.
        height: frame height in pixels, likewise.
        frame_rate: exact frames per second, e.g. ``Fraction(30000, 1001)``. For a
            variable-frame-rate file this is the average rate, frames over the
            clip's duration, so a video written at it lasts as long as the source
            (see ``is_variable_frame_rate``).
        num_frames: exact number of frames, counted from the demuxed packets.
        duration: seconds from the first frame's start to the last frame's end.
        start_time: seconds at which the first video frame is shown (usually 0).
        codec: video codec name, e.g. ``"h264"``.
        pix_fmt: decoded pixel format, e.g. ``"yuv420p"`` (``None`` if unknown).
        is_variable_frame_rate: frame durations differ by more than timestamp
            rounding explains.
        average_rate: the container's own average rate (frames / duration), kept
            for reference; it can differ slightly from ``frame_rate`` when the
            container's duration includes edit-list padding.
        has_audio: the file has at least one audio stream.
        audio_codec: codec of the first audio stream, e.g. ``"aac"``.
        audio_sample_rate: sample rate of the first audio stream in Hz.
        rotation: degrees counter-clockwise by which the file asks players to turn its
            pictures (a phone's display matrix: 0, 90, 180 or 270); the reader turns
            the frames so, and writes them upright.
        mirrored: the display matrix also mirrors the pictures (the reader does too).
    """

    path: Path
    width: int
    height: int
    frame_rate: Fraction
    num_frames: int
    duration: float
    start_time: float
    codec: str
    pix_fmt: str | None
    is_variable_frame_rate: bool
    average_rate: Fraction | None
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    rotation: int = 0
    mirrored: bool = False


@dataclass(frozen=True)
class Orientation:
    """How to turn a decoded picture upright, from its display matrix.

    The displayed picture is the decoded one transposed (``transpose``: rows become
    columns), then flipped top to bottom (``flip_rows``) and/or left to right
    (``flip_cols``); these cover the eight orientations a display matrix of
    quarter turns and mirrors describes.
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False
    rotation: int = 0
    mirrored: bool = False

    @property
    def upright(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` ``(H, W, C)`` turned upright, in its own buffer."""
        if self.upright:
            return rgb
        if self.transpose:
            rgb = rgb.transpose(1, 0, 2)
        if self.flip_rows:
            rgb = rgb[::-1]
        if self.flip_cols:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)


def frame_orientation(frame: av.VideoFrame, path: Path | None = None) -> Orientation:
    """The :class:`Orientation` a decoded frame's display matrix asks for (upright when it has none).

    The matrix ``[a b u; c d v; ...]`` (16.16 fixed point) maps a decoded pixel
    ``(x, y)`` to ``(a x + c y, b x + d y)`` on screen; only quarter turns and
    mirrors are applied, any other angle is reported and left as decoded.
    """
    from av.sidedata.sidedata import Type

    try:
        data = frame.side_data.get(Type.DISPLAYMATRIX)
    except (AttributeError, KeyError, ValueError):
        data = None
    if data is None:
        return Orientation()
    m = np.frombuffer(bytes(data), dtype="<i4")[:9].astype(np.float64)
    a, b, c, d = (m[0] / 65536, m[1] / 65536, m[3] / 65536, m[4] / 65536)
    mirrored = a * d - b * c < 0
    rotation = int(round(float(frame.rotation or 0))) % 360
    if abs(a) < 1e-3 and abs(d) < 1e-3 and abs(abs(b) - 1) < 1e-3 and abs(abs(c) - 1) < 1e-3:
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0, rotation=rotation, mirrored=mirrored)
    if abs(b) < 1e-3 and abs(c) < 1e-3 and abs(abs(a) - 1) < 1e-3 and abs(abs(d) - 1) < 1e-3:
        return Orientation(flip_rows=d < 0, flip_cols=a < 0, rotation=rotation, mirrored=mirrored)
    logger.warning("'%s' asks to turn its pictures by %s degrees, not a quarter turn; frames are used as decoded.",
                   path or "the video", rotation)
    return Orientation()


def open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"Video file '{path}' does not exist. Check the path.")
    if not path.is_file():
        raise VideoError(f"'{path}' is not a file (a video file such as .mp4 is expected).")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(
            f"Could not open video file '{path}': {first_line(exc)}. "
            "The file is corrupt, truncated, or not a video."
        ) from exc


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"'{path}' has no video stream (streams found: {', '.join(kinds)}).")
    return container.streams.video[0]


@dataclass
class _Scan:
    pts: list[int | None]
    durations: list[int | None]
    time_base: Fraction
    demuxed: int  # packets with data, including those an edit list discards
    indexed: int  # frames the container's index lists (mp4/mov: the sample table); 0 when unknown


def _scan(path: Path) -> _Scan:
    with open_input(path) as container:
        stream = video_stream(container, path)
        indexed = int(stream.frames or 0) if "mp4" in container.format.name else 0
        pts: list[int | None] = []
        durations: list[int | None] = []
        demuxed = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                demuxed += 1
                if packet.is_discard:
                    continue
                pts.append(packet.pts)
                durations.append(packet.duration or None)
        except av.FFmpegError as exc:
            raise VideoError(
                f"Could not read the packets of '{path}' after {len(pts)} frames: {first_line(exc)}. "
                "The file is corrupt or truncated."
            ) from exc
        return _Scan(pts, durations, stream.time_base, demuxed, indexed)


def scan_packets(path: Path) -> tuple[list[int | None], list[int | None], Fraction]:
    """Demux (without decoding) the video packets: their pts and durations, in file order.

    Packets that carry no data (flush packets) or that the demuxer marks for
    discarding (frames cut by an edit list) are skipped: they produce no frame.
    """
    scan = _scan(path)
    return scan.pts, scan.durations, scan.time_base


def check_complete(scan: _Scan, path: Path) -> None:
    """Refuse a file whose index lists more frames than its data holds (cut short: a copy or download
    that stopped, a recording that ended without being finalised).

    Raises:
        VideoError: naming how many frames can be read and how to keep them.
    """
    if scan.indexed and scan.demuxed < scan.indexed:
        raise VideoError(
            f"'{path}' is truncated: its index lists {scan.indexed} frames but the file holds only the first "
            f"{scan.demuxed} (it was cut short). Copy or download it again; to keep the readable part, remux it "
            f"first (e.g. ffmpeg -i '{path.name}' -c copy fixed.mp4)."
        )


def _rate_matches(rate: Fraction | None, mean_delta: Fraction, tick: Fraction) -> bool:
    """Whether one frame at ``rate`` lasts ``mean_delta`` seconds up to timestamp rounding."""
    if rate is None or rate <= 0:
        return False
    return abs(1 / rate - mean_delta) <= tick + mean_delta / 200


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the facts of a video file without decoding it all.

    The frame count comes from counting the demuxed video packets (exact, and
    fast: nothing is decoded). The frame rate is the stream's nominal rate
    (FFmpeg's ``r_frame_rate``, PyAV ``guessed_rate``) when the packet
    timestamps agree with it, else its ``average_rate``; both are exact
    fractions, never rounded. The first frame is decoded to prove the file
    is playable.

    Args:
        path: the video file.

    Returns:
        The file's :class:`VideoInfo`.

    Raises:
        VideoError: the file is missing, not a video, corrupt, has no video
            stream, holds no frame, or its first frame cannot be decoded. The
            message names the file.
    """
    path = Path(path)
    scan = _scan(path)
    check_complete(scan, path)
    pts, durations, time_base = scan.pts, scan.durations, scan.time_base
    num_frames = len(pts)
    if num_frames == 0:
        raise VideoError(f"'{path}' has a video stream but no frames.")
    with open_input(path) as container:
        stream = video_stream(container, path)
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        codec = ctx.name
        pix_fmt = ctx.pix_fmt
        guessed = stream.guessed_rate
        average = stream.average_rate
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"Could not decode the first frame of '{path}': {first_line(exc)}.") from exc
        if first is None:
            raise VideoError(f"'{path}' has {num_frames} video packets but none decodes to a frame.")
        width, height = width or first.width, height or first.height
        orientation = frame_orientation(first, path)
        if orientation.transpose:
            width, height = height, width
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_codec = audio.codec_context.name if audio is not None else None
        audio_rate = audio.codec_context.sample_rate if audio is not None else None
        container_duration = container.duration

    known = sorted(p for p in pts if p is not None)
    tick = Fraction(time_base)
    is_vfr = False
    shift = 0.0  # variable frame rate: the most a frame moves when written at the average rate (seconds)
    frame_rate: Fraction | None = None
    if len(known) == num_frames and num_frames >= 2:
        deltas = np.diff(np.asarray(known, dtype=np.int64))
        median = int(np.median(deltas))
        # Constant-rate timestamps differ from the median only by rounding (one tick);
        # anything larger is a frame shown longer or shorter than the others.
        tolerance = 1 + median / 100
        is_vfr = bool(np.any(np.abs(deltas - median) > tolerance))
        mean_delta = Fraction(known[-1] - known[0], num_frames - 1) * tick
        for candidate in (guessed, average):
            if candidate is not None and not is_vfr and _rate_matches(Fraction(candidate), mean_delta, tick):
                frame_rate = Fraction(candidate)
                break
        if frame_rate is None and not is_vfr:
            frame_rate = (1 / mean_delta).limit_denominator(1001 * 1000)
            logger.warning(
                "'%s': neither the nominal rate %s nor the average rate %s matches the timestamps; using %s fps.",
                path, guessed, average, frame_rate,
            )
        last_duration = durations[pts.index(known[-1])] or Fraction(known[-1] - known[0], num_frames - 1)
        span = (known[-1] + last_duration - known[0]) * tick
        duration = float(span)
        start_time = float(known[0] * tick)
        if is_vfr and span > 0:
            # The average rate over the whole clip: written at it, the output lasts as long as the source.
            frame_rate = (num_frames / span).limit_denominator(10_000)
            shift = max(abs(float((p - known[0]) * tick - i / frame_rate)) for i, p in enumerate(known))
    else:
        duration = container_duration / 1e6 if container_duration else 0.0
        start_time = 0.0
    if frame_rate is None:
        frame_rate = Fraction(average or guessed or 0)
        if frame_rate <= 0 and duration > 0:
            frame_rate = Fraction(num_frames / duration).limit_denominator(1001 * 1000)
        if frame_rate <= 0:
            raise VideoError(f"'{path}' gives no frame rate and no timestamps to compute one from.")
    if is_vfr:
        logger.warning(
            "'%s' has a variable frame rate: its %d frames are written one for one at their average rate, "
            "%s (%.3f) fps, so the video keeps its duration (%.3f s) and stays in sync with the sound, while single "
            "frames are shown up to %.0f ms earlier or later than in the source.",
            path, num_frames, frame_rate, float(frame_rate), duration, 1000 * shift,
        )
    if not orientation.upright:
        logger.info("'%s' is shown turned by %d degrees%s; its frames are read upright (%dx%d).", path,
                    orientation.rotation, " and mirrored" if orientation.mirrored else "", width, height)
    if duration <= 0:
        duration = float(num_frames / frame_rate)
    return VideoInfo(
        path=path,
        width=int(width),
        height=int(height),
        frame_rate=frame_rate,
        num_frames=num_frames,
        duration=duration,
        start_time=start_time,
        codec=codec,
        pix_fmt=pix_fmt,
        is_variable_frame_rate=is_vfr,
        average_rate=Fraction(average) if average else None,
        has_audio=audio is not None,
        audio_codec=audio_codec,
        audio_sample_rate=audio_rate,
        rotation=orientation.rotation if not orientation.upright else 0,
        mirrored=orientation.mirrored and not orientation.upright,
    )


def check_frame_count(
    info: VideoInfo, minimum: int = MIN_FLOW_FRAMES, purpose: str = "flow-based video modes"
) -> None:
    """Refuse a video with fewer than ``minimum`` frames.

    :func:`read_frames` itself accepts a one-frame video; the optical-flow
    modes need a pair of frames.

    Args:
        info: the probed video.
        minimum: least number of frames needed.
        purpose: what needs them, for the message.

    Raises:
        VideoError: ``info.num_frames < minimum``.
    """
    if info.num_frames < minimum:
        raise VideoError(
            f"'{info.path}' has {info.num_frames} frame{'s' if info.num_frames != 1 else ''}; "
            f"at least {minimum} frames are needed for {purpose}; dream a single frame as an image.",
            parameter="mode",
        )
