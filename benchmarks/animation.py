"""Animation controls: speed and stability of cadence, memory of a long zoom animation.

Run from the repository root::

    python benchmarks/animation.py cadence [--frames 64] [--max-side 480] [--cadences 1,2,3,4]
    python benchmarks/animation.py zoom-memory [--frames 300] [--size 512]
    python benchmarks/animation.py colour [--frames 64] [--max-side 480] [--size 256]

``cadence`` dreams the shared clip with the command line as users run it
(``video --cadence N``, default settings otherwise) and measures each encoded
.mp4 against the input (:func:`dream_core.stability.stability_metrics`): seconds
per frame (whole command, so model load and flow are included; wall and CPU time of
the command alone, the ratios use CPU time) and the CPU time per frame that the
frames after the first quarter add (a run of a quarter of the frames subtracted:
start-up, model load and the first frame's full dream left out), excess flicker,
strength and their ratio, each against cadence 1.

``zoom-memory`` runs ``animate`` for a short and a long animation of a square
start image and reports each command's peak RSS: frames stream from the loop to
the writer, so the long one should need no more memory than the short one.

``colour`` measures colour drift with and without ``--colour-coherence``: a zoom
animation (each frame against the start image) and the clip (each frame against
its source frame), as the drift of the colour balance from the first frame's
(:func:`dream_core.colour.colour_balance`): colour cast (distance in a*b*),
brightness (L*) and contrast (spread of L*, as a ratio), at the last frame and
the worst frame; for the clip also the stability metrics, so a steadier colour is
not paid for with flicker.
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


def _cli(args: Sequence[str]) -> tuple[float, float, float]:
    """Run ``python -m dream_core ARGS``; return (wall seconds, CPU seconds, peak RSS in MiB) of that process.

    CPU seconds (user + system of the child alone) are what the ratios use: on a
    shared machine the wall time also counts the time other work held the cores.
    """
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
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def cadence(args: argparse.Namespace) -> None:
    from look import _decoded

    from dream_core.stability import stability_metrics

    frames, max_side = (4, 96) if args.quick else (args.frames, args.max_side)
    cadences = [1, 2] if args.quick else [int(c) for c in args.cadences.split(",")]
    extra = ["--octaves", "2", "--iterations", "2"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    inputs = _decoded(CLIP, frames, max_side)
    short = max(2, frames // 4)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cadence-") as tmp:
        for n in cadences:
            cpu_short = None
            for count in (short, frames):
                out = Path(tmp) / f"cadence{n}_{count}.mp4"
                wall, cpu, _ = _cli(["video", str(CLIP), str(out), "--end", str(count), "--max-side", str(max_side),
                                     "--cadence", str(n), "--no-resume", *threads, *extra])
                cpu_short = cpu if cpu_short is None else cpu_short
            m = stability_metrics(inputs, _decoded(out, frames, 0), method="dis")
            marginal = (cpu - cpu_short) / (frames - short)
            rows.append((n, wall / frames, cpu / frames, marginal, m.excess_flicker, m.strength, m.ratio))
    base = rows[0]
    h, w = inputs[0].shape[-2:]
    print(table(("cadence", "wall s/frame", "CPU s/frame", "CPU vs cadence 1",
                 f"CPU s/frame, frames {short}-{frames}", "vs cadence 1", "excess flicker", "strength",
                 "excess / strength", "ratio vs cadence 1"),
                [(n, f"{s:.2f}", f"{c:.2f}", f"{c / base[2]:.2f}x", f"{mc:.2f}", f"{mc / base[3]:.2f}x", f"{e:.4f}",
                  f"{st:.4f}", f"{r:.3f}", f"{r / base[6]:.2f}x")
                 for n, s, c, mc, e, st, r in rows],
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
            wall, _, peak = _cli(["animate", str(start), str(out), "--frames", str(n), "--zoom", "1.02", "--rotate",
                               "0.5", "--no-resume", *threads, *extra])
            rows.append((n, f"{wall:.1f}", f"{wall / n:.2f}", f"{peak:.0f}"))
    print(table(("frames", "s", "s/frame", "peak RSS MiB"), rows,
                title=f"zoom animation of a {size}x{size} image (animate --zoom 1.02 --rotate 0.5, defaults)"))


def _balance_drift(outputs: list, references: list) -> tuple[float, float, float, float]:
    """(worst cast drift, last cast drift, last brightness drift, last contrast ratio) of ``outputs``' balance
    relative to ``references``' (frame by frame), measured from frame 0's relation."""
    import torch

    from dream_core.colour import colour_balance

    offset = colour_balance(torch.cat(outputs)) - colour_balance(torch.cat(references))
    ratio = colour_balance(torch.cat(outputs))[:, 1] / colour_balance(torch.cat(references))[:, 1]
    drift = offset - offset[0]
    cast = torch.hypot(drift[:, 2], drift[:, 3])
    return cast.max().item(), cast[-1].item(), drift[-1, 0].item(), (ratio[-1] / ratio[0]).item()


def colour(args: argparse.Namespace) -> None:
    from look import _decoded
    from PIL import Image

    from dream_core.image_io import load_image
    from dream_core.stability import stability_metrics

    frames, max_side, size = (4, 96, 64) if args.quick else (args.frames, args.max_side, args.size)
    extra = ["--octaves", "2", "--iterations", "2"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    strengths = [float(c) for c in args.coherence.split(",")]
    anim_rows, clip_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-colour-") as tmp:
        start = Path(tmp) / "start.png"
        with Image.open(PHOTO) as im:
            side = min(im.size)
            im.crop((0, 0, side, side)).resize((size, size), Image.LANCZOS).save(start)
        start_image = load_image(start)
        for c in strengths:
            out = Path(tmp) / f"zoom{c}.mp4"
            _cli(["animate", str(start), str(out), "--frames", str(frames), "--zoom", "1.02", "--rotate", "0.5",
                  "--colour-coherence", str(c), "--crf", "10", "--no-resume", *threads, *extra])
            anim_rows.append((c, *_balance_drift(_decoded(out, frames, 0), [start_image] * frames)))
        inputs = _decoded(CLIP, frames, max_side)
        for c in strengths:
            out = Path(tmp) / f"clip{c}.mp4"
            _cli(["video", str(CLIP), str(out), "--end", str(frames), "--max-side", str(max_side),
                  "--colour-coherence", str(c), "--no-resume", *threads, *extra])
            outputs = _decoded(out, frames, 0)
            m = stability_metrics(inputs, outputs, method="dis")
            clip_rows.append((c, *_balance_drift(outputs, inputs), m.strength, m.ratio))
    head = ("colour coherence", "worst cast drift (a*b*)", "last cast drift", "last brightness drift (L*)",
            "last contrast ratio")
    fmt = lambda r: [r[0], f"{r[1]:.1f}", f"{r[2]:.1f}", f"{r[3]:+.1f}", f"{r[4]:.2f}"]  # noqa: E731
    print(table(head, [fmt(r) for r in anim_rows],
                title=f"colour drift: zoom animation of a {size}x{size} image, {frames} frames "
                      "(animate --zoom 1.02 --rotate 0.5), against the start image"))
    print(table((*head, "strength", "excess / strength"), [[*fmt(r), f"{r[5]:.4f}", f"{r[6]:.3f}"] for r in clip_rows],
                title=f"colour drift: {CLIP.name}, {frames} frames at max side {max_side} (video, defaults), "
                      "against each source frame"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("what", nargs="?", choices=("cadence", "zoom-memory", "colour"), default="cadence")
    p.add_argument("--frames", type=int, default=64, help="cadence: clip frames; zoom-memory: the long animation")
    p.add_argument("--max-side", type=int, default=480, help="cadence: the CLI's --max-side")
    p.add_argument("--cadences", default="1,2,3,4")
    p.add_argument("--size", type=int, default=512, help="zoom-memory, colour: side of the square start image")
    p.add_argument("--coherence", default="0,0.5,1", help="colour: --colour-coherence values to compare")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    apply_malloc(args.default_malloc)
    print(machine_line(pick_device(args.device)))
    if not CLIP.is_file() or not PHOTO.is_file():
        raise SystemExit(f"The shared clip and photos live in {CLIP.parent}.")
    {"cadence": cadence, "zoom-memory": zoom_memory, "colour": colour}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
