"""Flicker of the three video modes on a real clip: excess warp error vs dream strength.

Run from the repository root::

    python benchmarks/video_stability.py [--clip ../shared/data/balcony_view.mp4] [--frames 24] [--max-side 480]

Prints one table row per mode: excess flicker, dream strength, their ratio, and
seconds per frame (dreaming only; flow is computed once and shared). Optional
``--save DIR`` writes each mode's frames as PNG strips for looking at.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dream_core import DreamSettings, load_model  # noqa: E402
from dream_core.flow import FlowEstimator, compute_flows  # noqa: E402
from dream_core.image_io import from_uint8_hwc  # noqa: E402
from dream_core.image_ops import fit_max_side  # noqa: E402
from dream_core.stability import stability_metrics  # noqa: E402
from dream_core.video import read_frames  # noqa: E402
from dream_core.clip import VIDEO_MODES, VideoSettings, dream_frames


def load_clip(path: str, frames: int, max_side: int) -> torch.Tensor:
    """First ``frames`` frames of ``path`` as ``[N,3,h,w]`` in 0..1, longer side ``max_side``."""
    return torch.cat([fit_max_side(from_uint8_hwc(arr), max_side, multiple=2) for arr in read_frames(path, 0, frames)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", default=str(Path(__file__).resolve().parents[2] / "shared/data/balcony_view.mp4"))
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--modes", default=",".join(VIDEO_MODES))
    p.add_argument("--flow", default="dis")
    p.add_argument("--carry", type=float, default=VideoSettings().carry)
    p.add_argument("--temporal-weight", type=float, default=VideoSettings().temporal_weight)
    p.add_argument("--later-iterations", type=float, default=VideoSettings().later_iterations)
    p.add_argument("--iterations", type=int, default=DreamSettings().num_iterations)
    p.add_argument("--octaves", type=int, default=DreamSettings().num_octaves)
    p.add_argument("--lr", type=float, default=DreamSettings().learning_rate)
    p.add_argument("--save", default=None, help="folder for per-mode frame strips (PNG)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    clip = load_clip(args.clip, args.frames, args.max_side)
    n, _, h, w = clip.shape
    t0 = time.perf_counter()
    flows = compute_flows(clip, estimator=FlowEstimator(args.flow))
    flow_s = (time.perf_counter() - t0) / max(1, n - 1)
    model = load_model()
    settings = DreamSettings(num_iterations=args.iterations, num_octaves=args.octaves, learning_rate=args.lr)
    rows = []
    outputs = {}
    for mode in args.modes.split(","):
        video = VideoSettings(mode=mode, carry=args.carry, temporal_weight=args.temporal_weight,
                              later_iterations=args.later_iterations)
        t0 = time.perf_counter()
        out = torch.cat([f.cpu() for f in dream_frames(model, clip, None, settings, video, flows=flows)])
        sec = (time.perf_counter() - t0) / n
        m = stability_metrics(clip, out, flows=flows)
        rows.append((mode, m.warp_err_in, m.warp_err_out, m.excess_flicker, m.strength, m.ratio, sec))
        outputs[mode] = out
    print(f"\nclip {Path(args.clip).name}: {n} frames at {w}x{h}; flow {args.flow} {flow_s:.2f} s/pair; "
          f"reliable {flows.reliable.mean():.1%}; dream: {settings}")
    print(f"video: carry={args.carry} temporal_weight={args.temporal_weight} later_iterations={args.later_iterations}\n")
    print("| mode | warp err in | warp err out | excess | strength | excess/strength | s/frame |")
    print("|---|---|---|---|---|---|---|")
    indep = next((r[4] for r in rows if r[0] == "independent"), None)
    for mode, wi, wo, ex, st, ratio, sec in rows:
        rel = f" ({st / indep:.2f}x indep.)" if indep else ""
        print(f"| {mode} | {wi:.4f} | {wo:.4f} | {ex:.4f} | {st:.4f}{rel} | {ratio:.3f} | {sec:.2f} |")
    if args.save:
        from dream_core.image_io import save_image

        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        for mode, out in outputs.items():
            for t in range(0, n, max(1, n // 6)):
                save_image(torch.cat([clip[t:t + 1], out[t:t + 1]], dim=3), folder / f"{mode}_{t:03d}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
