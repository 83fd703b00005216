"""The crash-safe run journal (dream_core.video.journal): resume after a drop, a crash, an interrupt."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from dream_core import video as vio
from dream_core.errors import InvalidParameterError, VideoError
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
    expected = ["carry_00001.npz", "manifest.json", "run.lock", "seg_00000.mp4", "seg_00001.mp4"]
    assert sorted(p.name for p in work.iterdir()) == expected  # the in-flight segment is gone; the run's lock
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
    other_crf.close()
    fresh = vio.VideoWriter(out, NTSC, source=clip, settings={"lr": 0.2}, resume=False)
    assert fresh.resume_point().next_frame == 0 and [p.name for p in fresh.work_dir.iterdir()] == ["run.lock"]
    fresh.close()
    assert not fresh.work_dir.exists()  # nothing committed: no folder left behind


def _interrupted_run(clip, out, frames=10):
    """Segments 0-3, 4-7 committed, then frames 8-9 committed as a short segment by close()."""
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    write_all(writer, list(vio.read_frames(clip, end=frames)))
    writer.close()
    return writer.work_dir


def _finish(writer, clip):
    point = writer.resume_point()
    with writer:
        for i, frame in enumerate(vio.read_frames(clip, start=point.next_frame), start=point.next_frame):
            writer.write(frame, carry={"last": frame, "index": np.array(i)})


def test_truncated_segment_is_redone_not_found_at_the_end(clip, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    work = _interrupted_run(clip, out)
    seg = work / "seg_00001.mp4"
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)  # checked when the folder is opened
    assert "segment seg_00001.mp4 cannot be read" in caplog.text and "(frames 4..7) and the 1 after it" in caplog.text
    assert "frames 4..9 will be dreamed again" in caplog.text and "restarts at frame 4" in caplog.text
    point = writer.resume_point()
    assert (point.next_frame, point.frames_done, point.carry) == (4, 4, None)
    assert sorted(p.name for p in work.iterdir()) == ["manifest.json", "run.lock", "seg_00000.mp4"]
    _finish(writer, clip)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_damaged_carry_is_dropped_with_a_warning(clip, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    work = _interrupted_run(clip, out)
    carry = work / "carry_00002.npz"
    carry.write_bytes(carry.read_bytes()[:100])  # was: BadZipFile on every rerun
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    assert "carry_00002.npz' cannot be read" in caplog.text and "restarts at frame 10" in caplog.text
    point = writer.resume_point()
    assert (point.next_frame, point.carry) == (10, None)
    _finish(writer, clip)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_segment_that_fails_to_decode_at_the_end_is_redone_by_the_next_run(clip, tmp_path, monkeypatch):
    import dream_core.video.mux as mux

    out = tmp_path / "out.mp4"
    _interrupted_run(clip, out)
    real = mux._decoded

    def broken(piece):  # packets all there, pictures not: found only when decoded at the end
        for i, frame in enumerate(real(piece)):
            if piece.path.name == "seg_00001.mp4" and i == 2:
                raise mux.DamagedSegmentError("Segment 'seg_00001.mp4' cannot be decoded.", segment=piece.path.name)
            yield frame

    monkeypatch.setattr(mux, "_decoded", broken)
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    with pytest.raises(VideoError, match="running again dreams their frames again"):
        _finish(writer, clip)
    monkeypatch.setattr(mux, "_decoded", real)
    again = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    assert again.resume_point().next_frame == 4
    _finish(again, clip)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_two_runs_on_one_output_the_second_is_refused(clip, tmp_path):
    out = tmp_path / "out.mp4"
    first = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    write_all(first, list(vio.read_frames(clip, end=5)))
    with pytest.raises(VideoError, match=rf"Another run \(process {os.getpid()} on .*\) is writing"):
        vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)
    first.close()
    second = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4)  # the first's work is picked up
    assert second.resume_point().next_frame == 5
    second.close()


def test_lock_of_a_live_process_refuses_and_goes_with_it(clip, tmp_path):
    out = tmp_path / "out.mp4"
    script = textwrap.dedent(
        f"""
        import sys, time
        from dream_core import video as vio
        w = vio.VideoWriter({str(out)!r}, "30000/1001", source={str(clip)!r})
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(VideoError, match=rf"process {child.pid} on"):
            vio.VideoWriter(out, NTSC, source=clip)
    finally:
        child.kill()  # dies holding the lock: the system lets it go
        child.wait(timeout=30)
    vio.VideoWriter(out, NTSC, source=clip).close()
