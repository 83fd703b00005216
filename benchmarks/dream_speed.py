"""Seconds per frame for image and video dreaming, split into I/O, flow, warp and dream (forward/backward).

Run from the repository root::

    python benchmarks/dream_speed.py [--models efficientnet_lite0,googlenet] [--sizes 480p,720p] [--frames 3]
    python benchmarks/dream_speed.py --models googlenet --sizes 720p --overlap   # + the overlapped pipeline

Image: a clip frame saved as PNG is loaded, dreamed with the default settings
(:class:`DreamSettings`) and saved as PNG. Video: the first ``--frames``
frames of the clip stream through the same steps as ``python -m dream_core
video`` (decode, resize, DIS flow both ways + reliability mask, the one frame
loop in ``--mode``, x264 encode with the resume carry: ``render_range``). The first video frame gets
``num_iterations`` per octave, later frames (``stable`` mode) fewer, so they
are reported apart.

The dream time is split by patching timers around ``FeatureHooks.run``
(forward) and ``dream._objective_gradient`` (forward + backward); "step glue"
is the rest of the dream loop (jitter, gradient blur and normalisation,
resizes, clamps). "warp" is everything ``FrameDreamer.dream_next`` does
besides dreaming (warping the previous dream, masks, the temporal anchor).
On CUDA the timers synchronise, which removes some overlap.

``--overlap`` adds the overlapped pipeline (decoding, the flow for frame t+1
and encoding on threads while frame t dreams; PyAV and OpenCV release the GIL),
and compares seconds per later frame in the same run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402

import dream_core.dream as dream_mod  # noqa: E402
import dream_core.clip.frame_dreamer as video_mod  # noqa: E402
from dream_core.dream import DreamSettings, dream_image  # noqa: E402
from dream_core.features import FeatureHooks  # noqa: E402
from dream_core.flow import FlowEstimator, flow_pair  # noqa: E402
from dream_core.image_io import from_uint8_hwc, load_image, save_image  # noqa: E402
from dream_core.image_ops import resize  # noqa: E402
from dream_core.pipeline import IndexedFrames, OutputOptions, WriterSink, open_writer, render_range  # noqa: E402
from dream_core.video import read_frames  # noqa: E402
from dream_core.clip import VIDEO_MODES, FrameDreamer, VideoSettings  # noqa: E402

PARTS = ("io", "flow", "warp", "forward", "backward", "glue")


@contextmanager
def instrumented(parts: B.Parts) -> Iterator[None]:
    """Patch timers around the forward pass, the gradient, the dream call and ``FrameDreamer.dream_next``
    (restored on exit)."""
    orig_run, orig_grad, orig_dream = FeatureHooks.run, dream_mod._objective_gradient, video_mod.dream_image
    orig_next = FrameDreamer.dream_next

    def run(self, image):  # type: ignore[no-untyped-def]
        with parts("_forward"):
            return orig_run(self, image)

    def grad(*args, **kwargs):  # type: ignore[no-untyped-def]
        with parts("_gradient"):
            return orig_grad(*args, **kwargs)

    def dream(*args, **kwargs):  # type: ignore[no-untyped-def]
        with parts("_dream"):
            return orig_dream(*args, **kwargs)

    def timed_next(*args, **kwargs):  # type: ignore[no-untyped-def]
        with parts("dream_next"):
            return orig_next(*args, **kwargs)

    FeatureHooks.run, dream_mod._objective_gradient, video_mod.dream_image = run, grad, dream  # type: ignore[method-assign]
    FrameDreamer.dream_next = timed_next  # type: ignore[method-assign]
    try:
        yield
    finally:
        FeatureHooks.run, dream_mod._objective_gradient, video_mod.dream_image = orig_run, orig_grad, orig_dream  # type: ignore[method-assign]
        FrameDreamer.dream_next = orig_next  # type: ignore[method-assign]


def settle(raw: dict[str, B.Sample], total: B.Sample) -> dict[str, B.Sample]:
    """Turn the patched timers into the reported parts."""
    zero = B.Sample(0.0, 0.0)

    def minus(a: B.Sample, b: B.Sample) -> B.Sample:
        return B.Sample(max(a.wall - b.wall, 0.0), max(a.cpu - b.cpu, 0.0))

    fwd, grad, dream = raw.get("_forward", zero), raw.get("_gradient", zero), raw.get("_dream", zero)
    return {
        "io": raw.get("io", zero),
        "flow": raw.get("flow", zero),
        "warp": minus(raw["dream_next"], dream) if "dream_next" in raw else zero,
        "forward": fwd,
        "backward": minus(grad, fwd),
        "glue": minus(dream, grad),
        "total": total,
    }


def image_run(model, frame: torch.Tensor, settings: DreamSettings, parts: B.Parts, tmp: Path) -> dict[str, B.Sample]:
    src, dst = tmp / "frame.png", tmp / "dreamed.png"
    save_image(frame, src)
    parts.take()
    with parts("total"):
        with parts("io"):
            x = load_image(src).to(parts.device)
        with parts("_dream"):
            out = dream_image(model, x, None, settings)
        with parts("io"):
            save_image(out.cpu(), dst)
    raw = parts.take()
    return settle(raw, raw["total"])


def frame_tensor(arr, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    return resize(from_uint8_hwc(arr, device), size)


def video_run(model, clip: Path, frames: int, size: tuple[int, int], settings: DreamSettings, video: VideoSettings,
              parts: B.Parts, tmp: Path, overlap: bool) -> list[dict[str, B.Sample]]:
    """Per-frame parts of the streaming video pipeline (``render_range``: decode -> flow -> the frame loop ->
    encode); frame 0 first. With ``overlap`` decoding, the next frame's flow and encoding run on the pipeline's
    threads, so only the frame's total and the dream's parts are timed (io and flow show what the main thread
    waited for: nothing is timed there)."""
    device = parts.device
    estimator = FlowEstimator("dis") if video.needs_flow else None
    writer = open_writer(tmp / ("overlap.mp4" if overlap else "video.mp4"), Fraction(30),
                         OutputOptions(resume=False, audio=False))
    per_frame: list[dict[str, B.Sample]] = []

    def decoded() -> Iterator[tuple[int, torch.Tensor]]:
        arrays = read_frames(clip, 0, frames) if clip.is_file() else iter(
            [B.to_uint8(f) for f in B.clip_frames(frames, size, clip)])
        for index in range(frames):
            with (nullcontext() if overlap else parts("io")):
                arr = next(arrays, None)
                if arr is None:
                    return
                frame = frame_tensor(arr, size, device)
            yield index, frame

    def timed_flow(previous, index: int, raw: torch.Tensor):  # type: ignore[no-untyped-def]
        with parts("flow"):
            pair = flow_pair(estimator, previous.raw, raw)
        return pair.backward, pair.reliable

    class TimedSink(WriterSink):
        def write(self, done):  # type: ignore[no-untyped-def]
            with parts("io"):
                super().write(done)

    clock = [time.perf_counter(), time.process_time()]

    def on_frame(done) -> None:  # type: ignore[no-untyped-def]
        w1, c1 = time.perf_counter(), time.process_time()
        per_frame.append(settle(parts.take(), B.Sample(w1 - clock[0], c1 - clock[1])))
        clock[:] = [w1, c1]

    source = IndexedFrames(range(frames), decoded(), background=True)
    flows = None if estimator is None else estimator if overlap else timed_flow
    with writer, FrameDreamer(model, None, settings, video) as dreamer:
        parts.take()
        clock[:] = [time.perf_counter(), time.process_time()]
        render_range(source, dreamer, flows, WriterSink(writer) if overlap else TimedSink(writer),
                     on_frame=on_frame, overlap=overlap)
    return per_frame


def mean_parts(rows: list[dict[str, B.Sample]]) -> dict[str, B.Sample]:
    return {k: B.Sample(sum(r[k].wall for r in rows) / len(rows), sum(r[k].cpu for r in rows) / len(rows))
            for k in rows[0]}


def part_cells(p: dict[str, B.Sample]) -> list[str]:
    total = p["total"].cpu
    return [f"{p['total'].wall:.2f}", f"{total:.2f}"] + [
        f"{p[k].cpu:.2f} ({p[k].cpu / total:.0%})" if p[k].cpu > 0.005 else "-" for k in PARTS]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="efficientnet_lite0,googlenet")
    p.add_argument("--sizes", default="480p,720p")
    p.add_argument("--clip", type=Path, default=B.CLIP)
    p.add_argument("--frames", type=int, default=3, help="video frames per (model, size)")
    p.add_argument("--mode", choices=VIDEO_MODES, default="stable")
    p.add_argument("--octaves", type=int, default=DreamSettings().num_octaves)
    p.add_argument("--iterations", type=int, default=DreamSettings().num_iterations)
    p.add_argument("--autocast", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--overlap", "--prefetch", dest="overlap", action="store_true",
                   help="also run the video overlapped: decoding, the next frame's flow and encoding on threads")
    p.add_argument("--no-image", action="store_true")
    B.add_common_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.models, args.sizes, args.frames, args.octaves, args.iterations = "efficientnet_lite0", "128x72", 2, 1, 1
        args.overlap, args.threads = True, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    device = B.pick_device(args.device)
    settings = DreamSettings(num_octaves=args.octaves, num_iterations=args.iterations, autocast=args.autocast)
    video = VideoSettings(mode=args.mode)
    print(B.machine_line(device))
    print(f"Settings: {args.octaves} octaves x {args.iterations} iterations (later video frames: "
          f"{dreamer_iterations(settings, video)}), autocast {args.autocast}, video mode {args.mode}, DIS flow; "
          f"clip {args.clip.name if args.clip.is_file() else 'synthetic'}")
    parts = B.Parts(device)
    rows, pre_rows = [], []
    with tempfile.TemporaryDirectory(prefix="dream-speed-") as tmp_name, instrumented(parts):
        tmp = Path(tmp_name)
        for name in args.models.split(","):
            model = B.bench_model(name.strip(), device)
            # One-time costs (building the execution copy, first-call kernel setup) stay out of the tables.
            dream_image(model, torch.rand(1, 3, 96, 96, device=device), None,
                        settings.with_(num_octaves=1, num_iterations=1))
            parts.take()
            for size_text in args.sizes.split(","):
                size = B.parse_size(size_text.strip())
                label = [model.name, B.size_name(size)]
                first = B.clip_frames(1, size, args.clip)[0]
                if not args.no_image:
                    rows.append(label + ["image"] + part_cells(image_run(model, first, settings, parts, tmp)))
                seq = video_run(model, args.clip, args.frames, size, settings, video, parts, tmp, overlap=False)
                rows.append(label + ["video, first frame"] + part_cells(seq[0]))
                if len(seq) > 1:
                    rows.append(label + [f"video, later frames (mean of {len(seq) - 1})"] + part_cells(mean_parts(seq[1:])))
                if args.overlap and len(seq) > 1:
                    pre = video_run(model, args.clip, args.frames, size, settings, video, parts, tmp, overlap=True)
                    a, b = mean_parts(seq[1:]), mean_parts(pre[1:])
                    pre_rows.append(label + [f"{a['total'].wall:.2f}", f"{a['io'].wall + a['flow'].wall:.2f}",
                                             f"{b['total'].wall:.2f}", f"{a['total'].wall / b['total'].wall:.2f}x"])
    headers = ["model", "size", "what", "s/frame (wall)", "s/frame (CPU)"] + [f"{k} CPU s" for k in PARTS]
    print(B.table(headers, rows, "Seconds per frame; parts in process CPU seconds (share of the frame's CPU time). "
                                 "I/O = decode/encode or PNG load/save; flow = DIS both ways + reliability"))
    if pre_rows:
        print(B.table(["model", "size", "sequential s/frame (wall)", "io + flow s (wall)", "overlapped s/frame (wall)",
                       "speed-up (wall)"], pre_rows,
                      "Decoding, the flow of frame t+1 and encoding on threads while frame t dreams (later frames; "
                      "wall clock, so it needs idle cores to mean anything)"))
    print("; ".join(B.machine_line(device).split("; ")[-2:]))
    return 0


def dreamer_iterations(settings: DreamSettings, video: VideoSettings) -> int:
    if video.mode != "stable":
        return settings.num_iterations
    return max(1, round(settings.num_iterations * video.later_iterations))


if __name__ == "__main__":
    sys.exit(main())
