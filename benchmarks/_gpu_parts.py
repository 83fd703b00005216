"""The measurements of benchmarks/gpu_check.py, one function each (not a benchmark itself).

Each function measures one thing and returns plain numbers (seconds, fractions, counts); gpu_check.py
orders them, keeps the time budget and writes the tables. Timings synchronise the device before
reading the clock.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import dream_core.clip.frame_dreamer as frame_dreamer_mod  # noqa: E402
from dream_core.dream import DreamSettings, TemporalAnchor, dream_image  # noqa: E402
from dream_core.fastpath import rewrites  # noqa: E402
from dream_core.features import FeatureHooks  # noqa: E402
from dream_core.flow import FlowEstimator  # noqa: E402
from dream_core.objectives import resolve_objective  # noqa: E402
from dream_core.video import read_frames  # noqa: E402
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip
from dream_core.pipeline import IndexedFrames, WriterSink, render_range  # noqa: E402
from dream_core.warmup import warm_up_in_background  # noqa: E402

BENCH = Path(__file__).resolve().parent
#: Marks the one line of JSON a first-frame child process prints.
JSON_TAG = "GPU_CHECK_JSON "


# --------------------------------------------------------------------------- first frame after loading


def _first_dream(model, frame: torch.Tensor, settings: DreamSettings, **hooks_kw: object) -> float:
    """Seconds for one first frame: through a FrameDreamer (what the CLI does) or, with hook options,
    dream_image on hooks made with them."""
    device = model.device
    B.sync(device)
    t0 = time.perf_counter()
    if hooks_kw:
        objective = resolve_objective(model, None)
        with FeatureHooks(model, objective.layers(), optimize=True, **hooks_kw) as hooks:  # type: ignore[arg-type]
            dream_image(model, frame.to(device), objective, settings, hooks=hooks)
    else:
        with FrameDreamer(model, None, settings, VideoSettings()) as dreamer:
            dreamer.dream_next(frame.to(device))
    B.sync(device)
    return time.perf_counter() - t0


def first_frame_report(model_name: str, size: tuple[int, int], clip: Path, device: torch.device,
                       settings: DreamSettings) -> dict[str, object]:
    """In a fresh process: load ``model_name``, time its first frame at ``size`` (the real first-use cost),
    then each variant at a new frame shape (8 px shorter each time: all octave shapes new), so every
    variant pays the per-shape costs again while the per-process ones (CUDA context, kernels loaded)
    are already paid."""
    B.sync(device)
    t0 = time.perf_counter()
    model = B.bench_model(model_name, device)
    B.sync(device)
    report: dict[str, object] = {"model": model.name, "load_s": time.perf_counter() - t0}
    h, w = size
    report["first_s"] = _first_dream(model, B.clip_frames(1, size, clip)[0], settings)
    variants: list[tuple[str, Callable[[tuple[int, int]], float]]] = []
    if rewrites.depthwise_candidates(model.net):
        variants.append(("depthwise on cuDNN",
                         lambda s: _first_dream(model, B.clip_frames(1, s, clip)[0], settings, depthwise=False)))
    variants += [
        ("CUDA graphs off", lambda s: _first_dream(model, B.clip_frames(1, s, clip)[0],
                                                   settings.with_(cuda_graphs=False))),
        ("fast path off", lambda s: _first_dream(model, B.clip_frames(1, s, clip)[0], settings.with_(fast_path=False))),
        ("warm-up while decoding", lambda s: _warm_then_first(model, s, clip, settings)),
    ]
    for k, (name, run) in enumerate(variants, 1):
        report[name] = run((h - 8 * k, w))
    return report


def _warm_then_first(model, size: tuple[int, int], clip: Path, settings: DreamSettings) -> float:
    """Seconds from starting a background warm-up, through decoding the first frame, to its dream."""
    B.sync(model.device)
    t0 = time.perf_counter()
    thread = warm_up_in_background(model, size, settings)
    frame = B.clip_frames(1, size, clip)[0]
    thread.join()
    B.sync(model.device)
    return time.perf_counter() - t0 + _first_dream(model, frame, settings)


def first_frame_child(model_name: str, size: tuple[int, int], clip: Path, device: Optional[str],
                      quick: bool, timeout: float) -> dict[str, object]:
    """:func:`first_frame_report` in a fresh child process (``gpu_check.py --first-frame-child``)."""
    cmd = [sys.executable, str(BENCH / "gpu_check.py"), "--first-frame-child", model_name, "--size",
           f"{size[1]}x{size[0]}", "--clip", str(clip)] + (["--device", device] if device else []) \
        + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(cmd, cwd=B.REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model_name, "error": f"did not finish within {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(JSON_TAG):
            return json.loads(line[len(JSON_TAG):])
    return {"model": model_name, "error": f"exit status {proc.returncode}: {proc.stderr.strip()[-300:]}"}


# --------------------------------------------------------------------------- steady speed


@contextmanager
def dream_seconds(acc: list[float]) -> Iterator[None]:
    """Inside: every dream_image call a FrameDreamer makes adds its seconds (synchronised) to ``acc``."""
    original = frame_dreamer_mod.dream_image

    def timed(model, *a, **k):  # type: ignore[no-untyped-def]
        B.sync(model.device)
        t0 = time.perf_counter()
        out = original(model, *a, **k)
        B.sync(model.device)
        acc.append(time.perf_counter() - t0)
        return out

    frame_dreamer_mod.dream_image = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        frame_dreamer_mod.dream_image = original  # type: ignore[assignment]


def clip_speed(model, frames: list[torch.Tensor], settings: DreamSettings) -> dict[str, float]:
    """Through the one frame loop (stable mode, DIS flow): first frame s, later frames s/frame (mean), the
    dream's share of a later frame (s), peak CUDA memory (MiB; 0 off CUDA)."""
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    dreams: list[float] = []
    with dream_seconds(dreams), FrameDreamer(model, None, settings, VideoSettings()) as dreamer:
        B.sync(device)
        t0 = time.perf_counter()
        for _ in dream_clip(dreamer, ((i, f.to(device)) for i, f in enumerate(frames)), FlowEstimator("dis")):
            B.sync(device)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            t0 = t1
    later, later_dreams = times[1:] or times, dreams[1:] or dreams
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return {"first_s": times[0], "later_s": sum(later) / len(later), "dream_s": sum(later_dreams) / len(later_dreams),
            "peak_mib": peak}


class _NullWriter:
    """Takes frames as the video writer does (``(H,W,3) uint8`` arrays on the encode thread) and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, frame: np.ndarray, carry: object = None) -> None:
        self.count += 1


def pipeline_speed(model, frames: list[torch.Tensor], settings: DreamSettings) -> dict[str, float]:
    """Through the pipeline as the command line runs it (render_range: host frames decoded ahead and pinned, the
    DIS flow of the next frame on its thread, frames copied back to the encode thread; no encoder), with no
    wait between frames: later frames s/frame (from the first frame handed on to the last one on the host)."""
    device = model.device
    writer = _NullWriter()
    marks: list[float] = []
    with FrameDreamer(model, None, settings, VideoSettings()) as dreamer:
        source = IndexedFrames(range(len(frames)), ((i, f.cpu()) for i, f in enumerate(frames)), background=True)
        render_range(source, dreamer, FlowEstimator("dis"), WriterSink(writer),  # type: ignore[arg-type]
                     on_frame=lambda done: marks.append(time.perf_counter()))
        B.sync(device)
        end = time.perf_counter()
    later = max(1, len(frames) - 1)
    return {"later_s": (end - marks[0]) / later, "frames": float(writer.count)}


def later_settings(settings: DreamSettings) -> DreamSettings:
    """The dream of a later frame in the default stable mode: ``later_iterations`` of the iterations."""
    return settings.with_(num_iterations=max(1, round(settings.num_iterations * VideoSettings().later_iterations)))


def step_speed(model, frame: torch.Tensor, settings: DreamSettings, repeats: int, **hooks_kw: object) -> float:
    """Seconds per later-frame dream (dream_image with an anchor, as stable mode's later frames), on one set
    of hooks made with ``hooks_kw`` (so CUDA graphs are captured once); the first dream is not timed."""
    device = model.device
    frame = frame.to(device)
    anchor = TemporalAnchor(frame, torch.ones_like(frame[:, :1]), VideoSettings().temporal_weight)
    objective = resolve_objective(model, None)
    s = later_settings(settings)
    with FeatureHooks(model, objective.layers(), optimize=s.fast_path is not False, **hooks_kw) as hooks:  # type: ignore[arg-type]
        dream_image(model, frame, objective, s, hooks=hooks, anchor=anchor)
        B.sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            dream_image(model, frame, objective, s, hooks=hooks, anchor=anchor)
        B.sync(device)
    return (time.perf_counter() - t0) / repeats


def busy_share(run: Callable[[], None], device: torch.device) -> Optional[dict[str, float]]:
    """Run ``run()`` under torch.profiler; the share of its wall time in which the GPU ran a kernel (the union
    of kernel intervals over wall time, under the profiler), and both in seconds. ``None`` off CUDA
    (the profiler still runs, on the CPU only)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        B.sync(device)
        t0 = time.perf_counter()
        run()
        B.sync(device)
        wall = time.perf_counter() - t0
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA)
    if device.type != "cuda":
        return None
    busy, end = 0.0, float("-inf")
    for start, stop in spans:  # microseconds; overlapping kernels (several streams) count once
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return {"busy": busy / 1e6 / wall, "kernel_s": busy / 1e6, "wall_s": wall}


# --------------------------------------------------------------------------- clips and the command line


def make_clip(path: Path, count: int, size: tuple[int, int], source: Path, fps: int = 30) -> str:
    """Write a ``count``-frame H.264 clip at ``size`` to ``path``: the source clip's frames played forwards and
    backwards in turn (a real scene, no cut), or, without it, a synthetic pan. Returns what it was made from."""
    import av
    import cv2

    h, w = size
    if source.is_file():
        real = [a if a.shape[:2] == (h, w) else cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
                for a in read_frames(source, 0, None)]
        cycle = real + real[-2:0:-1]
        frames: Iterator[np.ndarray] = (cycle[i % len(cycle)] for i in range(count))
        made_from = f"{source.name} forwards and backwards"
    else:
        scene = B.synthetic_scene(count, size)
        frames = (B.to_uint8(scene[..., 8 * t: 8 * t + w]) for t in range(count))
        made_from = "a synthetic pan"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "16"}
        for arr in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")))
        out.mux(stream.encode())
    return made_from


_WROTE = re.compile(r"Wrote .*?: (\d+) frames at .*? fps in ([\d.]+) s")


def cli_video(argv: list[str], in_process: bool, timeout: float) -> dict[str, object]:
    """``python -m dream_core video ARGV`` as a whole process (or, ``in_process``, through ``cli.main``):
    wall seconds, and the frames and seconds the command reports for its dreaming."""
    t0 = time.perf_counter()
    if in_process:
        import io
        import logging

        from dream_core.cli import main

        stream = io.StringIO()
        handler, logger = logging.StreamHandler(stream), logging.getLogger("dream_core")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            rc = main(["video", *argv])
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        text = stream.getvalue()
    else:
        try:
            proc = subprocess.run([sys.executable, "-m", "dream_core", "video", *argv], cwd=B.REPO,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"rc": None, "wall_s": time.perf_counter() - t0, "error": f"did not finish within {timeout:.0f} s"}
        rc, text = proc.returncode, proc.stderr
    wall = time.perf_counter() - t0
    found = _WROTE.search(text)
    return {"rc": rc, "wall_s": wall, "frames": int(found.group(1)) if found else None,
            "dream_s": float(found.group(2)) if found else None, "error": None if rc == 0 else text.strip()[-400:]}


# --------------------------------------------------------------------------- the original tool


def baseline_tables(argv: list[str], in_process: bool, timeout: float) -> tuple[int, str]:
    """benchmarks/baseline_original.py (the original pipeline re-implemented, against ours): its tables."""
    if in_process:
        import contextlib
        import importlib.util
        import io

        spec = importlib.util.spec_from_file_location("gpu_check_baseline", BENCH / "baseline_original.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = module.main(argv)
        text = out.getvalue()
    else:
        try:
            proc = subprocess.run([sys.executable, str(BENCH / "baseline_original.py"), *argv], cwd=B.REPO,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, f"(did not finish within {timeout:.0f} s)"
        rc, text = proc.returncode, proc.stdout + ("" if proc.returncode == 0 else proc.stderr[-600:])
    return rc, "\n".join(line for line in text.splitlines() if line.startswith(("|", "###")) or rc != 0)


#: The original tool's video mode, as its neural_dream_video.py reads its arguments.
ORIGINAL_ARGS = "-num_iterations 1 -octave_iter 10 -num_octaves 2 -octave_scale 0.6 -save_iter 0 -print_iter 0"


def original_tool(code: Path, model_file: Path, frames: list[np.ndarray], workdir: Path, device: torch.device,
                  extra: str, timeout: float) -> dict[str, object]:
    """The original tool's own neural_dream_video.py (video mode) on ``frames`` (RGB uint8, written as the
    ``frame{i}.png`` files it reads), as a whole process: wall seconds and frames it wrote."""
    import cv2

    src, dst = workdir / "original_in", workdir / "original_out"
    src.mkdir(parents=True, exist_ok=True)
    dst.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames):
        cv2.imwrite(str(src / f"frame{i}.png"), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    h, w = frames[0].shape[:2]
    cuda = device.type == "cuda"
    cmd = [sys.executable, str(code / "neural_dream_video.py"), "-video_mode", "1", "-in_dir", str(src),
           "-out_dir", str(dst), "-start_idx", "0", "-end_idx", str(len(frames)), "-image_size", str(max(h, w)),
           "-gpu", str(device.index or 0) if cuda else "c", "-backend", "cudnn" if cuda else "nn",
           "-model_file", str(model_file), *shlex.split(extra)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=code, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "wall_s": time.perf_counter() - t0, "frames": len(list(dst.glob("frame*.png"))),
                "error": f"did not finish within {timeout:.0f} s"}
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - t0, "frames": len(list(dst.glob("frame*.png"))),
            "error": None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-400:]}
