"""The command line, run in-process on small real inputs."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import textured_image
from dream_core.cli import main
from dream_core.image_io import load_image, save_image
from dream_core.video_io import VideoWriter, probe_video, read_frames

QUICK = ["--octaves", "2", "--iterations", "2"]


@pytest.fixture
def small_png(tmp_path):
    path = tmp_path / "in.png"
    save_image(textured_image(64, 80), path)
    return path


@pytest.fixture
def small_clip(tmp_path):
    path = tmp_path / "clip.mp4"
    wide = textured_image(48, 64 + 3 * 10, seed=2)
    with VideoWriter(path, Fraction(30000, 1001), resume=False) as writer:
        for t in range(10):
            frame = wide[0, :, :, 3 * t: 3 * t + 64]
            writer.write(frame.permute(1, 2, 0).mul(255).round().byte().numpy())
    return path


def test_list_models(capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "offline" in out and "bvlc_googlenet" in out


def test_list_layers_shows_channel_counts(capsys):
    assert main(["--list-layers", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "block10_dw" in out and "672 channels" in out


def test_image_command_dreams(small_png, tmp_path):
    out = tmp_path / "out.png"
    assert main(["image", str(small_png), str(out), *QUICK, "--layers", "block5_dw:[1-8]"]) == 0
    a, b = load_image(small_png), load_image(out)
    assert a.shape == b.shape
    assert (a - b).abs().mean() > 0.01


def test_image_command_same_seed_same_file(small_png, tmp_path):
    main(["image", str(small_png), str(tmp_path / "a.png"), *QUICK, "--seed", "3"])
    main(["image", str(small_png), str(tmp_path / "b.png"), *QUICK, "--seed", "3"])
    assert torch.equal(load_image(tmp_path / "a.png"), load_image(tmp_path / "b.png"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layers", "block99"], "no layer 'block99'"),
        (["--layers", "block5:500"], "channels 0..79"),
        (["--model", "alexnet"], "Unknown model"),
        (["--lr", "-1"], "learning_rate"),
        (["--iterations", "0"], "num_iterations"),
        (["--octaves", "9"], "at most"),
        (["--weights", "/nonexistent/w.pth"], "not found"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_image_command_errors(small_png, tmp_path, caplog, extra, message):
    out = tmp_path / "out.png"
    assert main(["image", str(small_png), str(out), *QUICK[:0], *extra]) == 2
    assert message in caplog.text
    assert not out.exists()


def test_threads_flag_sets_torchs_thread_count(small_png, tmp_path):
    before = torch.get_num_threads()
    try:
        assert main(["image", str(small_png), str(tmp_path / "out.png"), *QUICK, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_corrupt_weights_file(small_png, tmp_path, caplog):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint" * 10)
    assert main(["image", str(small_png), str(tmp_path / "o.png"), "--weights", str(bad)]) == 2
    assert "w.pth" in caplog.text


def test_video_command_keeps_count_and_rate(small_clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["video", str(small_clip), str(out), *QUICK]) == 0
    info = probe_video(out)
    assert info.num_frames == 10 and info.frame_rate == Fraction(30000, 1001)
    assert (info.width, info.height) == (64, 48)
    assert not (tmp_path / "out.mp4.dream-work").exists()


def test_video_frame_range(small_clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["video", str(small_clip), str(out), *QUICK, "--mode", "seed", "--start", "2", "--end", "7"]) == 0
    assert probe_video(out).num_frames == 5


def test_video_resume_after_interruption(small_clip, tmp_path, monkeypatch):
    from dream_core import video_dream

    full = tmp_path / "full.mp4"
    assert main(["video", str(small_clip), str(full), *QUICK, "--segment-frames", "3"]) == 0

    out = tmp_path / "out.mp4"
    original = video_dream.FrameDreamer.dream_next
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(video_dream.FrameDreamer, "dream_next", flaky)
    assert main(["video", str(small_clip), str(out), *QUICK, "--segment-frames", "3"]) == 130
    assert not out.exists()
    monkeypatch.setattr(video_dream.FrameDreamer, "dream_next", original)
    resumed = {"n": 0}

    def counting(self, *args, **kwargs):
        resumed["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(video_dream.FrameDreamer, "dream_next", counting)
    assert main(["video", str(small_clip), str(out), *QUICK, "--segment-frames", "3"]) == 0
    assert resumed["n"] < 10  # continued, did not start over
    a = np.stack(list(read_frames(full))).astype(float)
    b = np.stack(list(read_frames(out))).astype(float)
    assert a.shape == b.shape == (10, 48, 64, 3)
    assert np.abs(a - b).mean() < 3.0  # same frames up to the encoder's segment boundaries


def test_video_errors(small_clip, tmp_path, caplog):
    assert main(["video", str(small_clip), str(small_clip), *QUICK]) == 2  # output == input
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    assert main(["video", str(junk), str(tmp_path / "o.mp4"), *QUICK]) == 2
    assert "junk.mp4" in caplog.text
    assert main(["video", str(small_clip), "/nonexistent_dir/o.mp4", *QUICK]) == 2


def test_demo_command(tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["demo", str(out), "--frames", "4", *QUICK, "--max-side", "128"]) == 0
    assert probe_video(out).num_frames == 4
