"""Streaming video decode and encode with exact frame rates, audio copy and resume.

Three pieces, built on PyAV:

* :func:`probe_video` reads a file's facts into a :class:`VideoInfo`: the exact
  frame count (counted by demuxing packets, which is cheap: nothing is
  decoded), the frame rate as a :class:`~fractions.Fraction`
  (``30000/1001`` stays ``30000/1001``), audio, variable frame rate.
* :func:`read_frames` is a generator of ``(H, W, 3)`` ``uint8`` RGB numpy
  arrays, one decoded frame at a time, with a ``[start, end)`` frame range.
* :class:`VideoWriter` encodes frames as they arrive (H.264, ``yuv420p``) into
  segment files in a work folder next to the output, so a run stopped half way
  continues from the last finished segment (see :meth:`VideoWriter.resume_point`).
  :meth:`VideoWriter.finish` joins the segments without re-encoding, copies the
  source's audio, and renames the result onto the output path only when it is
  complete: a failed run never leaves a truncated file under the output name.

Typical loop (the dream step is the caller's)::

    info = probe_video(src)
    check_frame_count(info)                      # flow-based modes need 2+
    writer = VideoWriter(dst, info.frame_rate, source=src, settings=settings)
    point = writer.resume_point()                # next_frame=0, carry=None on a fresh run
    carry = point.carry
    with writer:                                 # finish() on success, close() on error
        for frame in read_frames(src, start=point.next_frame):
            out = dream(frame, carry)
            carry = {"prev_raw": frame, "prev_dream": out}
            writer.write(out, carry=carry)

Convention:
    Frames are ``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB
    channel order, values ``0..255``; frame ``i`` is the ``i``-th frame in
    display order, counting from 0. Colour conversion follows the stream's
    tags when decoding (BT.709 for HD H.264, BT.601 when untagged); encoding
    writes BT.709 limited range and tags the stream so.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping

import av
import numpy as np

from .errors import InvalidImageError, InvalidParameterError, VideoError

logger = logging.getLogger(__name__)

#: Frames the flow-based video modes need (one pair for an optical flow).
MIN_FLOW_FRAMES = 2
#: Frames per resumable segment: at most this many frames are redone after a hard crash.
DEFAULT_SEGMENT_FRAMES = 30
#: Output file extensions and the FFmpeg container each one selects.
OUTPUT_FORMATS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: x264 speed presets (slower = smaller file at the same quality).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

_Interp = av.video.reformatter.Interpolation
_DECODE_INTERPOLATION = _Interp.BILINEAR | _Interp.ACCURATE_RND | _Interp.FULL_CHR_H_INT
_ENCODE_INTERPOLATION = _Interp.BILINEAR | _Interp.ACCURATE_RND

_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1
_WORK_SUFFIX = ".dream-work"
_SEGMENT_FORMAT = "mp4"
# Files the writer itself creates inside its work folder; anything else there means the
# folder is not ours and is never deleted.
_WORK_FILE = re.compile(
    r"^(manifest\.json(\.tmp)?|seg_\d{5}(\.partial)?\.mp4|carry_\d{5}(\.tmp)?\.npz|final\.partial\.\w+)$"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------


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


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"Video file '{path}' does not exist. Check the path.")
    if not path.is_file():
        raise VideoError(f"'{path}' is not a file (a video file such as .mp4 is expected).")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(
            f"Could not open video file '{path}': {_first_line(exc)}. "
            "The file is corrupt, truncated, or not a video."
        ) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"'{path}' has no video stream (streams found: {', '.join(kinds)}).")
    return container.streams.video[0]


def _scan_packets(path: Path) -> tuple[list[int | None], list[int | None], Fraction]:
    """Demux (without decoding) the video packets: their pts and durations, in file order.

    Packets that carry no data (flush packets) or that the demuxer marks for
    discarding (frames cut by an edit list) are skipped: they produce no frame.
    """
    with _open_input(path) as container:
        stream = _video_stream(container, path)
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
                f"Could not read the packets of '{path}' after {len(pts)} frames: {_first_line(exc)}. "
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
    pts, durations, time_base = _scan_packets(path)
    num_frames = len(pts)
    if num_frames == 0:
        raise VideoError(f"'{path}' has a video stream but no frames.")
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        codec = ctx.name
        pix_fmt = ctx.pix_fmt
        guessed = stream.guessed_rate
        average = stream.average_rate
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"Could not decode the first frame of '{path}': {_first_line(exc)}.") from exc
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
            f"at least {minimum} frames are needed for {purpose}. "
            "Dream a single image with the image command instead."
        )


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def _check_range(start: int, end: int | None) -> None:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise InvalidParameterError(f"start must be a frame index >= 0, got {start!r}.")
    if end is not None and (isinstance(end, bool) or not isinstance(end, (int, np.integer)) or end < start):
        raise InvalidParameterError(f"end must be None or a frame index >= start ({start}), got {end!r}.")


def read_frames(path: str | os.PathLike[str], start: int = 0, end: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames ``start .. end-1`` of a video, one at a time.

    A generator: each frame is decoded only when asked for and nothing is kept
    after it is yielded, so memory does not grow with the clip length. Range
    semantics are those of a slice: ``end=None`` reads to the last frame, and
    a range past the end yields fewer (or no) frames.

    With ``start > 0`` the reader seeks to the keyframe before ``start`` and
    decodes from there, identifying frames by their timestamps (the frame
    index is the rank of a frame's timestamp among all of them, so this is exact
    for variable frame rates too); files without timestamps are decoded from
    the beginning and counted.

    Args:
        path: the video file.
        start: index of the first frame to yield.
        end: index one past the last frame to yield, or ``None``.

    Yields:
        ``(H, W, 3)`` ``uint8`` RGB arrays, writable, each in its own buffer
        (a later frame never overwrites an earlier one).

    Raises:
        InvalidParameterError: ``start``/``end`` are not frame indices
            (raised at the call, before iteration).
        VideoError: the file is missing (at the call), or cannot be opened or
            decoded (while iterating); the message names the file and frame.
    """
    path = Path(path)
    _check_range(start, end)
    if not path.is_file():
        raise VideoError(f"Video file '{path}' does not exist. Check the path.")
    return _decode(path, int(start), None if end is None else int(end))


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    # swscale's default YUV->RGB path truncates: frames come out about 1.2 levels too dark
    # (measured on the 720p sample), compounding with every re-encode. Full chroma
    # interpolation with accurate rounding matches the BT.709/601 formula within 0.03.
    kwargs: dict[str, Any] = {"interpolation": _DECODE_INTERPOLATION}
    if frame.color_range == av.video.reformatter.ColorRange.JPEG:
        kwargs["src_color_range"] = av.video.reformatter.ColorRange.JPEG
    return frame.to_ndarray(format="rgb24", **kwargs)


def _decode(path: Path, start: int, end: int | None) -> Iterator[np.ndarray]:
    if end is not None and end <= start:
        return
    index: list[int] | None = None
    if start > 0:
        pts, _, _ = _scan_packets(path)
        if start >= len(pts):
            return
        if all(p is not None for p in pts):
            index = sorted(pts)  # type: ignore[arg-type]
    if index is not None:
        first_pts = index[start]
        stop_pts = index[end] if end is not None and end < len(index) else None
        with _open_input(path) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            try:
                yield from _decode_by_pts(container, stream, path, start, first_pts, stop_pts)
                return
            except _SeekFailed as exc:
                logger.warning("'%s': %s; decoding from the first frame instead.", path, exc)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        yield from _decode_by_count(container, stream, path, start, end)


class _SeekFailed(Exception):
    """Seeking by timestamp did not land on the wanted frame (nothing was yielded yet)."""


def _decode_by_count(container, stream, path: Path, start: int, end: int | None) -> Iterator[np.ndarray]:
    i = 0
    try:
        for frame in container.decode(stream):
            if end is not None and i >= end:
                return
            if i >= start:
                yield _to_rgb(frame)
            i += 1
    except av.FFmpegError as exc:
        raise VideoError(f"Could not decode frame {i} of '{path}': {_first_line(exc)}.") from exc


def _decode_by_pts(
    container, stream, path: Path, start: int, first_pts: int, stop_pts: int | None
) -> Iterator[np.ndarray]:
    i = start
    try:
        container.seek(first_pts, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                if i == start:
                    raise _SeekFailed("a decoded frame has no timestamp")
                raise VideoError(f"'{path}': frame {i} has no timestamp; cannot tell where the range ends.")
            if frame.pts < first_pts:
                continue
            if i == start and frame.pts > first_pts:
                raise _SeekFailed(f"seeking to frame {start} landed after it")
            if stop_pts is not None and frame.pts >= stop_pts:
                return
            yield _to_rgb(frame)
            i += 1
    except av.FFmpegError as exc:
        raise VideoError(f"Could not decode frame {i} of '{path}': {_first_line(exc)}.") from exc


# ----------------------------------------------------------------------------------------
# Output checks
# ----------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_writable(path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> Path:
    """Check, before any work starts, that a video can be written to ``path``.

    Checks the extension (one of :data:`OUTPUT_FORMATS`), that the output is not
    the ``source`` file, that the folder exists, and that a file can be created
    in it (a temporary probe file is created and removed).

    Args:
        path: the output video file.
        source: the input video, if any; writing over it is refused.

    Returns:
        ``path`` as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidParameterError: unsupported extension, or output equals input.
        VideoError: the folder is missing or not writable, or ``path`` is a folder.
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise VideoError(f"Output '{out}' is a folder; give a file name such as '{out / 'dream.mp4'}'.")
    ext = out.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise InvalidParameterError(
            f"Output '{out}' has extension '{ext or '(none)'}'; supported video outputs: "
            f"{', '.join(OUTPUT_FORMATS)}. Change the file name, e.g. to '{out.with_suffix('.mp4').name}'."
        )
    if source is not None and _same_file(out, Path(source)):
        raise InvalidParameterError(
            f"Output '{out}' is the input file; refusing to overwrite the source. Choose another output name."
        )
    folder = out.parent
    if not folder.is_dir():
        raise VideoError(f"Cannot write '{out}': the folder '{folder}' does not exist. Create it first.")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dream-write-test-"):
            pass
    except OSError as exc:
        raise VideoError(
            f"Cannot write '{out}': the folder '{folder}' is not writable ({_first_line(exc)})."
        ) from exc
    return out


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


@dataclass
class ResumePoint:
    """Where a :class:`VideoWriter` continues.

    Attributes:
        next_frame: index (in the source) of the first frame still to write:
            ``start_frame + frames_done``.
        frames_done: frames already encoded in finished segments.
        carry: the caller's carry state saved with the last finished frame, as
            a dict of numpy arrays, or ``None`` (fresh run, or none was given).
    """

    next_frame: int
    frames_done: int
    carry: dict[str, np.ndarray] | None = field(default=None, repr=False)


def _parse_rate(frame_rate: Any) -> Fraction:
    if isinstance(frame_rate, bool) or isinstance(frame_rate, float):
        raise InvalidParameterError(
            f"frame_rate must be exact (an int, a Fraction or a 'num/den' string such as '30000/1001'), "
            f"got the float {frame_rate!r}; pass probe_video(src).frame_rate."
        )
    try:
        rate = Fraction(frame_rate)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"frame_rate must be a Fraction, int or 'num/den' string, got {frame_rate!r}."
        ) from exc
    if rate <= 0 or rate > 1000:
        raise InvalidParameterError(f"frame_rate must be in (0, 1000] frames per second, got {rate}.")
    return rate


def _json_default(value: Any) -> Any:
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _canonical_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise InvalidParameterError(f"settings must be a mapping (dict), got {type(settings).__name__}.")
    try:
        return json.loads(json.dumps(dict(settings), sort_keys=True, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"settings must be JSON-serialisable (numbers, strings, lists, dicts, Fractions, paths): {exc}."
        ) from exc


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _check_frame(frame: Any, index: int) -> np.ndarray:
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


class _Encoder:
    """An H.264 ``yuv420p`` video stream in an output container, fed RGB frames."""

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

    def flush(self) -> list[av.Packet]:
        return self.stream.encode(None)


#: A packet to mux, keyed for interleaving: (decode time in seconds, 0 = video / 1 = audio, packet).
_Timed = tuple[Fraction, int, av.Packet]


class _RemuxUnsupported(Exception):
    """The segments cannot be joined packet for packet; re-encode instead."""


@dataclass
class _Segment:
    file: str
    start: int
    frames: int


class VideoWriter:
    """Encode frames into a video file as they arrive, resumable after a crash.

    Frames go into H.264 segment files of ``segment_frames`` frames in a work
    folder ``<output>.dream-work/`` next to the output. When a segment is
    full it is closed and committed, together with the caller's latest
    ``carry`` state, by rewriting a small JSON manifest (the commit point,
    replaced atomically). A new writer for the same output, source, start
    frame, encoder and ``settings`` picks the work up: :meth:`resume_point`
    says which source frame to continue at and hands back the saved carry.
    :meth:`finish` joins the segments packet for packet (no second encoding),
    copies the source's audio for the written frame range, writes all of it
    to a temporary file in the work folder, checks the frame count, renames
    it onto the output and deletes the work folder.

    Used as a context manager, a clean exit calls :meth:`finish`; an exception
    calls :meth:`close`, which commits the frames written so far (so nothing
    finished is lost on Ctrl-C) and leaves no output file. After a hard crash
    (killed process) at most the frames of one unfinished segment are redone.

    Odd sizes: ``yuv420p`` needs an even width and height, so a frame with an
    odd side is padded by one pixel, repeating its last column/row, and the
    output is one pixel larger on that side (a warning says so).

    Args:
        path: output file; the extension picks the container (:data:`OUTPUT_FORMATS`).
        frame_rate: exact output rate (``Fraction``, ``int`` or ``"num/den"``);
            pass ``probe_video(source).frame_rate``. Floats are refused.
        source: the input video: its audio is copied and its identity (path,
            size, modification time) guards a resume. ``None`` for no audio.
        start_frame: index in ``source`` of the first frame that will be
            written (audio is cut to the same window).
        settings: the caller's dream settings (JSON-serialisable mapping); a
            resume with different settings is refused.
        crf: x264 constant rate factor, 0 (lossless) .. 51; 18 is visually
            near lossless, higher = smaller file.
        preset: x264 preset, one of :data:`X264_PRESETS`; slower = smaller file.
        segment_frames: frames per committed segment (what a hard crash can lose).
        resume: continue a matching unfinished run. ``False`` deletes an
            existing work folder and starts over.
        audio: copy the source's audio (when it has any).

    Raises:
        InvalidParameterError: a parameter is out of range, the output is the
            source, or an unfinished run with other settings exists.
        VideoError: the output cannot be written (checked at construction),
            or the source cannot be read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        frame_rate: Fraction | int | str,
        *,
        source: str | os.PathLike[str] | None = None,
        start_frame: int = 0,
        settings: Mapping[str, Any] | None = None,
        crf: float = 18,
        preset: str = "medium",
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        resume: bool = True,
        audio: bool = True,
    ) -> None:
        self.rate = _parse_rate(frame_rate)
        if isinstance(crf, bool) or not isinstance(crf, (int, float)) or not 0 <= crf <= 51:
            raise InvalidParameterError(f"crf must be a number in 0..51 (18 = near lossless), got {crf!r}.")
        if preset not in X264_PRESETS:
            raise InvalidParameterError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}.")
        if isinstance(segment_frames, bool) or not isinstance(segment_frames, int) or segment_frames < 1:
            raise InvalidParameterError(f"segment_frames must be an int >= 1, got {segment_frames!r}.")
        _check_range(start_frame, None)
        self.path = check_output_writable(path, source)
        self.format = OUTPUT_FORMATS[self.path.suffix.lower()]
        self.crf = float(crf)
        self.preset = preset
        self.segment_frames = segment_frames
        self.start_frame = int(start_frame)
        self.copy_audio = audio
        self.settings = _canonical_settings(settings)
        self.source_info = probe_video(source) if source is not None else None
        if self.source_info is not None and self.start_frame >= self.source_info.num_frames:
            raise InvalidParameterError(
                f"start_frame {self.start_frame} is past the end of '{self.source_info.path}' "
                f"({self.source_info.num_frames} frames, indices 0..{self.source_info.num_frames - 1})."
            )
        self.work_dir = self.path.with_name(self.path.name + _WORK_SUFFIX)

        self._identity = self._make_identity()
        self._segments: list[_Segment] = []
        self._size: tuple[int, int] | None = None  # (width, height) of the caller's frames
        self._carry_file: str | None = None
        self._encoder: _Encoder | None = None
        self._segment_container: av.container.OutputContainer | None = None
        self._segment_count = 0
        self._pending_carry: Mapping[str, Any] | None = None
        self._broken = False
        self._finished = False
        self._warned_odd = False
        self._load_or_reset(resume)

    # -- identity and manifest -----------------------------------------------------------

    def _make_identity(self) -> dict[str, Any]:
        source = None
        if self.source_info is not None:
            src = self.source_info.path.resolve()
            stat = src.stat()
            source = {"path": str(src), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        settings_json = json.dumps(self.settings, sort_keys=True)
        return {
            "version": _MANIFEST_VERSION,
            "source": source,
            "start_frame": self.start_frame,
            "frame_rate": f"{self.rate.numerator}/{self.rate.denominator}",
            "encoder": {"codec": "libx264", "pix_fmt": "yuv420p", "crf": self.crf, "preset": self.preset},
            "settings_sha256": hashlib.sha256(settings_json.encode("utf-8")).hexdigest(),
        }

    def _load_or_reset(self, resume: bool) -> None:
        if not self.work_dir.exists():
            return
        if not self.work_dir.is_dir():
            raise VideoError(f"'{self.work_dir}' exists and is not a folder; remove it so the writer can work.")
        foreign = [p.name for p in self.work_dir.iterdir() if not _WORK_FILE.match(p.name)]
        if foreign:
            raise VideoError(
                f"Work folder '{self.work_dir}' holds files this writer did not make "
                f"({', '.join(sorted(foreign)[:5])}); move them away or delete the folder."
            )
        manifest_path = self.work_dir / _MANIFEST
        manifest: dict[str, Any] | None = None
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("Unreadable manifest %s (%s); starting over.", manifest_path, _first_line(exc))
        if manifest is None or not resume:
            if manifest is not None:
                logger.warning("resume=False: deleting the unfinished run in %s and starting over.", self.work_dir)
            shutil.rmtree(self.work_dir)
            return
        saved = _flatten(manifest.get("identity", {}))
        saved.update(_flatten(manifest.get("settings", {}), "settings."))
        current = _flatten(self._identity)
        current.update(_flatten(self.settings, "settings."))
        differences = [
            f"{key}: {saved.get(key, '(unset)')!r} then, {current.get(key, '(unset)')!r} now"
            for key in sorted(set(saved) | set(current))
            if key != "settings_sha256" and saved.get(key) != current.get(key)
        ]
        if differences or saved.get("settings_sha256") != current.get("settings_sha256"):
            raise InvalidParameterError(
                f"'{self.work_dir}' holds an unfinished run ({manifest.get('frames_done', 0)} frames done) made "
                f"differently ({'; '.join(differences[:6]) or 'settings differ'}). Rerun with the same source, "
                "range, encoder and settings to resume, or start over with resume=False or by deleting that folder."
            )
        try:
            self._segments = [_Segment(**s) for s in manifest["segments"]]
            self._size = (int(manifest["size"][0]), int(manifest["size"][1])) if manifest.get("size") else None
            self._carry_file = manifest.get("carry")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VideoError(
                f"Work folder '{self.work_dir}' has a damaged manifest ({_first_line(exc)}); "
                "delete the folder or pass resume=False."
            ) from exc
        self._segment_count = len(self._segments)
        keep = {_MANIFEST} | {s.file for s in self._segments} | ({self._carry_file} if self._carry_file else set())
        for stray in self.work_dir.iterdir():
            if stray.name not in keep:
                stray.unlink()
        missing = [name for name in keep if not (self.work_dir / name).is_file()]
        if missing:
            raise VideoError(
                f"Work folder '{self.work_dir}' is damaged (missing {', '.join(missing)}); "
                "delete it or pass resume=False."
            )
        logger.info("Resuming %s at frame %d (%d frames done).", self.path, self.next_frame, self.frames_done)

    def _write_manifest(self) -> None:
        _write_json_atomic(
            self.work_dir / _MANIFEST,
            {
                "identity": self._identity,
                "settings": self.settings,
                "output": str(self.path),
                "size": list(self._size) if self._size else None,
                "segments": [vars(s) for s in self._segments],
                "frames_done": self.frames_done,
                "carry": self._carry_file,
            },
        )
        _fsync_path(self.work_dir)

    # -- state ---------------------------------------------------------------------------

    @property
    def frames_done(self) -> int:
        """Frames in committed segments."""
        return sum(s.frames for s in self._segments)

    @property
    def frames_written(self) -> int:
        """Frames written so far, including those of the segment being encoded."""
        return self.frames_done + (self._encoder.count if self._encoder is not None else 0)

    @property
    def next_frame(self) -> int:
        """Source index of the next frame :meth:`write` expects."""
        return self.start_frame + self.frames_written

    def resume_point(self) -> ResumePoint:
        """Where to continue: the next source frame and the carry state saved with the last one.

        On a fresh run this is ``ResumePoint(start_frame, 0, None)``. It
        describes committed work only, so call it before writing frames.

        Raises:
            VideoError: the saved carry file cannot be read.
        """
        carry = None
        if self._carry_file:
            path = self.work_dir / self._carry_file
            try:
                with np.load(path, allow_pickle=False) as data:
                    carry = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                raise VideoError(f"Could not read the saved carry state '{path}': {_first_line(exc)}.") from exc
        return ResumePoint(next_frame=self.start_frame + self.frames_done, frames_done=self.frames_done, carry=carry)

    # -- writing -------------------------------------------------------------------------

    def write(self, frame: Any, carry: Mapping[str, Any] | None = None) -> None:
        """Encode one frame; commit a segment every ``segment_frames`` frames.

        Args:
            frame: ``(H, W, 3)`` ``uint8`` RGB array (a CPU torch tensor of that
                shape and dtype is accepted too). All frames must share one size.
            carry: state the caller needs to continue after this frame (e.g. the
                last raw and dreamed frames), a mapping of names to numpy
                arrays. Only a reference is kept; it is saved (``np.savez``)
                when the segment containing this frame is committed, so pass
                arrays that are not modified in place afterwards. Pass it with
                every frame: a segment saves the carry given with its last frame.

        Raises:
            InvalidImageError: wrong shape/dtype, or a size different from the
                earlier frames.
            VideoError: the writer is finished or encoding failed.
        """
        if self._finished:
            raise VideoError(f"The writer for '{self.path}' is finished; make a new one to write more frames.")
        if self._broken:
            raise VideoError(f"The writer for '{self.path}' failed earlier; make a new one to resume.")
        index = self.next_frame
        arr = _check_frame(frame, index)
        size = (arr.shape[1], arr.shape[0])
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise InvalidImageError(
                f"Frame {index} is {size[0]}x{size[1]} but the video is {self._size[0]}x{self._size[1]}; "
                "all frames of a video must have the same size."
            )
        if carry is not None and not isinstance(carry, Mapping):
            raise InvalidParameterError(f"carry must be a mapping of names to arrays, got {type(carry).__name__}.")
        arr = self._pad_even(arr)
        try:
            if self._encoder is None:
                self._open_segment(arr.shape[1], arr.shape[0])
            assert self._encoder is not None and self._segment_container is not None
            for packet in self._encoder.encode(arr):
                self._segment_container.mux(packet)
        except av.FFmpegError as exc:
            self._broken = True
            raise VideoError(f"Encoding frame {index} for '{self.path}' failed: {_first_line(exc)}.") from exc
        except BaseException:
            # e.g. Ctrl-C between encoding a frame and muxing its packets: the open
            # segment may miss packets, so close() must drop it rather than commit it.
            self._broken = True
            raise
        self._pending_carry = carry
        if self._encoder.count >= self.segment_frames:
            self._commit_segment()

    def _pad_even(self, arr: np.ndarray) -> np.ndarray:
        h, w = arr.shape[:2]
        if h % 2 == 0 and w % 2 == 0:
            return arr
        if not self._warned_odd:
            logger.warning(
                "Frames are %dx%d; H.264 yuv420p needs even sides, so the output is padded to %dx%d by "
                "repeating the last column/row.", w, h, w + w % 2, h + h % 2,
            )
            self._warned_odd = True
        return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    def _segment_name(self, k: int, partial: bool = False) -> str:
        return f"seg_{k:05d}{'.partial' if partial else ''}.mp4"

    def _open_segment(self, width: int, height: int) -> None:
        self.work_dir.mkdir(exist_ok=True)
        tmp = self.work_dir / self._segment_name(self._segment_count, partial=True)
        try:
            self._segment_container = av.open(str(tmp), "w", format=_SEGMENT_FORMAT)
            self._encoder = _Encoder(self._segment_container, self.rate, width, height, self.crf, self.preset)
        except (av.FFmpegError, OSError) as exc:
            self._broken = True
            raise VideoError(f"Could not start encoding into '{tmp}': {_first_line(exc)}.") from exc

    def _commit_segment(self) -> None:
        """Close the current segment and make it (and the carry) part of the run, atomically."""
        assert self._encoder is not None and self._segment_container is not None
        k = self._segment_count
        tmp = self.work_dir / self._segment_name(k, partial=True)
        final = self.work_dir / self._segment_name(k)
        frames = self._encoder.count
        try:
            for packet in self._encoder.flush():
                self._segment_container.mux(packet)
            self._segment_container.close()
        except av.FFmpegError as exc:
            self._broken = True
            raise VideoError(f"Finishing segment '{tmp}' failed: {_first_line(exc)}.") from exc
        finally:
            self._encoder = None
            self._segment_container = None
        _fsync_path(tmp)
        os.replace(tmp, final)
        old_carry = self._carry_file
        self._carry_file = None
        if self._pending_carry is not None:
            self._carry_file = f"carry_{k:05d}.npz"
            self._save_carry(self.work_dir / self._carry_file, self._pending_carry)
        self._segments.append(_Segment(file=final.name, start=self.frames_done, frames=frames))
        self._segment_count += 1
        self._write_manifest()  # the commit point
        if old_carry and old_carry != self._carry_file:
            (self.work_dir / old_carry).unlink(missing_ok=True)
        self._pending_carry = None
        logger.debug("Committed %s (%d frames, %d done).", final.name, frames, self.frames_done)

    @staticmethod
    def _save_carry(path: Path, carry: Mapping[str, Any]) -> None:
        arrays = {}
        for name, value in carry.items():
            if hasattr(value, "detach") and hasattr(value, "cpu"):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.dtype == object:
                raise InvalidParameterError(f"carry[{name!r}] is not a numeric array (dtype object).")
            arrays[str(name)] = arr
        tmp = path.with_name(path.stem + ".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        """Stop without producing the output; keep finished work for a resume.

        Frames written since the last commit are committed as a shorter segment
        (with the carry given with the last of them), unless encoding had
        failed, in which case they are dropped. Safe to call twice.
        """
        if self._finished or self._encoder is None:
            return
        if self._broken or self._encoder.count == 0:
            self._discard_segment()
            return
        pending = self._encoder.count
        try:
            self._commit_segment()
        except Exception:  # noqa: BLE001 - cleanup must not hide the caller's original error
            logger.exception("Could not save the last %d frames; a resume will redo them.", pending)
            self._discard_segment()

    def _discard_segment(self) -> None:
        if self._segment_container is not None:
            try:
                self._segment_container.close()
            except av.FFmpegError:
                pass
        self._encoder = None
        self._segment_container = None
        (self.work_dir / self._segment_name(self._segment_count, partial=True)).unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            if not self._finished:
                self.finish()
        else:
            self.close()

    # -- finishing -----------------------------------------------------------------------

    def finish(self) -> Path:
        """Join the segments, add the audio, and move the result onto the output path.

        The segments' packets are copied with their timestamps renumbered onto one
        timeline of exactly ``frames_done`` frames at ``frame_rate`` (pictures are
        bit-identical to the segments). If they cannot be joined that way (their
        encoder headers differ, e.g. x264 was upgraded between a run and its
        resume), they are decoded and encoded once more, with a warning. Audio
        the container cannot hold (or that fails to mux) is re-encoded to AAC
        192 kb/s. The result is counted before it replaces the output.

        Returns:
            The output path.

        Raises:
            VideoError: no frame was written, or joining/muxing failed (the
                output path is then left untouched and the work folder kept).
        """
        if self._finished:
            return self.path
        if self._encoder is not None:
            if self._broken:
                raise VideoError(f"Encoding for '{self.path}' failed earlier; make a new writer to resume.")
            self._commit_segment()
        total = self.frames_done
        if total == 0:
            raise VideoError(f"No frames were written for '{self.path}'; nothing to save.")
        tmp = self.work_dir / f"final.partial{self.path.suffix.lower()}"
        has_audio = self.copy_audio and self.source_info is not None and self.source_info.has_audio
        audio_modes = ("copy", "transcode") if has_audio else ("copy",)
        remux_ok = True
        errors: list[str] = []
        for video_mode in ("copy", "transcode"):
            for audio_mode in audio_modes:
                if video_mode == "copy" and not remux_ok:
                    continue
                tmp.unlink(missing_ok=True)
                try:
                    self._assemble(tmp, video_mode, audio_mode)
                except _RemuxUnsupported as exc:
                    logger.warning("Cannot join the segments without re-encoding (%s); re-encoding them once.", exc)
                    remux_ok = False
                    continue
                except (av.FFmpegError, OSError) as exc:
                    errors.append(f"video={video_mode}, audio={audio_mode}: {_first_line(exc)}")
                    logger.warning("Writing '%s' (%s) failed.", tmp, errors[-1])
                    continue
                return self._publish(tmp, total)
        tmp.unlink(missing_ok=True)
        raise VideoError(
            f"Could not write '{self.path}' ({'; '.join(errors) or 'no attempt succeeded'}); "
            "the output was not created."
        )

    def _publish(self, tmp: Path, total: int) -> Path:
        pts, _, _ = _scan_packets(tmp)
        if len(pts) != total:
            tmp.unlink(missing_ok=True)
            raise VideoError(f"Internal error: '{tmp}' has {len(pts)} frames, expected {total}; output not written.")
        _fsync_path(tmp)
        os.replace(tmp, self.path)
        _fsync_path(self.path.parent)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self._finished = True
        logger.info("Wrote %s: %d frames at %s fps.", self.path, total, self.rate)
        return self.path

    def _assemble(self, tmp: Path, video_mode: str, audio_mode: str) -> None:
        """Write the joined video (and audio) into ``tmp``."""
        plan = self._plan_remux() if video_mode == "copy" else None
        options = {"movflags": "+faststart"} if self.format in ("mp4", "mov") else {}
        with av.open(str(tmp), "w", format=self.format, container_options=options) as out:
            if plan is not None:
                template_path = self.work_dir / self._segments[0].file
                with av.open(str(template_path)) as first:
                    vstream = out.add_stream_from_template(first.streams.video[0])
                vstream.time_base = 1 / self.rate
                video = self._remux_packets(vstream, plan)
            else:
                assert self._size is not None
                w, h = self._size[0] + self._size[0] % 2, self._size[1] + self._size[1] % 2
                encoder = _Encoder(out, self.rate, w, h, self.crf, self.preset)
                video = self._transcode_packets(encoder)
            audio = self._audio_packets(out, audio_mode)
            streams = [video] + ([audio] if audio is not None else [])
            for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
                out.mux(packet)

    def _plan_remux(self) -> tuple[int, list[int]]:
        """Check the segments can be concatenated as packets; return the largest decode delay.

        Raises:
            _RemuxUnsupported: different stream headers, sizes, frame counts or
                timestamps that are not whole frames.
        """
        extradata: bytes | None = None
        size = None
        delays: list[int] = []
        for seg in self._segments:
            with av.open(str(self.work_dir / seg.file)) as container:
                stream = container.streams.video[0]
                ctx = stream.codec_context
                if extradata is None:
                    extradata, size = bytes(ctx.extradata or b""), (ctx.width, ctx.height)
                elif bytes(ctx.extradata or b"") != extradata or (ctx.width, ctx.height) != size:
                    raise _RemuxUnsupported(f"{seg.file} has other stream headers than the first segment")
                scale = Fraction(stream.time_base) * self.rate
                dts_frames = []
                pts_frames = []
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    for value, out in ((packet.pts, pts_frames), (packet.dts, dts_frames)):
                        if value is None or (value * scale).denominator != 1:
                            raise _RemuxUnsupported(f"{seg.file}: timestamp {value} is not a whole frame")
                        out.append(int(value * scale))
                if len(pts_frames) != seg.frames or sorted(pts_frames) != list(range(seg.frames)):
                    raise _RemuxUnsupported(f"{seg.file}: frames {len(pts_frames)} != {seg.frames} or gaps")
                delay = -dts_frames[0]
                if dts_frames != [j - delay for j in range(len(dts_frames))] or delay < 0:
                    raise _RemuxUnsupported(f"{seg.file}: decode timestamps are not consecutive")
                delays.append(delay)
        return max(delays), delays

    def _remux_packets(self, vstream, plan: tuple[int, list[int]]) -> Iterator[_Timed]:
        """Yield the segments' packets renumbered onto one timeline (in frames), keyed by time."""
        max_delay, _ = plan
        unit = 1 / self.rate
        decode_index = 0
        for seg in self._segments:
            with av.open(str(self.work_dir / seg.file)) as container:
                stream = container.streams.video[0]
                scale = Fraction(stream.time_base) * self.rate
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    packet.pts = seg.start + int(packet.pts * scale)
                    # One packet per frame, in decode order: number them consecutively and
                    # shift by the largest reorder delay so dts <= pts in every segment.
                    packet.dts = decode_index - max_delay
                    packet.duration = 1
                    packet.time_base = unit
                    packet.stream = vstream
                    decode_index += 1
                    yield packet.dts * unit, 0, packet

    def _transcode_packets(self, encoder: _Encoder) -> Iterator[_Timed]:
        """Yield packets of the segments decoded and encoded once more (fallback path)."""
        for seg in self._segments:
            with av.open(str(self.work_dir / seg.file)) as container:
                for frame in container.decode(video=0):
                    for packet in encoder.encode(_to_rgb(frame)):
                        yield _packet_time(packet), 0, packet
        for packet in encoder.flush():
            yield _packet_time(packet), 0, packet

    def _audio_window(self) -> tuple[float, float]:
        assert self.source_info is not None
        t0 = self.source_info.start_time + float(self.start_frame / self.rate)
        return t0, t0 + float(self.frames_done / self.rate)

    def _audio_packets(self, out, mode: str) -> Iterator[_Timed] | None:
        """Audio of the source for the written frames, copied or re-encoded to AAC; ``None`` if none."""
        info = self.source_info
        if not self.copy_audio or info is None or not info.has_audio:
            return None
        if mode == "copy" and info.audio_codec not in out.supported_codecs:
            logger.info("%s audio cannot be copied into %s; re-encoding it to AAC.", info.audio_codec, self.format)
            mode = "transcode"
        source = av.open(str(info.path))
        in_stream = source.streams.audio[0]
        if mode == "copy":
            out_stream = out.add_stream_from_template(in_stream)
            return _copied_audio(source, in_stream, out_stream, self._audio_window())
        out_stream = out.add_stream("aac", rate=in_stream.codec_context.sample_rate)
        out_stream.layout = in_stream.codec_context.layout
        out_stream.bit_rate = 192_000
        return _encoded_audio(source, in_stream, out_stream, self._audio_window())


def _packet_time(packet: av.Packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * Fraction(packet.time_base)


def _copied_audio(source, in_stream, out_stream, window: tuple[float, float]) -> Iterator[_Timed]:
    """Audio packets starting inside ``window`` (seconds), moved so the window starts at 0."""
    t0, t1 = window
    tb = Fraction(in_stream.time_base)
    offset = round(Fraction(t0) / tb)
    try:
        for packet in source.demux(in_stream):
            if packet.size == 0 or packet.pts is None:
                continue
            start = packet.pts * tb
            if start < Fraction(t0) - tb or start >= t1:
                continue
            packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
            packet.stream = out_stream
            yield _packet_time(packet), 1, packet
    finally:
        source.close()


def _encoded_audio(source, in_stream, out_stream, window: tuple[float, float]) -> Iterator[_Timed]:
    """Audio decoded inside ``window`` and encoded to AAC, starting at 0."""
    t0, t1 = window
    rate = in_stream.codec_context.sample_rate
    try:
        for frame in source.decode(in_stream):
            if frame.time is None or frame.time < t0 - 1 / rate or frame.time >= t1:
                continue
            frame.pts = round((frame.time - t0) * rate)
            frame.time_base = Fraction(1, rate)
            for packet in out_stream.encode(frame):
                yield _packet_time(packet), 1, packet
        for packet in out_stream.encode(None):
            yield _packet_time(packet), 1, packet
    finally:
        source.close()
