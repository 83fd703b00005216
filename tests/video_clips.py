"""Small test clips for the video tests: pattern frames whose index can be read back, with or without audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dream_core import video as vio

NTSC = Fraction(30000, 1001)
W, H, N = 64, 48, 12


def pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame ``i``: a solid colour whose red level encodes the index (20 levels apart)."""
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 10 + 20 * i
    img[..., 1] = 200 - 15 * i
    img[..., 2] = 90
    return img


def index_of(frame: np.ndarray) -> int:
    return int(round((float(frame[..., 0].mean()) - 10) / 20))


def make_clip(
    path: Path,
    n: int = N,
    w: int = W,
    h: int = H,
    rate: Fraction = NTSC,
    audio: str | None = "aac",
    vcodec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
) -> Path:
    """Write a test clip with PyAV: ``n`` pattern frames, optionally a 440 Hz mono tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=rate)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if pts is not None:
            video.time_base = Fraction(1, 1000)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=44100)
            sound.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            frame.pts = i if pts is None else pts[i]
            if pts is not None:
                frame.time_base = Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(int(44100 * n / rate)) / 44100
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            fmt = "fltp"
            if audio.startswith("pcm_"):
                tone, fmt = (tone * 32767).astype(np.int16), "s16"
            samples = av.AudioFrame.from_ndarray(tone, format=fmt, layout="mono")
            samples.sample_rate, samples.pts = 44100, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode(None))
    return path


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        total = sum(p.duration or 0 for p in container.demux(stream) if p.size)
        return float(total * stream.time_base)


def write_all(writer: vio.VideoWriter, frames) -> None:
    for i, frame in enumerate(frames):
        writer.write(frame, carry={"last": frame, "index": np.array(i)})


def marked(i: int, w: int = W, h: int = H) -> np.ndarray:
    """:func:`pattern` frame ``i`` with a white 8x12 block in its top-left corner (shows how it is turned)."""
    img = pattern(i, w, h)
    img[:8, :12] = 255
    return img


def make_turned_clip(path: Path, degrees: int, hflip: bool = False, n: int = 3) -> Path:
    """A clip of :func:`marked` frames whose display matrix asks players to turn them ``degrees``
    counter-clockwise (and mirror them), as a phone writes it."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.set_display_rotation(degrees, hflip=hflip)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(marked(i), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def faststart_copy(src: Path, dst: Path) -> Path:
    """``src`` remuxed with its index (moov) first, as phones and web downloads have it."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst
