"""Peak memory of video dreaming versus clip length and resolution, and of a tiled 4K frame.

Run from the repository root::

    python benchmarks/memory.py [--sizes 480p,720p] [--frames 2,6,12] [--model efficientnet_lite0]

Each measurement runs in a fresh child process, so its peak resident set size
(``VmHWM`` from ``/proc/self/status``, Linux) belongs to that run alone; on
CUDA the child also reports ``torch.cuda.max_memory_allocated``.

* CLI: ``python -m dream_core video CLIP OUT --end N`` (streaming: decode,
  flow, dream, encode one frame at a time) for each size and frame count. The
  dream settings are the defaults except ``--iterations`` (1 by default: peak
  memory does not depend on the iteration count, only on the octave sizes), so
  a row takes seconds per frame rather than minutes. Models without offline
  weights get a random-init weights file written for the run.
* 4K: one 3840x2160 frame (the clip's first frame upscaled) dreamed with
  ``dream_image`` at several ``tile_size`` values (one octave, one iteration by
  default): peak RSS and time. ``--untiled`` adds a run with tiling off (needs
  several GB).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402

_MARK = "MEMORY-BENCH-RESULT "


def _report(extra: dict[str, object]) -> None:
    out = {"peak_rss_mb": B.peak_rss_mb(), **extra}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(_MARK + json.dumps(out), flush=True)


def child_cli(cli_args: list[str], default_malloc: bool = False) -> int:
    """Run the CLI in this process, then report its peak memory.

    ``default_malloc`` stubs out the CLI's :func:`~dream_core.allocator.keep_freed_memory` call.
    """
    import dream_core.allocator
    from dream_core.cli import main as cli_main

    if default_malloc:
        dream_core.allocator.keep_freed_memory = lambda: False  # type: ignore[assignment]

    t0 = time.perf_counter()
    rc = cli_main(cli_args)
    _report({"seconds": time.perf_counter() - t0, "rc": rc})
    return rc


def child_4k(model_name: str, tile: int, octaves: int, iterations: int, device_name: Optional[str]) -> int:
    from dream_core.dream import DreamSettings, dream_image

    device = B.pick_device(device_name)
    model = B.bench_model(model_name, device)
    frame = B.clip_frames(1, B.SIZES["4k"])[0]
    settings = DreamSettings(num_octaves=octaves, num_iterations=iterations, tile_size=tile)
    base = B.rss_mb()
    t0 = time.perf_counter()
    out = dream_image(model, frame.to(device), None, settings)
    B.sync(device)
    _report({"seconds": time.perf_counter() - t0, "rss_before_mb": base, "finite": bool(torch.isfinite(out).all())})
    return 0


def run_child(args: list[str], env: dict[str, str]) -> dict[str, object]:
    cmd = [sys.executable, str(Path(__file__).resolve())] + args
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            result = json.loads(line[len(_MARK):])
            if result.get("rc", 0) != 0:
                raise RuntimeError(f"child run failed ({result['rc']}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
            return result
    raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def weights_file(model_name: str, folder: Path) -> Optional[Path]:
    """A random-init state dict for models without offline weights (the CLI needs a file)."""
    from dream_core.models import get_spec

    spec = get_spec(model_name)
    if spec.offline:
        return None
    path = folder / f"{model_name}_random.pth"
    torch.manual_seed(0)
    torch.save(spec.build().state_dict(), path)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, default=B.CLIP)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--sizes", default="480p,720p", help="CLI runs: frame sizes (longer side passed as --max-side)")
    p.add_argument("--frames", default="2,6,12", help="CLI runs: clip lengths (frames)")
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--octaves", type=int, default=None, help="CLI runs: octaves (default: the CLI's)")
    p.add_argument("--tiles", default="512,1024,2048", help="4K runs: tile sizes")
    p.add_argument("--untiled", action="store_true", help="4K: also run with tiling off (several GB)")
    p.add_argument("--no-cli", action="store_true")
    p.add_argument("--no-4k", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--default-malloc", action="store_true",
                   help="CLI runs: skip the CLI's glibc malloc tuning (dream_core.allocator.keep_freed_memory)")
    p.add_argument("--child-cli", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument("--child-4k", nargs=3, type=int, metavar=("TILE", "OCTAVES", "ITERATIONS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.frames, args.no_4k, args.threads, args.octaves = "128x72", "2", True, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_cli is not None:
        return child_cli(args.child_cli, args.default_malloc)
    if args.child_4k is not None:
        logging.basicConfig(level=logging.WARNING)
        return child_4k(args.model, *args.child_4k, args.device)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(B.REPO), env.get("PYTHONPATH", "")])
    common = (["--threads", str(args.threads)] if args.threads else []) + (["--device", args.device] if args.device else [])
    common += ["--default-malloc"] if args.default_malloc else []
    device = B.pick_device(args.device)
    print(B.machine_line(device))
    if not args.no_cli:
        rows = []
        with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp_name:
            tmp = Path(tmp_name)
            clip = args.clip
            if not clip.is_file():  # CI: a synthetic clip stands in
                from dream_core.cli.demo import make_demo_clip

                clip = tmp / "synthetic.mp4"
                make_demo_clip(clip, frames=max(int(n) for n in args.frames.split(",")) + 1)
            weights = weights_file(args.model, tmp)
            for size_text in args.sizes.split(","):
                h, w = B.parse_size(size_text.strip())
                for n in (int(x) for x in args.frames.split(",")):
                    out = tmp / f"out_{w}_{n}.mp4"
                    cli = ["video", str(clip), str(out), "--end", str(n), "--max-side", str(max(h, w)),
                           "--model", args.model, "--iterations", str(args.iterations), "--no-resume", "--no-audio"]
                    cli += ["--weights", str(weights)] if weights else []
                    cli += ["--octaves", str(args.octaves)] if args.octaves else []
                    cli += ["--device", args.device] if args.device else []
                    r = run_child(common + ["--child-cli"] + cli, env)
                    rows.append([B.size_name((h, w)), str(n), f"{r['peak_rss_mb']:.0f}",
                                 f"{r['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in r else "-",
                                 f"{float(r['seconds']) / n:.2f}", str(r["rc"])])
        print(B.table(["size", "frames", "peak RSS MiB", "peak CUDA MiB", "s/frame", "exit code"], rows,
                      f"python -m dream_core video: peak memory vs clip length ({args.model}, default settings, "
                      f"{args.iterations} iteration(s) per octave; malloc "
                      f"{'glibc default' if args.default_malloc else 'tuned by the CLI'})"))
    if not args.no_4k:
        rows = []
        tiles = [int(t) for t in args.tiles.split(",")] + ([8192] if args.untiled else [])
        for tile in tiles:
            r = run_child(common + ["--model", args.model, "--child-4k", str(tile), "1", "1"], env)
            rows.append(["off" if tile >= 3840 else str(tile), f"{r['rss_before_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
                         f"{r['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in r else "-", f"{float(r['seconds']):.1f}",
                         str(r["finite"])])
        print(B.table(["tile_size", "RSS before dream MiB", "peak RSS MiB", "peak CUDA MiB", "seconds", "finite output"],
                      rows, f"One 3840x2160 frame, {args.model}, 1 octave x 1 iteration, tiled with 64 px overlap"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
