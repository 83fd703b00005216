"""The benchmark scripts start and print their tables (``--quick``: tiny sizes, one repeat).

Only that they run: no timing is asserted, so a busy CI machine cannot fail
this. The real measurements are made by hand (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["compute_floor", "dream_speed", "baseline_original", "memory", "autocast_check", "allocator", "gpu_check",
           "look", "animation", "distributed", "comfy_stream"]
# allocator.py's quick mode starts two child processes (~9 s on the 2-core machine), distributed.py a Ray
# runtime (tests/distributed/test_runner.py runs the same paths), comfy_stream.py drives a running ComfyUI
# (tests/test_stream_node.py runs the node itself): --help only here. gpu_check.py has its own tests below.
QUICK = [name for name in SCRIPTS if name not in ("allocator", "distributed", "comfy_stream", "gpu_check")]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Benchmarks whose quick mode reads ../shared/data (skipped where it is absent, like the other real-input tests).
NEEDS_SHARED_DATA = {"look": ("golden_gate.jpg", "tubingen.jpg", "balcony_view.mp4"),
                     "animation": ("balcony_view.mp4", "golden_gate.jpg")}


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", QUICK)
def test_script_quick_mode_prints_a_table(name, capsys, restore_threads):
    if name in NEEDS_SHARED_DATA:  # the look and animation benchmarks measure the shared photos and clip
        from conftest import shared_file

        for needed in NEEDS_SHARED_DATA[name]:
            shared_file(needed)
    assert _load(name).main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Machine: ")
    table_rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table_rows) >= 2, out


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_baseline_runs_the_original_pipeline_in_its_own_process():
    """The default comparison: the original pipeline in a spawned child (glibc's default malloc), ours here."""
    import subprocess
    import sys

    root = BENCH.parent
    proc = subprocess.run(
        [sys.executable, str(BENCH / "baseline_original.py"), "--quick", "--original-malloc", "own-process"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Original pipeline: its own process" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| original") or line.startswith("| ours")]
    assert len(rows) == 2, proc.stdout


def test_look_video_mode_measures_the_encoded_clip(capsys, restore_threads):
    """benchmarks/look.py --video: the CLI dreams the clip to .mp4 in both modes, the table compares them."""
    from conftest import shared_file

    shared_file("balcony_view.mp4")
    assert _load("look").main(["--video", "--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| stable") or line.startswith("| independent")]
    assert len(rows) == 2


def test_animation_colour_mode_compares_coherence_settings(capsys, restore_threads):
    """benchmarks/animation.py colour: an animation and the clip with and without --colour-coherence."""
    from conftest import shared_file

    shared_file("balcony_view.mp4")
    assert _load("animation").main(["colour", "--quick", "--coherence", "0,1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0.0") or line.startswith("| 1.0")]
    assert len(rows) == 4  # two settings, two tables


GPU_CHECK_TITLES = ("CUDA-marked tests", "First frame after loading", "Steady speed", "GPU busy share",
                    "Command line end to end", "Dream step variants", "original pipeline re-implemented",
                    "What the columns mean")


def test_gpu_check_quick_run_fills_every_section_of_its_report(tmp_path, capsys, restore_threads):
    """Every section of the GPU check runs (tiny, on the CPU) and lands in the --out file with figures."""
    out = tmp_path / "gpu_check.md"
    assert _load("gpu_check").main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert capsys.readouterr().out.startswith("Machine: ")
    for title in GPU_CHECK_TITLES:
        assert title in text, title
    rows = [line for line in text.splitlines() if line.startswith("| efficientnet_lite0")]
    assert len(rows) == 1 + 1 + 4 + 5  # first frame, steady, busy (4), variants (5)
    assert all("skipped" not in row and "error" not in row for row in rows)
    cli = next(line for line in text.splitlines() if line.startswith("| 160x96"))
    assert cli.split("|")[2].strip() == "3"  # the command line dreamed the 3-frame clip made for it
    assert "| ours: seed |" in text


def test_gpu_check_skips_what_its_time_budget_cannot_fit(tmp_path, capsys):
    out = tmp_path / "gpu_check.md"
    assert _load("gpu_check").main(["--quick", "--budget", "0", "--out", str(out)]) == 0
    text = out.read_text()
    for name in ("tests", "first", "steady", "busy", "cli", "variants", "original"):
        assert f"### {name}: skipped, over the time budget (run it alone with --sections {name})" in text


def test_gpu_check_first_frame_runs_in_a_fresh_process():
    """Section "first" on the GPU: a child process per model reports its timings as one JSON line."""
    parts = _load("_gpu_parts")
    r = parts.first_frame_child("efficientnet_lite0", (64, 96), BENCH / "no-clip.mp4", "cpu", True, 600)
    assert "error" not in r, r
    for key in ("load_s", "first_s", "CUDA graphs off", "fast path off", "warm-up while decoding"):
        assert r[key] > 0, key


FAKE_ORIGINAL = """
import argparse, pathlib, shutil
p = argparse.ArgumentParser()
for flag in ("-video_mode", "-start_idx", "-end_idx", "-image_size", "-num_iterations", "-octave_iter",
             "-num_octaves", "-save_iter", "-print_iter"):
    p.add_argument(flag, type=int)
for flag in ("-in_dir", "-out_dir", "-gpu", "-backend", "-model_file", "-octave_scale"):
    p.add_argument(flag)
a = p.parse_args()
assert a.video_mode == 1 and pathlib.Path(a.model_file).is_file()
for i in range(a.start_idx, a.end_idx):
    shutil.copy(f"{a.in_dir}/frame{i}.png", f"{a.out_dir}/frame{i}.png")
"""


def test_gpu_check_runs_the_original_tools_video_mode_on_its_frame_files(tmp_path):
    """The original tool's own code is run the way its neural_dream_video.py reads its arguments and frames
    (a stand-in script with the same flags here; the real one is given on the GPU machine)."""
    import numpy as np

    code = tmp_path / "neural-dream"
    code.mkdir()
    (code / "neural_dream_video.py").write_text(FAKE_ORIGINAL)
    model_file = tmp_path / "bvlc_googlenet.pth"
    model_file.write_bytes(b"weights")
    parts = _load("_gpu_parts")
    frames = [np.full((18, 32, 3), i * 40, dtype=np.uint8) for i in range(3)]
    r = parts.original_tool(code, model_file, frames, tmp_path / "work", torch.device("cpu"), parts.ORIGINAL_ARGS, 120)
    assert r["rc"] == 0 and r["error"] is None, r
    assert r["frames"] == 3 and r["wall_s"] > 0
