"""``python -m dream_core video IN OUT`` and ``python -m dream_core demo OUT``.

Frames stream from the decoder through the dreamer into the encoder one at a
time (memory does not grow with clip length). Flow is computed on the fly
between consecutive raw frames at the dream resolution. Output is written in
committed segments next to ``OUT``; a run stopped half-way continues from the
last committed frame when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .dream import DreamSettings
from .video_dream import DEFAULT_VIDEO_MODE, VIDEO_MODES, VideoSettings

log = logging.getLogger("dream_core")

_V = VideoSettings()


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video")
    g.add_argument("--mode", choices=VIDEO_MODES, default=DEFAULT_VIDEO_MODE,
                   help="stable: flow-warped, decaying, occlusion-aware (default); seed: the original tool's rule; "
                        "independent: no flow (flickers)")
    g.add_argument("--carry", type=float, default=_V.carry, help="stable: share of the previous dream carried (0..1)")
    g.add_argument("--temporal-weight", type=float, default=_V.temporal_weight,
                   help="stable: per-step pull of reliable pixels to the warped previous dream (0..1)")
    g.add_argument("--later-iterations", type=float, default=_V.later_iterations,
                   help="stable: iterations on frames after the first, as a fraction")
    g.add_argument("--flow", default=None, help="flow method: dis (default), farneback, raft_small, raft_large")
    g.add_argument("--flow-weights", default=None, help="RAFT weights file (.pth)")
    g.add_argument("--start", type=int, default=0, help="first frame to dream (0-based)")
    g.add_argument("--end", type=int, default=None, help="stop before this frame (default: end of clip)")
    g.add_argument("--start-image", default=None, help="dreamed version of the first frame (e.g. from an earlier run)")
    g.add_argument("--crf", type=float, default=18, help="x264 quality, 0..51 (lower = better)")
    g.add_argument("--preset", default="medium", help="x264 preset")
    g.add_argument("--segment-frames", type=int, default=30,
                   help="frames per committed output segment (at most this many are redone after a crash)")
    g.add_argument("--no-resume", action="store_true", help="start over even if an unfinished run exists")
    g.add_argument("--no-audio", action="store_true", help="do not copy the audio track")


def _frame_tensor(arr: np.ndarray, size: Optional[tuple[int, int]], device: torch.device) -> torch.Tensor:
    from .image_ops import resize

    x = torch.from_numpy(arr).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    return resize(x, size) if size is not None else x


def _dream_size(width: int, height: int, max_side: Optional[int]) -> Optional[tuple[int, int]]:
    """(h, w) to dream at, even sides, or None to keep the source size."""
    if not max_side or max(width, height) <= max_side:
        return None
    f = max_side / max(width, height)
    return (max(2, round(height * f / 2) * 2), max(2, round(width * f / 2) * 2))


def run_video(args: argparse.Namespace) -> int:
    """Dream a video file to a video file (streaming, resumable)."""
    from .cli import pick_device, settings_from_args
    from .flow import DEFAULT_FLOW_METHOD, FlowEstimator, reliability_mask
    from .image_io import load_image, to_uint8_hwc
    from .models import DEFAULT_MODEL, load_model
    from .objectives import parse_objective
    from .video_dream import FrameDreamer
    from .video_io import VideoWriter, check_frame_count, check_output_writable, probe_video, read_frames
    from tqdm import tqdm

    settings = settings_from_args(args)
    settings.validate()
    video = VideoSettings(mode=args.mode, carry=args.carry, temporal_weight=args.temporal_weight,
                          later_iterations=args.later_iterations)
    video.validate()
    check_output_writable(args.output, args.input)
    info = probe_video(args.input)
    end = info.num_frames if args.end is None else min(args.end, info.num_frames)
    if not 0 <= args.start < end:
        from .errors import InvalidParameterError

        raise InvalidParameterError(
            f"Frame range {args.start}..{end} is empty; the clip has {info.num_frames} frames (0..{info.num_frames - 1})."
        )
    if video.needs_flow:
        check_frame_count(info, purpose=f"video mode '{video.mode}'")
    device = pick_device(args.device)
    model = load_model(args.model or DEFAULT_MODEL, weights=args.weights, device=device)
    objective = parse_objective(args.layers or model.spec.default_objective, model)
    size = _dream_size(info.width, info.height, args.max_side)
    from .dream import check_image_for_dream

    probe_h, probe_w = size or (info.height, info.width)
    check_image_for_dream(torch.zeros(1, 3, probe_h, probe_w), model, settings)
    estimator = FlowEstimator(args.flow or DEFAULT_FLOW_METHOD, weights=args.flow_weights) if video.needs_flow else None
    start_image = load_image(args.start_image) if args.start_image else None
    run_settings = {
        "model": model.name, "weights": str(args.weights), "objective": objective.to_string(),
        "dream": dataclasses.asdict(settings), "video": dataclasses.asdict(video), "end": end,
        "size": size, "flow": args.flow, "start_image": args.start_image,
    }
    writer = VideoWriter(args.output, info.frame_rate, source=args.input, start_frame=args.start,
                         settings=run_settings, crf=args.crf, preset=args.preset,
                         segment_frames=args.segment_frames, resume=not args.no_resume, audio=not args.no_audio)
    with writer, FrameDreamer(model, objective, settings, video, start_image=start_image) as dreamer:
        point = writer.resume_point()
        first = point.next_frame
        prev_raw: Optional[torch.Tensor] = None
        if point.frames_done and point.carry is not None:
            prev_raw = torch.from_numpy(point.carry["prev_raw"]).to(device)
            dreamer.restore(prev_raw, torch.from_numpy(point.carry["prev_dream"]).to(device))
            log.info("Resuming at frame %d (%d frames already done).", first, point.frames_done)
        bar = tqdm(total=end - args.start, initial=first - args.start, unit="frame", desc="dreaming video",
                   dynamic_ncols=True)
        t0 = time.perf_counter()
        for index, arr in enumerate(read_frames(args.input, first, end), start=first):
            raw = _frame_tensor(arr, size, device)
            bw = rel = None
            if prev_raw is not None and estimator is not None:
                bw, fw = estimator.bidirectional(prev_raw, raw)
                rel = reliability_mask(bw, fw)
            out = dreamer.dream_next(raw, bw, rel)
            # Device tensors: the writer copies them to the host only when it commits a segment.
            writer.write(to_uint8_hwc(out), carry={"prev_raw": raw, "prev_dream": out})
            prev_raw = raw
            bar.update(1)
        bar.close()
    log.info("Wrote %s: %d frames at %s fps in %.1f s", args.output, end - args.start,
             info.frame_rate, time.perf_counter() - t0)
    return 0


def make_demo_clip(path: Path, frames: int = 24, size: tuple[int, int] = (180, 320), fps: int = 24) -> None:
    """Write a synthetic clip: a colourful smooth texture panning under a moving disc.

    Deterministic, needs no input files; the pan and the disc give the flow
    something to track and an occlusion to handle.
    """
    from .video_io import VideoWriter

    h, w = size
    g = torch.Generator().manual_seed(7)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, h // 12, (w + 4 * frames) // 12, generator=g),
                                          size=(h, w + 4 * frames), mode="bicubic", align_corners=False)
    sky = torch.linspace(0.9, 0.3, h).view(1, 1, h, 1)
    scene = (0.55 * big + 0.45 * sky * torch.tensor([0.5, 0.7, 1.0]).view(1, 3, 1, 1)).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    writer = VideoWriter(path, Fraction(fps), resume=False)
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


def add_video_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from .cli import add_dream_arguments

    pv = sub.add_parser("video", help="dream a video file (flow-stable; keeps audio and frame rate)",
                        description="Dream a video file frame by frame with optical flow keeping the dream stable.")
    pv.add_argument("input", help="input video (mp4, mov, mkv, ...)")
    pv.add_argument("output", help="output video (.mp4, .mov, .mkv)")
    add_dream_arguments(pv)
    add_video_arguments(pv)
    pv.set_defaults(func=run_video)

    pd = sub.add_parser("demo", help="dream a synthetic clip made on the spot (no input needed)",
                        description="Make a short synthetic clip and dream it with the offline default model.")
    pd.add_argument("output", nargs="?", default="demo_dream.mp4", help="output video (default demo_dream.mp4)")
    pd.add_argument("--frames", type=int, default=24, help="length of the synthetic clip")
    add_dream_arguments(pd)
    add_video_arguments(pd)
    pd.set_defaults(func=run_demo)
