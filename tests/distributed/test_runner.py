"""Segments on a real local Ray runtime (dream_core.distributed.runner, ``video --workers``, ``batch``).

One ``ray.init(num_cpus=2)`` for the module; clips are tiny (64x48, 1 octave, 1 iteration).
"""

import logging
import sys
from fractions import Fraction

import numpy as np
import pytest

from conftest import textured_image
from dream_core import DreamSettings
from dream_core.cli import main
from dream_core.distributed.assemble import Assembler
from dream_core.distributed.job import SegmentJob
from dream_core.distributed.runner import render_segments
from dream_core.distributed.segments import plan_segments
from dream_core.errors import VideoError
from dream_core.image_io import to_uint8_hwc
from dream_core.video import VideoWriter, probe_video, read_frames
from dream_core.clip import VideoSettings
from video_clips import audio_seconds, make_clip

RATE = Fraction(24)
QUICK = ["--octaves", "1", "--iterations", "1", "--threads", "1", "--x264-preset", "ultrafast"]


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    """A lossless panning clip of 12 frames, 64x48, no audio."""
    wide = textured_image(48, 64 + 3 * 12, seed=5)
    path = tmp_path_factory.mktemp("pan") / "pan.mp4"
    with VideoWriter(path, RATE, crf=0, resume=False) as writer:
        for t in range(12):
            writer.write(to_uint8_hwc(wide[0, :, :, 3 * t: 3 * t + 64]))
    return path


def job(pan, fail_once=None) -> SegmentJob:
    return SegmentJob(source=str(pan), rate=RATE, first_frame=0, max_side=None, model="efficientnet_lite0",
                      weights=None, objective=None, device="cpu", crf=0,
                      settings=DreamSettings(num_octaves=1, num_iterations=1), video=VideoSettings(),
                      fail_once=fail_once)


def render(pan, out, fail_once=None, max_retries=3):
    plan = plan_segments(range(12), 4, 3, 2)
    writer = VideoWriter(out, RATE, crf=0, settings={"plan": "4/3/2"})
    with writer:
        assembler = Assembler(writer, plan, RATE, 0)
        needed = assembler.needed()
        stats = render_segments(job(pan, fail_once), plan, assembler, workers=2, threads=1,
                                max_retries=max_retries, progress=False)
    return needed, stats, np.stack(list(read_frames(out)))


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_output_equals_an_unbroken_run(ray_runtime, pan, tmp_path):
    _, clean, unbroken = render(pan, tmp_path / "clean.mp4")
    assert sorted(clean.dreamed) == [0, 1, 2] and clean.starts == {0: 1, 1: 1, 2: 1}
    marker = tmp_path / "died"
    _, stats, got = render(pan, tmp_path / "faulty.mp4", fail_once=(1, str(marker)))
    assert marker.exists()  # the worker of segment 1 did die
    assert stats.starts == {0: 1, 1: 2, 2: 1}  # segment 1 retried, no finished segment redone
    assert stats.committed == [0, 1, 2]
    np.testing.assert_array_equal(got, unbroken)


@pytest.mark.slow
def test_a_run_that_failed_resumes_without_redoing_committed_segments(ray_runtime, pan, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="died"):
        render(pan, out, fail_once=(2, str(tmp_path / "died")), max_retries=0)
    needed, stats, got = render(pan, out)
    # body(0) and join(0|1) were committed; body(1) too when segment 1 finished before 2 died, and then
    # segment 1's blend_out, saved with it, is all join(1|2) needs of it.
    assert needed in ([1, 2], [2])
    assert sorted(stats.dreamed) == needed
    _, _, unbroken = render(pan, tmp_path / "clean.mp4")
    np.testing.assert_array_equal(got, unbroken)


@pytest.mark.slow
def test_two_workers_keep_frame_count_rate_and_audio(ray_runtime, tmp_path):
    src = make_clip(tmp_path / "tone.mp4", n=12, audio="aac")
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    assert main(["video", str(src), str(one), *QUICK]) == 0
    assert main(["video", str(src), str(two), *QUICK, "--workers", "2", "--overlap", "3"]) == 0
    a, b = probe_video(one), probe_video(two)
    assert (b.num_frames, b.frame_rate, b.width, b.height) == (a.num_frames, a.frame_rate, a.width, a.height) == (
        12, a.frame_rate, 64, 48)
    assert b.has_audio and abs(audio_seconds(two) - audio_seconds(one)) < 0.05


@pytest.mark.slow
def test_batch_dreams_images_and_skips_finished_outputs(ray_runtime, tmp_path, capsys):
    from dream_core.image_io import save_image

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    save_image(textured_image(48, 64, seed=1), src / "a.png")
    make_clip(src / "clip.mp4", n=8, audio=None)
    (dst / "clip.mp4").write_bytes(b"finished earlier")
    (src / "notes.txt").write_text("not a clip")
    assert main(["batch", str(src), str(dst), *QUICK, "--workers", "2"]) == 0
    assert (dst / "a.png").is_file()
    assert (dst / "clip.mp4").read_bytes() == b"finished earlier"
    table = capsys.readouterr().out
    assert "a.png" in table and "done" in table and "skipped" in table and "notes.txt" not in table


@pytest.mark.slow
def test_batch_images_take_the_mask_and_the_schedules_at_frame_zero(ray_runtime, tmp_path):
    """Images of a batch honour --mask and take --lr and --layers schedules at frame 0 (they ignored the mask, used
    the default learning rate and refused the --layers schedule with a misleading message): the same file as the
    image command given the frame-0 values."""
    from dream_core.image_io import load_image, save_image

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    save_image(textured_image(48, 64, seed=1), src / "a.png")
    mask = textured_image(48, 64, seed=2) * 0
    mask[..., 32:] = 1
    save_image(mask, tmp_path / "mask.png")
    flags = ["--octaves", "1", "--iterations", "1", "--threads", "1", "--mask", str(tmp_path / "mask.png")]
    assert main(["batch", str(src), str(dst), *flags, "--lr", "0:(0.03), 9:(0.01)",
                 "--layers", "0:(block5_dw), 9:(block8_dw)", "--workers", "1"]) == 0
    assert main(["image", str(src / "a.png"), str(tmp_path / "alone.png"), *flags, "--lr", "0.03",
                 "--layers", "block5_dw"]) == 0
    batch, alone, source = (load_image(p) for p in (dst / "a.png", tmp_path / "alone.png", src / "a.png"))
    assert np.array_equal(batch.numpy(), alone.numpy())
    assert np.array_equal(batch[..., :28].numpy(), source[..., :28].numpy())


def test_without_ray_several_workers_fail_at_once_and_one_worker_works(monkeypatch, tmp_path, caplog):
    src = make_clip(tmp_path / "c.mp4", n=4, audio=None)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with caplog.at_level(logging.ERROR):
        assert main(["video", str(src), str(tmp_path / "o.mp4"), *QUICK, "--workers", "2"]) == 2
        assert main(["batch", str(tmp_path), str(tmp_path / "b"), *QUICK]) == 2
    assert caplog.text.count("pip install 'deepdream-video[ray]'") == 2 and "Or run with --workers 1." in caplog.text
    assert main(["video", str(src), str(tmp_path / "o.mp4"), *QUICK, "--workers", "1"]) == 0
