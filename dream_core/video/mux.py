"""Joining committed segments into one file, with the source's audio for the written frames.

:func:`join_segments` first copies the segments' packets onto one timeline
(pictures bit-identical to the segments, no second encoding); if the segments
cannot be joined that way (their encoder headers differ, e.g. x264 was upgraded
between a run and its resume) they are decoded and encoded once more, with a
warning. Audio the container cannot hold (or that fails to mux) is re-encoded
to AAC 192 kb/s.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence

import av

from ..errors import VideoError
from .encoder import H264Encoder
from .probe import VideoInfo, first_line
from .reader import frame_to_rgb

logger = logging.getLogger(__name__)

#: A packet to mux, keyed for interleaving: (decode time in seconds, 0 = video / 1 = audio, packet).
_Timed = tuple[Fraction, int, av.Packet]


class RemuxUnsupported(Exception):
    """The segments cannot be joined packet for packet; re-encode instead."""


@dataclass(frozen=True)
class Piece:
    """A segment file holding output frames ``start .. start+frames-1``."""

    path: Path
    start: int
    frames: int


@dataclass(frozen=True)
class Encoding:
    """How the output is encoded: container format, exact rate, frame size (even sides) and x264 options."""

    format: str
    rate: Fraction
    size: tuple[int, int]  # (width, height)
    crf: float
    preset: str


@dataclass(frozen=True)
class AudioSource:
    """The source file's first audio stream, cut to ``window`` (seconds in the source)."""

    info: VideoInfo
    window: tuple[float, float]


def join_segments(out: Path, pieces: Sequence[Piece], encoding: Encoding, audio: Optional[AudioSource],
                  *, name: Optional[Path] = None) -> None:
    """Write the segments (and the audio) into ``out``, copying packets when possible.

    Args:
        out: the file to write (a temporary name; the caller moves it into place).
        pieces: the committed segments, in order.
        encoding: container format, rate, size and x264 options (for the re-encoding fallback).
        audio: the source's audio and the window to copy, or ``None``.
        name: the output as the user knows it, for the message.

    Raises:
        VideoError: every way of writing failed (``out`` is removed).
    """
    audio_modes = ("copy", "transcode") if audio is not None else ("copy",)
    remux_ok = True
    errors: list[str] = []
    for video_mode in ("copy", "transcode"):
        for audio_mode in audio_modes:
            if video_mode == "copy" and not remux_ok:
                continue
            out.unlink(missing_ok=True)
            try:
                _assemble(out, pieces, encoding, audio, video_mode, audio_mode)
            except RemuxUnsupported as exc:
                logger.warning("Cannot join the segments without re-encoding (%s); re-encoding them once.", exc)
                remux_ok = False
                continue
            except (av.FFmpegError, OSError) as exc:
                errors.append(f"video={video_mode}, audio={audio_mode}: {first_line(exc)}")
                logger.warning("Writing '%s' (%s) failed.", out, errors[-1])
                continue
            return
    out.unlink(missing_ok=True)
    raise VideoError(
        f"Could not write '{name or out}' ({'; '.join(errors) or 'no attempt succeeded'}); the output was not created."
    )


def _assemble(out_path: Path, pieces: Sequence[Piece], encoding: Encoding, audio: Optional[AudioSource],
              video_mode: str, audio_mode: str) -> None:
    """Write the joined video (and audio) into ``out_path``."""
    plan = plan_remux(pieces, encoding.rate) if video_mode == "copy" else None
    options = {"movflags": "+faststart"} if encoding.format in ("mp4", "mov") else {}
    with av.open(str(out_path), "w", format=encoding.format, container_options=options) as out:
        if plan is not None:
            with av.open(str(pieces[0].path)) as first:
                vstream = out.add_stream_from_template(first.streams.video[0])
            vstream.time_base = 1 / encoding.rate
            video = _remux_packets(vstream, pieces, encoding.rate, plan)
        else:
            w, h = encoding.size
            video = _transcode_packets(pieces, H264Encoder(out, encoding.rate, w, h, encoding.crf, encoding.preset))
        sound = _audio_packets(out, audio, audio_mode) if audio is not None else None
        streams = [video] + ([sound] if sound is not None else [])
        for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            out.mux(packet)


def plan_remux(pieces: Sequence[Piece], rate: Fraction) -> int:
    """Check the segments can be concatenated as packets; return the largest decode delay (in frames).

    Raises:
        RemuxUnsupported: different stream headers, sizes, frame counts or
            timestamps that are not whole frames.
    """
    extradata: bytes | None = None
    size = None
    delays: list[int] = []
    for piece in pieces:
        name = piece.path.name
        with av.open(str(piece.path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if extradata is None:
                extradata, size = bytes(ctx.extradata or b""), (ctx.width, ctx.height)
            elif bytes(ctx.extradata or b"") != extradata or (ctx.width, ctx.height) != size:
                raise RemuxUnsupported(f"{name} has other stream headers than the first segment")
            scale = Fraction(stream.time_base) * rate
            dts_frames = []
            pts_frames = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                for value, stamps in ((packet.pts, pts_frames), (packet.dts, dts_frames)):
                    if value is None or (value * scale).denominator != 1:
                        raise RemuxUnsupported(f"{name}: timestamp {value} is not a whole frame")
                    stamps.append(int(value * scale))
            if len(pts_frames) != piece.frames or sorted(pts_frames) != list(range(piece.frames)):
                raise RemuxUnsupported(f"{name}: frames {len(pts_frames)} != {piece.frames} or gaps")
            delay = -dts_frames[0]
            if dts_frames != [j - delay for j in range(len(dts_frames))] or delay < 0:
                raise RemuxUnsupported(f"{name}: decode timestamps are not consecutive")
            delays.append(delay)
    return max(delays)


def _remux_packets(vstream, pieces: Sequence[Piece], rate: Fraction, max_delay: int) -> Iterator[_Timed]:
    """Yield the segments' packets renumbered onto one timeline (in frames), keyed by time."""
    unit = 1 / rate
    decode_index = 0
    for piece in pieces:
        with av.open(str(piece.path)) as container:
            stream = container.streams.video[0]
            scale = Fraction(stream.time_base) * rate
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packet.pts = piece.start + int(packet.pts * scale)
                # One packet per frame, in decode order: number them consecutively and
                # shift by the largest reorder delay so dts <= pts in every segment.
                packet.dts = decode_index - max_delay
                packet.duration = 1
                packet.time_base = unit
                packet.stream = vstream
                decode_index += 1
                yield packet.dts * unit, 0, packet


def _transcode_packets(pieces: Sequence[Piece], encoder: H264Encoder) -> Iterator[_Timed]:
    """Yield packets of the segments decoded and encoded once more (fallback path)."""
    for piece in pieces:
        with av.open(str(piece.path)) as container:
            for frame in container.decode(video=0):
                for packet in encoder.encode(frame_to_rgb(frame)):
                    yield _packet_time(packet), 0, packet
    for packet in encoder.flush():
        yield _packet_time(packet), 0, packet


def _audio_packets(out, audio: AudioSource, mode: str) -> Iterator[_Timed]:
    """Audio of the source for the written frames, copied or re-encoded to AAC."""
    info = audio.info
    if mode == "copy" and info.audio_codec not in out.supported_codecs:
        logger.info("%s audio cannot be copied into %s; re-encoding it to AAC.", info.audio_codec, out.format.name)
        mode = "transcode"
    source = av.open(str(info.path))
    in_stream = source.streams.audio[0]
    if mode == "copy":
        out_stream = out.add_stream_from_template(in_stream)
        return _copied_audio(source, in_stream, out_stream, audio.window)
    out_stream = out.add_stream("aac", rate=in_stream.codec_context.sample_rate)
    out_stream.layout = in_stream.codec_context.layout
    out_stream.bit_rate = 192_000
    return _encoded_audio(source, in_stream, out_stream, audio.window)


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
