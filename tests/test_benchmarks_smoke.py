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
# (tests/test_stream_node.py runs the node itself): --help only here.
QUICK = [name for name in SCRIPTS if name not in ("allocator", "distributed", "comfy_stream")]


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
