"""``demo [OUT]``: make a short synthetic clip and dream it, so a newcomer needs no input file."""

from __future__ import annotations

import argparse
import logging
import tempfile
from fractions import Fraction
from pathlib import Path

import torch

from ..pipeline import OutputOptions, open_writer
from .args import HelpFormatter, add_dream_arguments
from .animation_args import add_animation_arguments
from .video import add_video_arguments, run_video

log = logging.getLogger("dream_core")


def make_demo_clip(path: Path, frames: int = 24, size: tuple[int, int] = (180, 320), fps: int = 24) -> None:
    """Write a synthetic clip: a colourful smooth texture panning under a moving disc.

    Deterministic, needs no input files; the pan and the disc give the flow
    something to track and an occlusion to handle.
    """
    h, w = size
    g = torch.Generator().manual_seed(7)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, h // 12, (w + 4 * frames) // 12, generator=g),
                                          size=(h, w + 4 * frames), mode="bicubic", align_corners=False)
    sky = torch.linspace(0.9, 0.3, h).view(1, 1, h, 1)
    scene = (0.55 * big + 0.45 * sky * torch.tensor([0.5, 0.7, 1.0]).view(1, 3, 1, 1)).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    writer = open_writer(path, Fraction(fps), OutputOptions(resume=False))
    with writer:
        for t in range(frames):
            frame = scene[..., 4 * t: 4 * t + w].clone()
            cx, cy = w * (0.2 + 0.6 * t / max(1, frames - 1)), h * 0.55
            disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < (h * 0.18) ** 2).float()
            frame = frame * (1 - disc) + disc * torch.tensor([0.95, 0.55, 0.2]).view(1, 3, 1, 1)
            writer.write(frame[0].permute(1, 2, 0).mul(255).round().byte().numpy())


def run_demo(args: argparse.Namespace) -> int:
    """Make a synthetic clip and dream it with the default model and mode."""
    with tempfile.TemporaryDirectory(prefix="dream-demo-") as tmp:
        clip = Path(tmp) / "demo_input.mp4"
        make_demo_clip(clip, frames=args.frames)
        log.info("Made a %d-frame synthetic clip; dreaming it into %s", args.frames, args.output)
        args.input = str(clip)
        return run_video(args)


def add_demo_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("demo", help="dream a synthetic clip made on the spot (no input needed)",
                       description="Make a short synthetic clip and dream it with the offline default model.",
                       formatter_class=HelpFormatter)
    p.add_argument("output", nargs="?", default="demo_dream.mp4", help="output video")
    p.add_argument("--frames", type=int, default=24, help="length of the synthetic clip")
    add_dream_arguments(p, schedules=True)
    add_video_arguments(p)
    add_animation_arguments(p, cadence=True, motion_help="drift of the carried dream over the scene")
    p.set_defaults(func=run_demo)
