"""benchmarks/channel_picks.py (the README's strong vs weak strip) runs and writes its strip."""

import importlib.util
from pathlib import Path

from PIL import Image

from conftest import shared_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "channel_picks.py"


def test_quick_run_prints_each_picks_channels_and_writes_the_strip(tmp_path, capsys):
    shared_file("golden_gate.jpg")
    spec = importlib.util.spec_from_file_location("bench_channel_picks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "strip.jpg"
    assert module.main(["--quick", "--out", str(out), "--width", "120"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| block10_dw:")]
    assert [row.split(" | ")[0] for row in rows] == ["| block10_dw:strong4", "| block10_dw:avg4", "| block10_dw:weak4"]
    assert len({row.split(" | ")[1] for row in rows}) == 3  # three different channel sets
    assert Image.open(out).size[0] == 3 * 120
