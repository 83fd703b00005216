"""The original tool's per-frame video pipeline, re-implemented on our models, against ours: the speed-up.

Run from the repository root::

    python benchmarks/baseline_original.py --model googlenet --size 720p [--frames 3] [--iterations 10]

Baseline: our own re-implementation of the pipeline of the original tool
(zhuyuezx/neural-dream ``neural_dream_video.py``), from its description, with
the same model, resolution, octaves and iterations as ours:

* setup: every frame extracted to a PNG file (resized to the run's size);
* per frame after the first: the current and previous PNGs are read back and
  Farneback flow (pyr_scale .5, levels 3, winsize 15, iterations 3, poly_n 5,
  poly_sigma 1.2) runs on them at full size on the CPU; the previous dream is
  copied device -> CPU, ``diff = dream - imread(prev)``, the diff is warped with
  ``cv2.remap`` (zeros outside), added to ``imread(cur)``, clipped and copied
  CPU -> device (4 PNG decodes per frame);
* dream: for each octave (smallest first) the whole image is resized, a new
  ``torch.optim.Adam`` (lr 1.5 in 0..255 units) is made on it, and every
  iteration runs the *full* network (``FeatureHooks(truncate=False)``, plain
  ``model.net``: no BatchNorm folding, no channels_last), backpropagates the
  objective through everything computed, steps, and saves the image as PNG;
* the dreamed frame is written as PNG; at the end all of them are read back and
  merged into an mp4v video with ``cv2.VideoWriter``.

Ours: what ``python -m dream_core video`` does, in ``seed`` mode (the original
tool's carry rule, so the work per frame is the same): frames decoded in
memory, DIS flow both ways + reliability mask, the one frame loop (dream_clip) with the truncated
optimised network, x264 encoding with the resume carry.

The pipelines run frame by frame in turn (baseline frame t, ours frame t, ...),
so load changes on a shared machine hit both. By default the original pipeline
runs in a child process with glibc's default malloc, as the original tool runs,
and ours here with the malloc tuning our CLI applies (``--original-malloc same``:
both here, with the same malloc; ``--default-malloc`` turns our tuning off).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import dream_core.clip.frame_dreamer as video_mod  # noqa: E402
from dream_core.dream import DreamSettings, dream_image  # noqa: E402
from dream_core.features import FeatureHooks  # noqa: E402
from dream_core.flow import FlowEstimator, flow_pair  # noqa: E402
from dream_core.flow.estimate import FARNEBACK_PARAMS  # noqa: E402
from dream_core.image_io import to_uint8_hwc  # noqa: E402
from dream_core.image_ops import resize  # noqa: E402
from dream_core.objectives import resolve_objective  # noqa: E402
from dream_core.video import VideoWriter, read_frames  # noqa: E402
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

PARTS = ("io", "flow", "warp", "dream")


def take(parts: B.Parts) -> dict[str, B.Sample]:
    """The parts of one frame, plus their sum as ``total``."""
    out = parts.take()
    out["total"] = B.Sample(sum(out[k].wall for k in PARTS if k in out), sum(out[k].cpu for k in PARTS if k in out))
    return out


# --------------------------------------------------------------------------- the original pipeline


def original_dream(model, hooks: FeatureHooks, objective, image255: torch.Tensor, octaves: int, octave_scale: float,
                   iterations: int, jitter: int, gen: torch.Generator, tmp: Path, timer: B.Parts) -> torch.Tensor:
    """Octaves of Adam steps on the image (0..255), full forward each step, a PNG saved after each iteration."""
    h, w = image255.shape[-2:]
    sizes = [(max(1, round(h * octave_scale**k)), max(1, round(w * octave_scale**k))) for k in reversed(range(octaves))]
    img = image255
    for size in sizes:
        with timer("dream"):
            img = resize(img, size).detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([img], lr=1.5)
        for _ in range(iterations):
            with timer("dream"):
                ox, oy = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0)
                optimizer.zero_grad()
                rolled = torch.roll(img, shifts=(oy, ox), dims=(2, 3))
                loss = -objective(hooks.run(rolled / 255.0)).sum()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    img.clamp_(0, 255)
            with timer("io"):  # the original saves the image after every iteration
                arr = img.detach().cpu()[0].permute(1, 2, 0).round().byte().numpy()
                cv2.imwrite(str(tmp / "iteration.png"), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    with timer("dream"):
        return resize(img.detach(), (h, w))


def original_pipeline(model, clip: Path, frames: int, size: tuple[int, int], settings: DreamSettings, tmp: Path,
                      device: torch.device) -> Iterator[dict[str, B.Sample]]:
    """Yields the parts of each frame; the first item is the PNG extraction (setup), the last the merge."""
    timer = B.Parts(device)
    objective = resolve_objective(model, None)
    gen = torch.Generator().manual_seed(settings.seed)
    scale = 1.0 / settings.octave_scale
    src_dir, out_dir = tmp / "frames", tmp / "dreamed"
    src_dir.mkdir()
    out_dir.mkdir()
    with timer("io"):  # extract every frame to PNG at the run's size
        for i, frame in enumerate(source_frames(clip, frames, size)):
            cv2.imwrite(str(src_dir / f"{i:05d}.png"), cv2.cvtColor(B.to_uint8(frame), cv2.COLOR_RGB2BGR))
    yield take(timer)

    def imread(i: int) -> np.ndarray:
        return cv2.imread(str(src_dir / f"{i:05d}.png"))  # BGR uint8

    dream_prev: Optional[torch.Tensor] = None
    with FeatureHooks(model, objective.layers(), truncate=False) as hooks:  # full forward, plain network
        for t in range(frames):
            if t == 0:
                with timer("io"):
                    start = torch.from_numpy(cv2.cvtColor(imread(0), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None]
                    start = start.float().to(device)
            else:
                with timer("io"):
                    cur_bgr, prev_bgr = imread(t), imread(t - 1)
                with timer("flow"):
                    cur_g = cv2.cvtColor(cur_bgr, cv2.COLOR_BGR2GRAY)
                    prev_g = cv2.cvtColor(prev_bgr, cv2.COLOR_BGR2GRAY)
                    p = FARNEBACK_PARAMS
                    flow = cv2.calcOpticalFlowFarneback(cur_g, prev_g, None, p["pyr_scale"], p["levels"], p["winsize"],
                                                        p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])
                assert dream_prev is not None
                with timer("io"):
                    prev_raw = cv2.cvtColor(imread(t - 1), cv2.COLOR_BGR2RGB).astype(np.float32)
                with timer("warp"):
                    dream_np = dream_prev.detach().cpu()[0].permute(1, 2, 0).numpy()  # device -> CPU
                    diff = dream_np - prev_raw
                    hh, ww = flow.shape[:2]
                    gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
                    warped = cv2.remap(diff, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                with timer("io"):
                    cur_rgb = cv2.cvtColor(imread(t), cv2.COLOR_BGR2RGB).astype(np.float32)
                with timer("warp"):
                    start = torch.from_numpy(np.clip(cur_rgb + warped, 0, 255)).permute(2, 0, 1)[None].to(device)
            dream_prev = original_dream(model, hooks, objective, start, settings.num_octaves, scale,
                                        settings.num_iterations, settings.jitter, gen, tmp, timer)
            with timer("io"):
                arr = dream_prev.detach().cpu()[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
                cv2.imwrite(str(out_dir / f"{t:05d}.png"), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
            yield take(timer)
    with timer("io"):  # merge the frames into a video
        h, w = size
        writer = cv2.VideoWriter(str(tmp / "original.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        for t in range(frames):
            writer.write(cv2.imread(str(out_dir / f"{t:05d}.png")))
        writer.release()
    yield take(timer)


# --------------------------------------------------------------------------- ours


def source_frames(clip: Path, frames: int, size: tuple[int, int]) -> Iterator[torch.Tensor]:
    if clip.is_file():
        for arr in read_frames(clip, 0, frames):
            yield resize(torch.from_numpy(arr).permute(2, 0, 1)[None].float().div_(255.0), size)
    else:
        yield from B.clip_frames(frames, size, clip)


def our_pipeline(model, clip: Path, frames: int, size: tuple[int, int], settings: DreamSettings, tmp: Path,
                 device: torch.device, mode: str) -> Iterator[dict[str, B.Sample]]:
    """Yields the parts of each frame; the first item is the setup (nothing), the last the finish (mux)."""
    timer = B.Parts(device)
    yield take(timer)
    estimator = FlowEstimator("dis")
    writer = VideoWriter(tmp / f"ours_{mode}.mp4", Fraction(30), resume=False, audio=False)

    def decoded() -> Iterator[tuple[int, torch.Tensor]]:
        stream = source_frames(clip, frames, size)
        for index in range(frames):
            with timer("io"):
                raw = next(stream).to(device)
            yield index, raw

    def timed_flow(previous, index: int, raw: torch.Tensor):  # type: ignore[no-untyped-def]
        with timer("flow"):
            pair = flow_pair(estimator, previous.raw, raw)
        return pair.backward, pair.reliable

    with writer, FrameDreamer(model, None, settings, VideoSettings(mode=mode)) as dreamer:
        clip_iter = dream_clip(dreamer, decoded(), timed_flow)
        for _ in range(frames):
            with dream_timed_by(timer):
                done = next(clip_iter)
            with timer("io"):
                carry = {k: v.cpu().numpy() for k, v in done.state.carry().items()}
                writer.write(to_uint8_hwc(done.image), carry=carry)
            yield warp_apart(take_ours(timer))
        with timer("io"):
            writer.finish()
    yield take(timer)


_DREAM_TIMER: list[Optional[B.Parts]] = [None]


@contextmanager
def dream_timed_by(parts: B.Parts) -> Iterator[None]:
    """Inside: ``FrameDreamer.dream_next`` calls add their time to ``parts["dream_next"]``, and the
    ``dream_image`` calls they make to ``parts["dream"]``."""
    _DREAM_TIMER[0] = parts
    try:
        yield
    finally:
        _DREAM_TIMER[0] = None


@contextmanager
def dream_image_timer() -> Iterator[None]:
    """Patch ``FrameDreamer.dream_next`` and the ``dream_image`` it calls once with timers reporting to
    whoever is active (:func:`dream_timed_by`)."""
    original, original_next = video_mod.dream_image, FrameDreamer.dream_next

    def timed(*a, **k):  # type: ignore[no-untyped-def]
        parts = _DREAM_TIMER[0]
        if parts is None:
            return original(*a, **k)
        with parts("dream"):
            return original(*a, **k)

    def timed_next(*a, **k):  # type: ignore[no-untyped-def]
        parts = _DREAM_TIMER[0]
        if parts is None:
            return original_next(*a, **k)
        with parts("dream_next"):
            return original_next(*a, **k)

    video_mod.dream_image, FrameDreamer.dream_next = timed, timed_next  # type: ignore[method-assign]
    try:
        yield
    finally:
        video_mod.dream_image, FrameDreamer.dream_next = original, original_next  # type: ignore[method-assign]


def take_ours(parts: B.Parts) -> dict[str, B.Sample]:
    return parts.take()


def warp_apart(p: dict[str, B.Sample]) -> dict[str, B.Sample]:
    """``dream_next`` = warp + dream: split it and add the total."""
    zero = B.Sample(0.0, 0.0)
    whole, dream = p.pop("dream_next", zero), p.get("dream", zero)
    p["warp"] = B.Sample(max(whole.wall - dream.wall, 0.0), max(whole.cpu - dream.cpu, 0.0))
    p["total"] = B.Sample(sum(p[k].wall for k in PARTS if k in p), sum(p[k].cpu for k in PARTS if k in p))
    return p


# --------------------------------------------------------------------------- report


def summarise(items: list[dict[str, B.Sample]]) -> dict[str, B.Sample]:
    """items = [setup, frame 0, ..., frame n-1, finish] -> first, later (mean), overhead, clip and later parts."""
    zero = B.Sample(0.0, 0.0)
    setup, frames, finish = items[0], items[1:-1], items[-1]
    later = frames[1:] or frames

    def mean(key: str, rows: list[dict[str, B.Sample]]) -> B.Sample:
        return B.Sample(sum(r.get(key, zero).wall for r in rows) / len(rows),
                        sum(r.get(key, zero).cpu for r in rows) / len(rows))

    def total(rows: list[dict[str, B.Sample]]) -> B.Sample:
        return B.Sample(sum(r["total"].wall for r in rows), sum(r["total"].cpu for r in rows))

    return {"first": frames[0]["total"], "later": mean("total", later), "overhead": total([setup, finish]),
            "clip": total(items), **{f"later_{k}": mean(k, later) for k in PARTS}}


def warm_up(model, device: torch.device) -> None:
    """First-call costs (kernel setup, building our execution copy) stay out of both pipelines' times."""
    x = torch.rand(1, 3, 96, 96, device=device)
    objective = resolve_objective(model, None)
    with FeatureHooks(model, objective.layers(), truncate=False) as hooks:
        x.requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=1.5)  # its first step imports a lot (seconds)
        objective(hooks.run(x)).sum().backward()
        optimizer.step()
    dream_image(model, x.detach(), None, DreamSettings(num_octaves=1, num_iterations=1))


def _original_in_child(conn, model_name: str, device_name: str, threads: Optional[int], clip: str, frames: int,
                       size: tuple[int, int], settings: DreamSettings) -> None:
    """Child process (spawned: a fresh interpreter with glibc's default malloc, as the original tool
    runs): the original pipeline, one item per ``"next"`` received, ``None`` when it is done."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = B.bench_model(model_name, device)
    warm_up(model, device)
    with tempfile.TemporaryDirectory(prefix="baseline-child-") as tmp:
        pipe = original_pipeline(model, Path(clip), frames, size, settings, Path(tmp), device)
        while conn.recv() == "next":
            conn.send(next(pipe, None))
    conn.close()


@contextmanager
def original_elsewhere(args: argparse.Namespace, device: torch.device, size: tuple[int, int],
                       settings: DreamSettings) -> Iterator[Iterator[dict[str, B.Sample]]]:
    """The original pipeline running in a child process, stepped from here like a local generator."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_original_in_child, daemon=True,
                        args=(there, args.model, str(device), args.threads, str(args.clip), args.frames, size, settings))
    child.start()

    def steps() -> Iterator[dict[str, B.Sample]]:
        while True:
            here.send("next")
            item = here.recv()
            if item is None:
                return
            yield item

    try:
        yield steps()
    finally:
        try:
            here.send("stop")
        except (BrokenPipeError, OSError):
            pass
        child.join(timeout=30)
        if child.is_alive():
            child.kill()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="googlenet")
    p.add_argument("--size", default="720p")
    p.add_argument("--clip", type=Path, default=B.CLIP)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--octaves", type=int, default=2, help="the original's default: 2")
    p.add_argument("--octave-scale", type=float, default=0.6, help="the original's default: 0.6 (ours: 1/0.6)")
    p.add_argument("--iterations", type=int, default=10, help="the original's default: 10")
    p.add_argument("--ours", default="seed,stable,seed+bf16",
                   help="our variants: video mode (seed = same work per frame; stable = our default, fewer "
                        "iterations on later frames), optionally +bf16/+fp16 autocast")
    p.add_argument("--original-malloc", choices=["own-process", "same"], default=None,
                   help="own-process (default): the original pipeline runs in a child process with glibc's "
                        "default malloc, as the original tool runs, while ours runs here with the CLI's malloc "
                        "tuning; same: both in this process with the same malloc (default with --quick)")
    B.add_common_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.model, args.size, args.frames, args.iterations, args.threads = "efficientnet_lite0", "128x72", 2, 1, 1
        args.ours = "seed"
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    device = B.pick_device(args.device)
    size = B.parse_size(args.size)
    settings = DreamSettings(num_octaves=args.octaves, octave_scale=1.0 / args.octave_scale,
                             num_iterations=args.iterations)
    if args.original_malloc is None:  # --quick runs in-process unless asked (the smoke test loads this file by path)
        args.original_malloc = "same" if args.quick else "own-process"
    elsewhere = args.original_malloc == "own-process"
    model = B.bench_model(args.model, device)
    warm_up(model, device)
    print(B.machine_line(device))
    print("Original pipeline: " + ("its own process, glibc's default malloc (as the original tool runs); ours: "
                                   "this process, malloc " + B.malloc_state() if elsewhere else
                                   "this process, malloc " + B.malloc_state() + ", like ours"))
    print(f"{model.name} at {B.size_name(size)}, {args.frames} frames, {args.octaves} octaves (scale {args.octave_scale}) "
          f"x {args.iterations} iterations, same objective ({model.spec.default_objective}) in all pipelines")
    original = "original (re-implemented)"
    with tempfile.TemporaryDirectory(prefix="baseline-") as tmp_name, dream_image_timer(), \
            (original_elsewhere(args, device, size, settings) if elsewhere else nullcontext()) as remote:
        tmp = Path(tmp_name)
        (tmp / "orig").mkdir()
        pipes = {original: remote if elsewhere else
                 original_pipeline(model, args.clip, args.frames, size, settings, tmp / "orig", device)}
        for variant in args.ours.split(","):
            mode, _, amp = variant.strip().partition("+")
            folder = tmp / variant.replace("+", "_")
            folder.mkdir()
            pipes[f"ours: {mode}" + (f" + {amp} autocast" if amp else "")] = our_pipeline(
                model, args.clip, args.frames, size, settings.with_(autocast=amp or "none"), folder, device, mode)
        results: dict[str, list[dict[str, B.Sample]]] = {k: [] for k in pipes}
        live = dict(pipes)
        while live:  # one step of each pipeline in turn
            for name in list(live):
                item = next(live[name], None)
                if item is None:
                    del live[name]
                else:
                    results[name].append(item)
    s = {k: summarise(v) for k, v in results.items()}
    base = s[original]

    def ws(x: B.Sample) -> str:
        return f"{x.wall:.2f} / {x.cpu:.2f}"

    def ratio(a: B.Sample, b: B.Sample) -> str:
        return f"{a.wall / b.wall:.2f}x / {a.cpu / b.cpu:.2f}x" if b.wall > 0 and b.cpu > 0 else "-"

    rows = []
    for name, r in s.items():
        rows.append([name, ws(r["first"]), ws(r["later"])] + [f"{r['later_' + k].cpu:.2f}" for k in PARTS]
                    + [ws(r["overhead"]), ws(r["clip"]),
                       "" if name == original else ratio(base["later"], r["later"]),
                       "" if name == original else ratio(base["clip"], r["clip"])])
    print(B.table(["pipeline", "first frame s (wall / CPU)", "later frames s/frame (wall / CPU)"]
                  + [f"later: {k} CPU s" for k in PARTS]
                  + ["setup + finish s (wall / CPU)", "clip total s (wall / CPU)",
                     "speed-up per later frame (wall / CPU)", "speed-up whole clip (wall / CPU)"], rows,
                  f"Original pipeline vs ours: {model.name}, {B.size_name(size)}, {args.octaves} octaves x "
                  f"{args.iterations} iterations, {args.frames} frames, run frame by frame in turn"))
    print("; ".join(B.machine_line(device).split("; ")[-2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
