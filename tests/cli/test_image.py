"""``image IN OUT`` (dream_core.cli.image), run in-process on small real inputs."""

import pytest
import torch

from conftest import textured_image
from dream_core import fastpath
from dream_core.cli import main
from dream_core.image_io import load_image, save_image
from dream_core.image_ops import fit_max_side

QUICK = ["--octaves", "2", "--iterations", "2"]


@pytest.fixture
def small_png(tmp_path):
    path = tmp_path / "in.png"
    save_image(textured_image(64, 80), path)
    return path


def test_image_command_dreams_at_max_side(small_png, tmp_path):
    out = tmp_path / "out.png"
    assert main(["image", str(small_png), str(out), *QUICK, "--layers", "block5_dw:[1-8]", "--max-side", "56"]) == 0
    a, b = fit_max_side(load_image(small_png), 56), load_image(out)
    assert b.shape[-2:] == (45, 56) == a.shape[-2:]
    assert (a - b).abs().mean() > 0.01


def test_image_command_same_seed_same_file(small_png, tmp_path):
    main(["image", str(small_png), str(tmp_path / "a.png"), *QUICK, "--seed", "3"])
    main(["image", str(small_png), str(tmp_path / "b.png"), *QUICK, "--seed", "3"])
    assert torch.equal(load_image(tmp_path / "a.png"), load_image(tmp_path / "b.png"))


def test_no_fast_path_switches_the_execution_copy_off(tmp_path):
    try:
        assert main(["image", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--no-fast-path"]) == 2
        assert not fastpath.enabled()
    finally:
        fastpath.set_enabled(True)


@pytest.mark.parametrize(
    "extra, message, remedy",
    [
        (["--layers", "block99"], "no layer 'block99'", "--list-layers MODEL"),
        (["--layers", "block5:500"], "channels 0..79", "--list-layers MODEL"),
        (["--model", "alexnet"], "Unknown model", "--list-models"),
        (["--lr", "-1"], "learning_rate", "Set it with --lr."),
        (["--iterations", "0"], "num_iterations", "Set it with --iterations."),
        (["--octaves", "9"], "at most", "Set it with --octaves."),
        (["--weights", "/nonexistent/w.pth"], "not found", "--weights FILE"),
        (["--threads", "0"], "--threads must be at least 1", ""),
    ],
)
def test_image_command_errors_name_the_flag(small_png, tmp_path, caplog, extra, message, remedy):
    out = tmp_path / "out.png"
    assert main(["image", str(small_png), str(out), *extra]) == 2
    assert message in caplog.text and remedy in caplog.text
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
