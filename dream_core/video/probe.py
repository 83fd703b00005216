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
        width: frame width in pixels.
        height: frame height in pixels.
        frame_rate: exact frames per second, e.g. ``Fraction(30000, 1001)``. For a
            variable-frame-rate file this is the average rate (see
            ``is_variable_frame_rate``).
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


def scan_packets(path: Path) -> tuple[list[int | None], list[int | None], Fraction]:
    """Demux (without decoding) the video packets: their pts and durations, in file order.

    Packets that carry no data (flush packets) or that the demuxer marks for
    discarding (frames cut by an edit list) are skipped: they produce no frame.
    """
    with open_input(path) as container:
        stream = video_stream(container, path)
        pts: list[int | None] = []
        durations: list[int | None] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                pts.append(packet.pts)
                durations.append(packet.duration or None)
        except av.FFmpegError as exc:
            raise VideoError(
                f"Could not read the packets of '{path}' after {len(pts)} frames: {first_line(exc)}. "
                "The file is corrupt or truncated."
            ) from exc
        return pts, durations, stream.time_base


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
    pts, durations, time_base = scan_packets(path)
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
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_codec = audio.codec_context.name if audio is not None else None
        audio_rate = audio.codec_context.sample_rate if audio is not None else None
        container_duration = container.duration

    known = sorted(p for p in pts if p is not None)
    tick = Fraction(time_base)
    is_vfr = False
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
        last_duration = durations[pts.index(known[-1])] or (known[-1] - known[0]) / (num_frames - 1)
        duration = float((known[-1] + last_duration - known[0]) * tick)
        start_time = float(known[0] * tick)
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
            "'%s' has a variable frame rate; frames are kept one for one (%d) and written at the "
            "average rate %s fps, so the timing of individual frames can shift slightly.",
            path, num_frames, frame_rate,
        )
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
