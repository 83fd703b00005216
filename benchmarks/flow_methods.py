"""Compare the optical-flow methods of dream_core.flow on a real clip.

For each method and frame size it measures, over consecutive frame pairs:

* seconds per flow field (min and median over pairs of half the time of one
  forward+backward pair; ``compute_flows`` computes both directions when the
  forward-backward check is on),
* the photometric warp error ``mean |frame_t - warp(frame_{t-1}, bw_t)|`` (RGB
  0..1, channel mean) on the pixels the method's own reliability mask keeps,
  and on every pixel whose source lies inside the frame (the masked number
  alone would flatter a method that rejects many pixels),
* the reliable fraction.

A "none" row (zero flow) gives the error with no motion compensation (its
mask is trivially all reliable). RAFT is
timed with random weights (no weights offline): its accuracy columns read n/a
unless ``--raft-weights DIR`` holds ``raft_small.pth``/``raft_large.pth``.

Usage::

    .venv/bin/python benchmarks/flow_methods.py [--frames 30] [--sizes 640x360,1280x720]

Result on balcony_view.mp4, 30 frames, 2-core CPU shared with other jobs (so
the medians are noisy; compare the mins), no RAFT weights offline::

    640x360, 29 pairs (RAFT: 2)
    | method | s/flow min | s/flow median | warp err (reliable) | warp err (inside) | reliable |
    | none (zero flow) | 0.000 | 0.000 | 0.0895 | 0.0895 | 100.0% |
    | dis ultrafast | 0.005 | 0.008 | 0.0118 | 0.0115 | 92.2% |
    | dis fast | 0.006 | 0.011 | 0.0111 | 0.0109 | 94.2% |
    | dis medium | 0.020 | 0.025 | 0.0097 | 0.0093 | 91.1% |
    | farneback | 0.042 | 0.046 | 0.0099 | 0.0103 | 93.8% |
    | raft_small (random) | 0.710 | 0.720 | n/a | n/a | n/a |
    | raft_large (random) | 10.235 | 11.032 | n/a | n/a | n/a |

    1280x720, 29 pairs (RAFT: 2)
    | none (zero flow) | 0.000 | 0.000 | 0.1010 | 0.1010 | 100.0% |
    | dis ultrafast | 0.070 | 0.264 | 0.0125 | 0.0118 | 89.0% |
    | dis fast | 0.042 | 0.142 | 0.0115 | 0.0110 | 90.9% |
    | dis medium | 0.116 | 0.216 | 0.0098 | 0.0093 | 89.1% |
    | farneback | 0.178 | 0.320 | 0.0181 | 0.0269 | 81.0% |
    | dis medium @640 | 0.083 | 0.216 | 0.0111 | 0.0107 | 91.5% |
    | farneback @640 | 0.104 | 0.339 | 0.0107 | 0.0111 | 94.2% |
    | raft_small (random) | 25.180 | 25.914 | n/a | n/a | n/a |
    | raft_large (random) | 49.515 | 50.406 | n/a | n/a | n/a |

Conclusion (``DEFAULT_FLOW_METHOD`` in dream_core/flow/estimate.py): DIS with the
MEDIUM preset: lowest error at both sizes, about twice as fast as Farneback.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dream_core.flow import FlowEstimator, reliability_mask  # noqa: E402
from dream_core.flow.warp import inside_mask, warp  # noqa: E402

log = logging.getLogger("flow_methods")

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "balcony_view.mp4"


def decode(path: Path, count: int) -> torch.Tensor:
    """First ``count`` frames of ``path`` as RGB ``[N,3,H,W]`` float 0..1 (PyAV)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(torch.from_numpy(rgb).permute(2, 0, 1))
            if len(frames) == count:
                break
    return torch.stack(frames).float().div_(255.0)


def resize(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    return F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def masked_error(cur: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> float:
    diff = (cur - warped).abs().mean(dim=1)[0]
    return float((diff * mask).sum() / mask.sum().clamp_min(1.0))


def run(name: str, est: FlowEstimator | None, frames: torch.Tensor, pairs: int, accuracy: bool) -> dict[str, float | str]:
    times: list[float] = []
    err_rel = err_inside = frac = 0.0
    for t in range(1, pairs + 1):
        prev, cur = frames[t - 1 : t], frames[t : t + 1]
        if est is None:
            bw = torch.zeros(*cur.shape[-2:], 2)
            fw = bw
        else:
            start = time.perf_counter()
            bw, fw = est.bidirectional(prev, cur)
            times.append((time.perf_counter() - start) / 2.0)
        rel = reliability_mask(bw, fw)
        warped = warp(prev, bw, padding_mode="border")
        err_rel += masked_error(cur, warped, rel)
        err_inside += masked_error(cur, warped, inside_mask(bw))
        frac += float(rel.mean())
    # Min and median, not mean: other processes sharing the CPU inflate some
    # pairs; the min is the best estimate of the uncontended cost.
    row: dict[str, float | str] = {
        "method": name,
        "s_min": min(times) if times else 0.0,
        "s_median": statistics.median(times) if times else 0.0,
    }
    if accuracy:
        row.update(err_reliable=err_rel / pairs, err_inside=err_inside / pairs, reliable=frac / pairs)
    else:
        row.update(err_reliable="n/a", err_inside="n/a", reliable="n/a")
    return row


def fmt(value: float | str, spec: str) -> str:
    return value if isinstance(value, str) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--raft-pairs", type=int, default=2, help="pairs timed for RAFT (slow on CPU)")
    parser.add_argument("--raft-weights", type=Path, default=None, help="folder with raft_small.pth / raft_large.pth")
    parser.add_argument("--skip-raft", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.clip.is_file():
        log.error("clip not found: %s", args.clip)
        raise SystemExit(1)
    clip = decode(args.clip, args.frames)
    log.info(
        "clip %s: %d frames of %dx%d; torch threads %d; load average %s",
        args.clip.name, clip.shape[0], clip.shape[-1], clip.shape[-2], torch.get_num_threads(),
        " ".join(f"{x:.1f}" for x in os.getloadavg()),
    )
    pairs = clip.shape[0] - 1
    for size in args.sizes.split(","):
        width, height = (int(x) for x in size.lower().split("x"))
        frames = resize(clip, width, height)
        configs: list[tuple[str, FlowEstimator | None, int, bool]] = [
            ("none (zero flow)", None, pairs, True),
            ("dis ultrafast", FlowEstimator("dis", dis_preset="ultrafast"), pairs, True),
            ("dis fast", FlowEstimator("dis", dis_preset="fast"), pairs, True),
            ("dis medium", FlowEstimator("dis", dis_preset="medium"), pairs, True),
            ("farneback", FlowEstimator("farneback"), pairs, True),
        ]
        if width > 640:
            configs.append(("dis medium @640", FlowEstimator("dis", dis_preset="medium", max_side=640), pairs, True))
            configs.append(("farneback @640", FlowEstimator("farneback", max_side=640), pairs, True))
        if not args.skip_raft:
            from torchvision.models import optical_flow as tvof

            for arch in ("raft_small", "raft_large"):
                path = args.raft_weights / f"{arch}.pth" if args.raft_weights else None
                if path is not None and path.is_file():
                    configs.append((arch, FlowEstimator(arch, weights=path), args.raft_pairs, True))
                else:
                    torch.manual_seed(0)
                    net = getattr(tvof, arch)(weights=None)
                    configs.append((f"{arch} (random)", FlowEstimator(arch, raft_model=net), args.raft_pairs, False))
        rows = []
        for name, est, n, accuracy in configs:
            if est is not None:
                est.bidirectional(frames[:1], frames[1:2])  # warm-up (allocations, RAFT kernels), not timed
            rows.append(run(name, est, frames, min(n, pairs), accuracy))
            log.info("  done %s at %dx%d", name, width, height)
        log.info("")
        log.info("%dx%d, %d pairs (RAFT: %d)", width, height, pairs, min(args.raft_pairs, pairs))
        log.info("| method | s/flow min | s/flow median | warp err (reliable) | warp err (inside) | reliable |")
        log.info("|---|---|---|---|---|---|")
        for r in rows:
            log.info(
                "| %s | %s | %s | %s | %s | %s |",
                r["method"], fmt(r["s_min"], ".3f"), fmt(r["s_median"], ".3f"), fmt(r["err_reliable"], ".4f"),
                fmt(r["err_inside"], ".4f"), fmt(r["reliable"], ".1%"),
            )
        log.info("")


if __name__ == "__main__":
    main()
