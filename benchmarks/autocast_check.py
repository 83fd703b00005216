"""Mixed precision (bf16 on CPU, fp16/bf16 on CUDA): speed and what it does to the picture.

Run from the repository root::

    python benchmarks/autocast_check.py [--models efficientnet_lite0,googlenet] [--size 480p] [--save DIR]

Dreams the clip's first frame with the same seed in fp32 and under autocast
(interleaved, median of ``--repeats``), then compares the results: mean
absolute difference in 0..255 levels, the same relative to how far the fp32
dream moved the image from its input, and PSNR between the two.

A dream is chaotic: tiny differences early on move where patterns grow. Two
references tell numerical error from that: the difference after a *single*
step (1 octave, 1 iteration), and "fp32, input +-0.5 level": an fp32 dream of
the frame with uniform noise below one 8-bit level added, i.e. what any
re-encode of the input would do. ``--save`` writes ``<model>_<dtype>.png``:
fp32 | autocast | 4x amplified difference.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402

from dream_core.dream import DreamSettings, dream_image  # noqa: E402
from dream_core.image_io import save_image  # noqa: E402


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="efficientnet_lite0,googlenet")
    p.add_argument("--size", default="480p")
    p.add_argument("--octaves", type=int, default=DreamSettings().num_octaves)
    p.add_argument("--iterations", type=int, default=DreamSettings().num_iterations)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--dtypes", default=None, help="autocast dtypes to compare with fp32 (default: bf16 on CPU, fp16,bf16 on CUDA)")
    p.add_argument("--save", type=Path, default=None, help="folder for side-by-side PNGs")
    B.add_common_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.models, args.size, args.octaves, args.iterations, args.threads = "efficientnet_lite0", "128x72", 1, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    device = B.pick_device(args.device)
    dtypes = (args.dtypes or ("fp16,bf16" if device.type == "cuda" else "bf16")).split(",")
    size = B.parse_size(args.size)
    frame = B.clip_frames(1, size)[0].to(device)
    print(B.machine_line(device))
    rows = []
    for name in args.models.split(","):
        model = B.bench_model(name.strip(), device)
        base = DreamSettings(num_octaves=args.octaves, num_iterations=args.iterations)
        dream_image(model, frame[..., :96, :96], None, base.with_(num_octaves=1, num_iterations=1))  # warm-up
        outs: dict[str, torch.Tensor] = {}

        def run(dt: str):
            def f() -> None:
                outs[dt] = dream_image(model, frame, None, base.with_(autocast=dt))
            return f

        samples = B.interleaved({dt: run(dt) for dt in ["none", *dtypes]}, args.repeats, device, warmup=0)
        ref = outs["none"]
        g = torch.Generator().manual_seed(1)
        noisy = (frame + (torch.rand(frame.shape, generator=g).to(device) - 0.5) / 255).clamp(0, 1)
        reference = dream_image(model, noisy, None, base)
        one = base.with_(num_octaves=1, num_iterations=1)
        one_ref = dream_image(model, frame, None, one)
        one_strength = (one_ref - frame).abs().mean().item()
        strength = (ref - frame).abs().mean().item() * 255
        threads = 1 if device.type == "cuda" else torch.get_num_threads()
        for dt in [*dtypes, "fp32, input +-0.5 level"]:
            other = reference if dt.startswith("fp32") else outs[dt]
            diff = (other - ref).abs()
            if dt.startswith("fp32"):
                one_diff = "-"
                times = ["-", "-", "-"]
            else:
                one_out = dream_image(model, frame, None, one.with_(autocast=dt))
                one_diff = f"{(one_out - one_ref).abs().mean().item() / max(one_strength, 1e-12):.1%}"
                times = [f"{B.med_wall(samples['none']):.1f} / {B.med_cpu(samples['none']) / threads:.1f}",
                         f"{B.med_wall(samples[dt]):.1f} / {B.med_cpu(samples[dt]) / threads:.1f}",
                         f"{B.med_wall(samples['none']) / B.med_wall(samples[dt]):.2f}x / "
                         f"{B.med_cpu(samples['none']) / B.med_cpu(samples[dt]):.2f}x"]
            mse = (diff**2).mean().item()
            psnr = 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
            rows.append([model.name, B.size_name(size), dt, *times, one_diff,
                         f"{diff.mean().item() * 255:.2f}", f"{strength:.2f}",
                         f"{diff.mean().item() * 255 / max(strength, 1e-9):.0%}", f"{psnr:.1f}"])
            if args.save is not None and not dt.startswith("fp32"):
                args.save.mkdir(parents=True, exist_ok=True)
                strip = torch.cat([ref, outs[dt], (diff * 4).clamp(0, 1)], dim=-1)
                save_image(strip.cpu(), args.save / f"{model.name}_{dt}.png")
    print(B.table(["model", "size", "compared with fp32", "fp32 s (wall / CPU)", "autocast s (wall / CPU)",
                   "speed-up (wall / CPU)", "one step: abs diff / abs step", "mean abs diff (0..255)", "fp32 dream strength, mean abs(out - in) (0..255)", "diff / strength", "PSNR dB"], rows,
                  f"Autocast vs fp32: whole dream_image, {args.octaves} octaves x {args.iterations} iterations, same seed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
