"""``video IN OUT`` and ``demo`` (dream_core.cli.video, .demo): reader -> the one frame loop -> writer."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import panning_clip, textured_image
from dream_core import DreamSettings, FlowSet
from dream_core.cli import main
from dream_core.flow import FlowEstimator, compute_flows
from dream_core.image_io import from_uint8_hwc, to_uint8_hwc
from dream_core.clip.settings import RECOMMENDED_COLOUR_COHERENCE
from dream_core.video import VideoWriter, probe_video, read_frames
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

QUICK = ["--octaves", "2", "--iterations", "2"]
NTSC = Fraction(30000, 1001)


def write_clip(path, frames: torch.Tensor, rate=NTSC):
    with VideoWriter(path, rate, resume=False) as writer:
        for frame in frames:
            writer.write(to_uint8_hwc(frame))
    return path


@pytest.fixture
def small_clip(tmp_path):
    wide = textured_image(48, 64 + 3 * 6, seed=2)
    return write_clip(tmp_path / "clip.mp4", torch.stack([wide[0, :, :, 3 * t: 3 * t + 64] for t in range(6)]))


def test_video_command_is_the_frame_loop_with_the_estimated_flow(lite0, tmp_path):
    """The CLI's output is exactly what the loop gives with the flow estimated on the decoded frames,
    which differs from what it gives when the flow is dropped; count, rate and size are kept."""
    src = write_clip(tmp_path / "pan.mp4", panning_clip(5, 48, 64, step=3))
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), str(out), *QUICK, "--crf", "0", "--x264-preset", "ultrafast"]) == 0
    info = probe_video(out)
    assert info.num_frames == 5 and info.frame_rate == NTSC and (info.width, info.height) == (64, 48)
    assert not (tmp_path / "out.mp4.dream-work").exists()

    frames = [from_uint8_hwc(arr) for arr in read_frames(src)]
    flows = compute_flows(torch.cat(frames), estimator=FlowEstimator("dis"))
    still = FlowSet(torch.zeros_like(flows.backward), None, torch.ones_like(flows.reliable))

    def loop_then_encode(flow_source, name):
        video = VideoSettings(colour_coherence=RECOMMENDED_COLOUR_COHERENCE)  # the CLI's default
        with FrameDreamer(lite0, None, DreamSettings(num_octaves=2, num_iterations=2), video) as dreamer:
            dreamed = torch.cat([d.image for d in dream_clip(dreamer, enumerate(frames), flow_source)])
        with VideoWriter(tmp_path / name, NTSC, crf=0, x264_preset="ultrafast", resume=False) as writer:
            for frame in dreamed:
                writer.write(to_uint8_hwc(frame))
        return np.stack(list(read_frames(tmp_path / name))).astype(float)

    cli = np.stack(list(read_frames(out))).astype(float)
    with_flow, without_flow = loop_then_encode(FlowEstimator("dis"), "loop.mp4"), loop_then_encode(still, "still.mp4")
    assert np.array_equal(cli, with_flow)
    assert np.abs(with_flow[1:] - without_flow[1:]).mean() > 0.5  # levels: dropping the flow shows


def test_video_frame_range(small_clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["video", str(small_clip), str(out), *QUICK, "--mode", "seed", "--start", "2", "--end", "6"]) == 0
    assert probe_video(out).num_frames == 4


def test_video_resume_after_interruption(small_clip, tmp_path, monkeypatch, caplog):
    from dream_core.clip.frame_dreamer import FrameDreamer as Dreamer

    lossless = [*QUICK, "--segment-frames", "2", "--crf", "0", "--x264-preset", "ultrafast"]
    full = tmp_path / "full.mp4"
    assert main(["video", str(small_clip), str(full), *lossless]) == 0

    out = tmp_path / "out.mp4"
    original = Dreamer.dream_next
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Dreamer, "dream_next", flaky)
    assert main(["video", str(small_clip), str(out), *lossless]) == 130
    assert not out.exists()
    assert f"kept in '{out}.dream-work'" in caplog.text and "run the same command again: " in caplog.text
    resumed = {"n": 0}

    def counting(self, *args, **kwargs):
        resumed["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Dreamer, "dream_next", counting)
    assert main(["video", str(small_clip), str(out), *lossless]) == 0
    assert resumed["n"] == 3  # frames 0..2 were kept (a full segment of 2, then frame 2 on Ctrl-C): 3..5 remain
    a, b = np.stack(list(read_frames(full))), np.stack(list(read_frames(out)))
    assert a.shape == (6, 48, 64, 3)
    assert np.array_equal(a, b)  # lossless: the resumed run carried on exactly from the saved state


def test_video_errors(small_clip, tmp_path, caplog):
    assert main(["video", str(small_clip), str(small_clip), *QUICK]) == 2  # output == input
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    assert main(["video", str(junk), str(tmp_path / "o.mp4"), *QUICK]) == 2
    assert "junk.mp4" in caplog.text
    assert main(["video", str(small_clip), "/nonexistent_dir/o.mp4", *QUICK]) == 2
    caplog.clear()
    assert main(["video", str(small_clip), str(tmp_path / "o.mp4"), *QUICK, "--start", "6"]) == 2
    assert "start frame 6 is outside the clip" in caplog.text and "Set it with --start." in caplog.text


def test_demo_command(tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["demo", str(out), "--frames", "4", *QUICK, "--max-side", "128"]) == 0
    assert probe_video(out).num_frames == 4


def test_replaced_weights_file_is_another_run(small_clip, tmp_path, monkeypatch, caplog, lite0):
    """Only the path of --weights was in the run's identity: a file replaced at the same path resumed silently,
    mixing two models in one video. Its content is in the identity now."""
    from safetensors.torch import save_file

    from dream_core.clip.frame_dreamer import FrameDreamer as Dreamer

    weights = tmp_path / "w.safetensors"
    state = {k: v.contiguous() for k, v in lite0.net.state_dict().items()}
    save_file(state, str(weights))
    args = ["video", str(small_clip), str(tmp_path / "out.mp4"), "--octaves", "1", "--iterations", "1",
            "--segment-frames", "1", "--weights", str(weights), "--mode", "independent"]
    original = Dreamer.dream_next
    calls = {"n": 0}

    def stop_at_the_third(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Dreamer, "dream_next", stop_at_the_third)
    assert main(args) == 130
    monkeypatch.setattr(Dreamer, "dream_next", original)
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 1.01  # another model, same path
    save_file(state, str(weights))
    caplog.clear()
    assert main(args) == 2
    assert "settings.weights.sha256" in caplog.text and "--no-resume" in caplog.text
