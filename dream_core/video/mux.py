"""Making the output from the committed segments: one encode, with the source's audio for the written frames.

:func:`join_segments` decodes the near-lossless segments (see
:func:`~dream_core.video.encoder.segment_crf`) and encodes their pictures once, as
one stream at the output's quality, so the output has no join: its keyframes
fall where x264 puts them, not at every segment start. Audio the container
cannot hold (or that fails to mux) is re-encoded to AAC 192 kb/s.
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

logger = logging.getLogger(__name__)

#: A packet to mux, keyed for interleaving: (decode time in seconds, 0 = video / 1 = audio, packet).
_Timed = tuple[Fraction, int, av.Packet]


class DamagedSegmentError(VideoError):
    """A committed segment that does not decode to the frames it was committed with (``segment``: its file name)."""

    def __init__(self, message: str = "", *, parameter: Optional[str] = None, segment: str = "") -> None:
        super().__init__(message, parameter=parameter)
        self.segment = segment


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
    """Encode the segments' pictures once into ``out``, with the audio.

    Args:
        out: the file to write (a temporary name; the caller moves it into place).
        pieces: the committed segments, in order.
        encoding: container format, rate, size and x264 options of the output.
        audio: the source's audio and the window to copy, or ``None``.
        name: the output as the user knows it, for the message.

    Raises:
        VideoError: writing failed with the audio copied and re-encoded, or a
            segment does not hold the frames it was committed with (``out`` is removed).
    """
    errors: list[str] = []
    for audio_mode in ("copy", "transcode") if audio is not None else ("copy",):
        out.unlink(missing_ok=True)
        try:
            _assemble(out, pieces, encoding, audio, audio_mode)
        except (av.FFmpegError, OSError) as exc:
            errors.append(f"audio={audio_mode}: {first_line(exc)}")
            logger.warning("Writing '%s' (%s) failed.", out, errors[-1])
            continue
        except VideoError:
            out.unlink(missing_ok=True)
            raise
        return
    out.unlink(missing_ok=True)
    raise VideoError(
        f"Could not write '{name or out}' ({'; '.join(errors) or 'no attempt succeeded'}); the output was not created."
    )


def _assemble(out_path: Path, pieces: Sequence[Piece], encoding: Encoding, audio: Optional[AudioSource],
              audio_mode: str) -> None:
    """Write the video (and audio) into ``out_path``."""
    options = {"movflags": "+faststart"} if encoding.format in ("mp4", "mov") else {}
    with av.open(str(out_path), "w", format=encoding.format, container_options=options) as out:
        w, h = encoding.size
        video = _encoded_pictures(pieces, H264Encoder(out, encoding.rate, w, h, encoding.crf, encoding.preset))
        sound = _audio_packets(out, audio, audio_mode) if audio is not None else None
        streams = [video] + ([sound] if sound is not None else [])
        for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            out.mux(packet)


def _encoded_pictures(pieces: Sequence[Piece], encoder: H264Encoder) -> Iterator[_Timed]:
    """Packets of the segments' pictures encoded as one stream, keyed by time.

    Raises:
        VideoError: a segment decodes to another number of frames than it was committed with.
    """
    for piece in pieces:
        count = 0
        for frame in _decoded(piece):  # encode_picture takes any pixel format to yuv420p
            count += 1
            for packet in encoder.encode_picture(frame):
                yield _packet_time(packet), 0, packet
        if count != piece.frames:
            raise DamagedSegmentError(
                f"Segment '{piece.path.name}' holds {count} frames but was committed with {piece.frames}; "
                "the work folder is damaged.", segment=piece.path.name,
            )
    for packet in encoder.flush():
        yield _packet_time(packet), 0, packet


def _decoded(piece: Piece) -> Iterator[av.VideoFrame]:
    """The pictures of a segment; one that cannot be opened or decoded is a :class:`DamagedSegmentError`."""
    try:
        with av.open(str(piece.path)) as container:
            yield from container.decode(video=0)
    except (av.FFmpegError, OSError) as exc:
        raise DamagedSegmentError(f"Segment '{piece.path.name}' cannot be decoded ({first_line(exc)}); the work "
                                  "folder is damaged.", segment=piece.path.name) from exc


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
