"""Animation controls: speed and stability of cadence, memory of a long zoom animation.

Run from the repository root::

    python benchmarks/animation.py cadence [--frames 64] [--max-side 480] [--cadences 1,2,3,4]
    python benchmarks/animation.py zoom-memory [--frames 300] [--size 512]

``cadence`` dreams the shared clip with the command line as users run it
(``video --cadence N``, default settings otherwise) and measures each encoded
.mp4 against the input (:func:`dream_core.stability.stability_metrics`): seconds
per frame (whole command, so model load and flow are included), excess flicker,
strength and their ratio, each against cadence 1.

``zoom-memory`` runs ``animate`` for a short and a long animation of a square
start image and reports each command's peak RSS: frames stream from the loop to
the writer, so the long one should need no more memory than the short one.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import REPO, add_common_args, apply_malloc, machine_line, pick_device, table  # noqa: E402

CLIP = REPO.parent / "shared" / "data" / "balcony_view.mp4"
PHOTO = REPO.parent / "shared" / "data" / "golden_gate.jpg"


def _cli(args: Sequence[str]) -> tuple[float, float]:
    """Run ``python -m dream_core ARGS``; return (wall seconds, that process's peak RSS in MiB)."""
    import os

    with tempfile.TemporaryFile() as log:  # a file, not a pipe: progress bars would fill a pipe and block
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "dream_core", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"dream_core {' '.join(args)} failed:\n{log.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def cadence(args: argparse.Namespace) -> None:
    from look import _decoded

    from dream_core.stability import stability_metrics

    frames, max_side = (4, 96) if args.quick else (args.frames, args.max_side)
    cadences = [1, 2] if args.quick else [int(c) for c in args.cadences.split(",")]
    extra = ["--octaves", "2", "--iterations", "2"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    inputs = _decoded(CLIP, frames, max_side)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cadence-") as tmp:
        for n in cadences:
            out = Path(tmp) / f"cadence{n}.mp4"
            wall, _ = _cli(["video", str(CLIP), str(out), "--end", str(frames), "--max-side", str(max_side),
                            "--cadence", str(n), "--no-resume", *threads, *extra])
            m = stability_metrics(inputs, _decoded(out, frames, 0), method="dis")
            rows.append((n, wall / frames, m.excess_flicker, m.strength, m.ratio))
    base = rows[0]
    h, w = inputs[0].shape[-2:]
    print(table(("cadence", "s/frame", "vs cadence 1", "excess flicker", "strength", "excess / strength",
                 "ratio vs cadence 1"),
                [(n, f"{s:.2f}", f"{s / base[1]:.2f}x", f"{e:.4f}", f"{st:.4f}", f"{r:.3f}", f"{r / base[4]:.2f}x")
                 for n, s, e, st, r in rows],
                title=f"cadence: {CLIP.name}, {frames} frames at {w}x{h}, stable mode, defaults, encoded .mp4"))


def zoom_memory(args: argparse.Namespace) -> None:
    from PIL import Image

    counts = [3, 12] if args.quick else [args.frames // 10, args.frames]
    size = 96 if args.quick else args.size
    extra = ["--octaves", "2", "--iterations", "2"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-zoom-") as tmp:
        start = Path(tmp) / "start.png"
        with Image.open(PHOTO) as im:
            side = min(im.size)
            im.crop((0, 0, side, side)).resize((size, size), Image.LANCZOS).save(start)
        for n in counts:
            out = Path(tmp) / f"zoom{n}.mp4"
            wall, peak = _cli(["animate", str(start), str(out), "--frames", str(n), "--zoom", "1.02", "--rotate",
                               "0.5", "--no-resume", *threads, *extra])
            rows.append((n, f"{wall:.1f}", f"{wall / n:.2f}", f"{peak:.0f}"))
    print(table(("frames", "s", "s/frame", "peak RSS MiB"), rows,
                title=f"zoom animation of a {size}x{size} image (animate --zoom 1.02 --rotate 0.5, defaults)"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("what", nargs="?", choices=("cadence", "zoom-memory"), default="cadence")
    p.add_argument("--frames", type=int, default=64, help="cadence: clip frames; zoom-memory: the long animation")
    p.add_argument("--max-side", type=int, default=480, help="cadence: the CLI's --max-side")
    p.add_argument("--cadences", default="1,2,3,4")
    p.add_argument("--size", type=int, default=512, help="zoom-memory: side of the square start image")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    apply_malloc(args.default_malloc)
    print(machine_line(pick_device(args.device)))
    if not CLIP.is_file() or not PHOTO.is_file():
        raise SystemExit(f"The shared clip and photos live in {CLIP.parent}.")
    (cadence if args.what == "cadence" else zoom_memory)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
