"""H.264 encoding (dream_core.video.encoder): frame checks and odd sizes, through the writer."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dream_core import video as vio
from dream_core.errors import InvalidImageError
from video_clips import N, index_of, make_clip, write_all


def test_odd_size_is_padded_by_one_pixel(tmp_path, caplog):
    src = make_clip(tmp_path / "odd.mkv", w=63, h=47, audio=None, vcodec="ffv1", pix_fmt="yuv444p")
    info = vio.probe_video(src)
    assert (info.width, info.height) == (63, 47)
    out = tmp_path / "odd_out.mp4"
    with caplog.at_level(logging.WARNING, logger="dream_core.video"):
        with vio.VideoWriter(out, info.frame_rate, source=src) as writer:
            write_all(writer, vio.read_frames(src))
    assert "padded to 64x48" in caplog.text
    got = vio.probe_video(out)
    assert (got.width, got.height, got.num_frames) == (64, 48, N)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_writer_rejects_bad_frames(tmp_path):
    writer = vio.VideoWriter(tmp_path / "bad.mp4", 25)
    writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="same size"):
        writer.write(np.zeros((16, 18, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="uint8"):
        writer.write(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(InvalidImageError, match=r"\(H, W, 3\)"):
        writer.write(np.zeros((16, 16), np.uint8))
    writer.close()
