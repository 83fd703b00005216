"""Every flag honoured or refused, and no file of a run overwriting another's (issue 20): batch outputs, the
image command's --mask, --guide on clips and animations, mode-only flags, inputs against outputs."""

import argparse
import logging

import numpy as np
import pytest
import torch

from conftest import textured_image
from dream_core.cli import build_parser, main
from dream_core.cli import batch as batch_cli
from dream_core.cli.batch import batch_items
from dream_core.cli.image import image_args
from dream_core.errors import InvalidParameterError
from dream_core.image_io import load_image, save_image
from dream_core.video import VideoWriter, read_frames
from dream_core.image_io import to_uint8_hwc

QUICK = ["--octaves", "2", "--iterations", "2"]
CLIP = ["--crf", "0", "--x264-preset", "ultrafast"]


def _folder(tmp_path, *names):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    for name in names:
        (src / name).write_bytes(b"x")
    return src, dst


def test_batch_refuses_two_inputs_with_one_output_before_any_work(tmp_path, caplog):
    src, dst = _folder(tmp_path, "b.avi", "b.mp4", "c.png")
    with caplog.at_level(logging.ERROR):
        assert main(["batch", str(src), str(dst)]) == 2  # was: both 'done', one dream overwritten
    assert "'b.avi' and 'b.mp4' -> 'b.mp4'" in caplog.text and "Rename one" in caplog.text
    assert not list(dst.iterdir())


def test_batch_folds_case_where_the_disk_does(tmp_path, monkeypatch):
    src, dst = _folder(tmp_path, "B.png", "b.png")
    assert [i.output.name for i in batch_items(src, dst)] == ["B.png", "b.png"]  # this disk keeps them apart
    monkeypatch.setattr(batch_cli, "ignores_case", lambda folder: True)  # macOS, Windows: one file
    with pytest.raises(InvalidParameterError, match="'B.png' and 'b.png' -> 'B.png'"):
        batch_items(src, dst)


def test_batch_outputs_never_overwrite_a_flags_file_and_skip_it(tmp_path):
    src, dst = _folder(tmp_path, "a.png", "mask.png")
    args = build_parser().parse_args(["batch", str(src), str(dst), "--mask", str(dst / "a.png")])
    with pytest.raises(InvalidParameterError, match="out/a.png' is the --mask file"):
        batch_items(src, dst, args)
    args = build_parser().parse_args(["batch", str(src), str(dst), "--mask", str(src / "mask.png")])
    items = {i.source.name: (i.status, i.note) for i in batch_items(src, dst, args)}
    assert items == {"a.png": ("todo", ""), "mask.png": ("skipped", "the --mask file")}


def test_images_of_a_batch_take_schedules_at_frame_zero(tmp_path):
    def parsed(*flags):
        return image_args(build_parser().parse_args(["batch", "in", "out", *flags]))

    still = parsed("--lr", "0:(0.02), 48:(0.04)", "--octaves", "10:(3), 20:(5)", "--layers",
                   "0:(block8_dw), 60:(block12_dw:[3,7])", "--carry", "0:(0.5), 9:(0.9)", "--zoom", "0:(1), 9:(1.1)")
    assert (still.learning_rate, still.num_octaves, still.layers) == (0.02, 3, "block8_dw")  # was: default lr
    assert isinstance(still.num_octaves, int) and str(still.carry) == "0:(0.5), 9:(0.9)"  # the clips' alone
    assert parsed("--lr", "0s:(0.03), 2s:(0.05)").learning_rate == 0.03
    assert parsed("--colour-coherence", "0:(0.8), 9:(0)").colour_coherence == 0.8
    with pytest.raises(InvalidParameterError, match="mixes keys in frames and seconds with none at 0"):
        parsed("--lr", "5:(0.03), 2s:(0.05)")


def test_image_command_honours_mask(tmp_path):
    image = textured_image(48, 64, seed=3)
    save_image(image, tmp_path / "in.png")
    mask = torch.zeros(1, 3, 48, 64)
    mask[..., 32:] = 1.0
    save_image(mask, tmp_path / "mask.png")
    assert main(["image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), *QUICK,
                 "--mask", str(tmp_path / "mask.png")]) == 0
    out, kept = load_image(tmp_path / "out.png"), load_image(tmp_path / "in.png")
    assert torch.equal(out[..., :28], kept[..., :28])  # outside the mask: the input, to the last bit
    assert (out[..., 36:] - kept[..., 36:]).abs().mean() > 0.01


@pytest.mark.parametrize("command", ["image", "animate"])
def test_an_output_that_is_an_input_flags_file_is_refused(tmp_path, caplog, command):
    save_image(textured_image(48, 64), tmp_path / "in.png")
    out = tmp_path / ("out.png" if command == "image" else "out.mp4")
    out.write_bytes(b"the guide, or the mask")
    flag = "--guide" if command == "image" else "--mask"
    with caplog.at_level(logging.ERROR):
        assert main([command, str(tmp_path / "in.png"), str(out), flag, str(out)]) == 2
    assert f"is the {flag} file" in caplog.text and out.read_bytes() == b"the guide, or the mask"


def test_an_input_inside_the_outputs_work_folder_is_refused(tmp_path, caplog):
    work = tmp_path / "out.mp4.dream-work"
    work.mkdir()
    save_image(textured_image(48, 64), work / "mask.png")
    save_image(textured_image(48, 64), tmp_path / "in.png")
    with caplog.at_level(logging.ERROR):
        assert main(["animate", str(tmp_path / "in.png"), str(tmp_path / "out.mp4"), "--mask",
                     str(work / "mask.png")]) == 2
    assert "the work folder of the output, which is removed" in caplog.text


def test_flags_a_mode_never_reads_are_refused(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["video", "in.mp4", str(tmp_path / "o.mp4"), "--mode", "independent", "--carry", "0.5"]) == 2
        assert main(["video", "in.mp4", str(tmp_path / "o.mp4"), "--mode", "seed", "--occlusion-feather", "3"]) == 2
    assert "--carry does nothing in --mode independent" in caplog.text
    assert "--occlusion-feather does nothing in --mode seed" in caplog.text


def _clip(path, n=3):
    wide = textured_image(48, 64 + 3 * n, seed=2)
    with VideoWriter(path, 24, resume=False, crf=0) as writer:
        for t in range(n):
            writer.write(to_uint8_hwc(wide[0, :, :, 3 * t: 3 * t + 64]))
    return path


def test_guide_is_honoured_by_video_and_animate_and_a_missing_one_refused(lite0, tmp_path, caplog):
    """--guide did nothing on clips and animations, even for a file that does not exist."""
    src = _clip(tmp_path / "in.mp4")
    save_image(textured_image(96, 96, seed=9), tmp_path / "guide.png")
    save_image(textured_image(48, 64, seed=1), tmp_path / "start.png")
    with caplog.at_level(logging.ERROR):
        assert main(["video", str(src), str(tmp_path / "x.mp4"), *QUICK, *CLIP, "--guide", str(tmp_path / "no.png")]) == 2
    assert "no.png" in caplog.text and not (tmp_path / "x.mp4.dream-work").exists()
    for command, source, extra in (("video", src, []), ("animate", tmp_path / "start.png", ["--frames", "2"])):
        plain, guided = tmp_path / f"{command}.mp4", tmp_path / f"{command}_guided.mp4"
        assert main([command, str(source), str(plain), *QUICK, *CLIP, *extra]) == 0
        assert main([command, str(source), str(guided), *QUICK, *CLIP, *extra, "--guide", str(tmp_path / "guide.png")]) == 0
        a, b = (np.stack(list(read_frames(p))).astype(float) for p in (plain, guided))
        assert np.abs(a - b).mean() > 1.0  # identical before


def test_checks_that_came_after_the_first_frame_come_before_it(tmp_path, caplog):
    """A mask video shorter than the clip, or an --octaves schedule too deep for the frame size at a later
    frame, failed mid-run (and the corrected rerun could not resume); now nothing is dreamed first."""
    src = _clip(tmp_path / "in.mp4", n=6)
    mask = _clip(tmp_path / "mask.mp4", n=2)
    runs = [["--mask", str(mask), "--octaves", "2"], ["--octaves", "0:(2), 2:(2), 3:(5), 4:(2)"]]  # 5 at frame 3
    with caplog.at_level(logging.ERROR):
        for extra in runs:
            assert main(["video", str(src), str(tmp_path / "out.mp4"), "--iterations", "1", *CLIP, *extra]) == 2
    assert "has 2 frames; the clip's frames 0..5 need one each" in caplog.text
    assert "5 octaves" in caplog.text and "frame 3 of the clip" in caplog.text and "Set it with --octaves" in caplog.text
    assert not (tmp_path / "out.mp4.dream-work").exists()


def test_a_file_system_error_mid_run_is_our_message_and_says_how_to_resume(tmp_path, monkeypatch, caplog):
    import errno

    from dream_core.cli import image as image_cli
    from dream_core.video import writer as writer_module

    save_image(textured_image(48, 64), tmp_path / "in.png")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.png"))

    monkeypatch.setattr(image_cli, "save_image", full)
    with caplog.at_level(logging.ERROR):
        assert main(["image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), *QUICK]) == 1  # was: a traceback
    assert f"The file system refused '{tmp_path / 'out.png'}': No space left on device. Check the free space" in caplog.text
    caplog.clear()
    src = _clip(tmp_path / "in.mp4", n=3)
    real_write = writer_module.VideoWriter.write

    def second_fails(self, frame, carry=None):
        if self.frames_written >= 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, frame, carry)

    monkeypatch.setattr(writer_module.VideoWriter, "write", second_fails)
    with caplog.at_level(logging.ERROR):
        assert main(["video", str(src), str(tmp_path / "out.mp4"), *QUICK, *CLIP, "--segment-frames", "1"]) == 1
    assert "No space left on device" in caplog.text and "run the same command again" in caplog.text


def test_batch_images_honour_colour_coherence(tmp_path):
    """--colour-coherence reached a batch's clips only; its images now keep their colour balance by it too."""
    from dream_core.cli.image import run_image
    from dream_core.colour import colour_balance

    save_image(textured_image(48, 64, seed=3) * 0.5 + 0.25, tmp_path / "in.png")
    loud = ["--octaves", "1", "--iterations", "3", "--lr", "0.3"]
    off = {}
    for coherence in ("0", "1"):
        args = image_args(build_parser().parse_args(["batch", "in", "out", *loud, "--colour-coherence", coherence]))
        out = tmp_path / f"c{coherence}.png"
        run_image(argparse.Namespace(**{**vars(args), "input": str(tmp_path / "in.png"), "output": str(out)}))
        off[coherence] = (colour_balance(load_image(out)) - colour_balance(load_image(tmp_path / "in.png"))).abs().max()
    assert off["1"] < 0.5 * off["0"]
