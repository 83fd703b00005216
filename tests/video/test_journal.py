"""The crash-safe run journal (dream_core.video.journal): resume after a drop, a crash, an interrupt."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from dream_core import video as vio
from dream_core.errors import InvalidParameterError
from dream_core.video.encoder import H264Encoder
from video_clips import NTSC, N, index_of, write_all


def test_resume_after_dropped_writer(clip, tmp_path):
    out = tmp_path / "resumed.mp4"
    frames = list(vio.read_frames(clip))
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4, settings={"lr": 0.1})
    assert writer.resume_point().next_frame == 0 and writer.resume_point().carry is None
    write_all(writer, frames[:10])  # two committed segments (0-3, 4-7) + 2 frames in flight
    work = writer.work_dir
    del writer  # "crash": no finish, no close
    gc.collect()
    assert not out.exists()

    again = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4, settings={"lr": 0.1})
    point = again.resume_point()
    assert point.next_frame == 8 and point.frames_done == 8
    assert int(point.carry["index"]) == 7
    np.testing.assert_array_equal(point.carry["last"], frames[7])
    expected = ["carry_00001.npz", "manifest.json", "seg_00000.mp4", "seg_00001.mp4"]
    assert sorted(p.name for p in work.iterdir()) == expected  # the in-flight segment is gone
    for i, frame in enumerate(vio.read_frames(clip, start=point.next_frame), start=point.next_frame):
        again.write(frame, carry={"last": frame, "index": np.array(i)})
    again.finish()
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and got.has_audio
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))
    assert not work.exists()


def test_resume_after_killed_process(clip, tmp_path):
    out = tmp_path / "killed.mp4"
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from dream_core import video as vio
        w = vio.VideoWriter({str(out)!r}, "30000/1001", source={str(clip)!r}, segment_frames=3)
        for i, f in enumerate(vio.read_frames({str(clip)!r})):
            w.write(f, carry={{"index": np.array(i)}})
            if i == 6:
                os._exit(3)  # hard crash: no cleanup at all
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not out.exists()
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=3)
    point = writer.resume_point()
    assert point.next_frame == 6 and int(point.carry["index"]) == 5
    with writer:
        for i, frame in enumerate(vio.read_frames(clip, start=6), start=6):
            writer.write(frame, carry={"index": np.array(i)})
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_exception_keeps_progress_and_leaves_no_output(clip, tmp_path):
    out = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=4) as writer:
            for i, frame in enumerate(vio.read_frames(clip)):
                if i == 6:
                    raise RuntimeError("boom")
                writer.write(frame, carry={"index": np.array(i)})
    assert not out.exists()
    assert not list(tmp_path.glob("failed*.mp4"))
    point = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4).resume_point()
    assert point.next_frame == 6 and int(point.carry["index"]) == 5  # the short segment was committed


def test_interrupt_inside_write_drops_the_open_segment(clip, tmp_path, monkeypatch):
    out = tmp_path / "interrupted.mp4"
    out.write_bytes(b"an older result")
    real_encode = H264Encoder.encode

    def encode(self, rgb):
        if index_of(rgb) == 6:
            raise KeyboardInterrupt
        return real_encode(self, rgb)

    monkeypatch.setattr(H264Encoder, "encode", encode)
    with pytest.raises(KeyboardInterrupt):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=4) as writer:
            write_all(writer, vio.read_frames(clip))
    assert out.read_bytes() == b"an older result"  # untouched until a finish succeeds
    monkeypatch.setattr(H264Encoder, "encode", real_encode)
    point = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4).resume_point()
    assert point.next_frame == 4 and int(point.carry["index"]) == 3


def test_resume_with_other_settings_is_refused_or_restarted(clip, tmp_path):
    out = tmp_path / "settings.mp4"
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.1})
    write_all(writer, list(vio.read_frames(clip, end=4)))
    writer.close()
    with pytest.raises(InvalidParameterError, match="lr"):
        vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.2})
    with pytest.raises(InvalidParameterError, match="segment_crf"):  # lossless segments are other segments
        vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.1}, crf=0)
    # The output's own quality is applied when the run finishes: another --crf resumes the same segments.
    other_crf = vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.1}, crf=23)
    assert other_crf.resume_point().frames_done == 4
    fresh = vio.VideoWriter(out, NTSC, source=clip, settings={"lr": 0.2}, resume=False)
    assert fresh.resume_point().next_frame == 0 and not fresh.work_dir.exists()
