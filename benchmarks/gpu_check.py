"""The prepared GPU check: CUDA-marked tests, then seconds per 720p frame through the one frame loop.

One command, a few minutes on a single GPU (an H200 is expected to take well under five)::

    python benchmarks/gpu_check.py                 # tests + fp32/fp16/bf16 x three model families at 720p
    python benchmarks/gpu_check.py --no-tests      # the timings only

1. ``pytest -m cuda`` (the tests marked ``cuda``, skipped on machines without a GPU):
   the loop on CUDA matches the CPU and keeps its tensors on the device, autocast
   fp16/bf16 dreams stay finite, execution copies match on CUDA, warps stay on the device.
2. For EfficientNet-Lite0 (packaged weights), torchvision GoogLeNet and BVLC GoogLeNet
   (random weights: speed does not depend on their values), in fp32 and under
   fp16 and bf16 autocast: ``--frames`` frames of the balcony clip (a synthetic pan
   without it) at 1280x720 through :func:`dream_core.pipeline.render_range` in the
   default ``stable`` mode with DIS flow, default dream settings. Printed per row:
   the first frame (full iterations), later frames (mean; ``later_iterations``),
   and the peak CUDA memory.

Timings synchronise the device; the first frame of the first row also pays for
kernel selection, so a warm-up dream runs before the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402

from dream_core.dream import DreamSettings, dream_image  # noqa: E402
from dream_core.flow import FlowEstimator  # noqa: E402
from dream_core.clip import FrameDreamer, VideoSettings  # noqa: E402
from dream_core.pipeline import IndexedFrames, render_range  # noqa: E402

MODELS = "efficientnet_lite0,googlenet,bvlc_googlenet"
PRECISIONS = ("none", "fp16", "bf16")


def run_tests(device: torch.device) -> int:
    """``pytest -m cuda`` in a child process; its exit status."""
    if device.type != "cuda":
        print("CUDA-marked tests: skipped (no CUDA device)")
        return 0
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], cwd=root)
    print(f"CUDA-marked tests: exit status {proc.returncode}")
    return proc.returncode


class _Dropped:
    """A sink that keeps nothing (the frames are only timed)."""

    background = False

    def write(self, done) -> None:  # type: ignore[no-untyped-def]
        pass


def seconds_per_frame(model, frames: list[torch.Tensor], settings: DreamSettings) -> tuple[float, float]:
    """(first frame, mean of later frames) in seconds, through the one pipeline (render_range) with DIS flow
    estimated on its flow thread while the GPU dreams."""
    device = model.device
    times: list[float] = []
    clock = [0.0]

    def on_frame(done) -> None:  # type: ignore[no-untyped-def]
        B.sync(device)
        t1 = time.perf_counter()
        times.append(t1 - clock[0])
        clock[0] = t1

    source = IndexedFrames(range(len(frames)), ((i, f.to(device)) for i, f in enumerate(frames)), background=True)
    with FrameDreamer(model, None, settings, VideoSettings()) as dreamer:
        B.sync(device)
        clock[0] = time.perf_counter()
        render_range(source, dreamer, FlowEstimator("dis"), _Dropped(), on_frame=on_frame)
    later = times[1:] or times
    return times[0], sum(later) / len(later)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=MODELS, help="comma-separated registered models")
    p.add_argument("--size", default="720p", help="frame size: 240p..4k or WxH")
    p.add_argument("--frames", type=int, default=3, help="frames per row (the first is reported apart)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="autocast modes: none (fp32), fp16, bf16")
    p.add_argument("--no-tests", action="store_true", help="skip the CUDA-marked tests")
    B.add_common_args(p)
    args = p.parse_args(argv)
    if args.quick:  # CI smoke test on any machine: tiny frames, one iteration, no child pytest
        args.models, args.size, args.frames, args.precisions, args.no_tests = "efficientnet_lite0", "128x72", 2, "none", True
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    device = B.pick_device(args.device)
    print(B.machine_line(device))
    status = 0 if args.no_tests else run_tests(device)
    size = B.parse_size(args.size)
    frames = B.clip_frames(args.frames, size)
    settings = DreamSettings(num_iterations=1, num_octaves=2) if args.quick else DreamSettings()
    rows = []
    for name in args.models.split(","):
        model = B.bench_model(name.strip(), device)
        dream_image(model, frames[0][..., :96, :96].to(device), None, settings.with_(num_octaves=1, num_iterations=1))
        for precision in args.precisions.split(","):
            precision = precision.strip()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            first, later = seconds_per_frame(model, frames, settings.with_(autocast=precision))
            peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "-"
            rows.append([model.name, "fp32" if precision == "none" else precision, f"{first:.3f}", f"{later:.3f}", peak])
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(B.table(["model", "precision", "first frame s", "later frames s/frame", "peak CUDA MiB"], rows,
                  f"Seconds per {B.size_name(size)} frame through render_range (stable mode, DIS flow, "
                  f"{settings.num_octaves} octaves x {settings.num_iterations} iterations; later frames "
                  f"{round(settings.num_iterations * VideoSettings().later_iterations)}), {args.frames} frames"))
    return status


if __name__ == "__main__":
    sys.exit(main())
