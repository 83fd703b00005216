"""The prepared GPU check: one run of at most about five minutes on one GPU measures everything issue 17 asks.

On the GPU machine, from the repository root::

    python benchmarks/gpu_check.py --out gpu_check.md

Options: ``--clip PATH`` (the 720p clip the frames and the 300-frame CLI clip are made from; default
../shared/data/balcony_view.mp4, a synthetic pan where it is absent), ``--original-code DIR
--original-model FILE`` (also run the original tool's own neural_dream_video.py; ``--original-args``
replaces its dream arguments), ``--budget S`` (seconds for the whole run, default 290: sections that no
longer fit are skipped and say so), ``--sections a,b`` (a subset), ``--quick`` (a tiny CPU smoke run;
tests/test_benchmarks_smoke.py runs it so this script cannot rot).

Sections, in this order; each prints its table when done and the markdown file is rewritten after each
(the meaning of every column is written under the tables):

1. ``tests``: ``pytest -m cuda`` in a child process.
2. ``first``: per model, a fresh child process: loading, the first 720p frame, and variants at new shapes.
3. ``steady``: per model and precision (fp32, bf16 autocast): the one frame loop at 720p, stable mode, DIS;
   and the same frames through the pipeline (render_range with its threads and pinned copies).
4. ``busy``: torch.profiler over later frames: the share of wall time the GPU runs kernels.
5. ``cli``: ``python -m dream_core video`` end to end on a 300-frame 720p clip.
6. ``variants``: one later-frame dream with CUDA graphs, ``channels_last`` and precision switched.
7. ``original``: benchmarks/baseline_original.py (the original pipeline re-implemented, against ours), and
   the original tool's own code when given.

Models: EfficientNet-Lite0 (packaged weights), torchvision GoogLeNet and BVLC GoogLeNet (random weights:
speed does not depend on their values; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import _gpu_parts as P  # noqa: E402
import torch  # noqa: E402

from dream_core.dream import DreamSettings  # noqa: E402
from dream_core.flow import FlowEstimator  # noqa: E402
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip  # noqa: E402

MODELS = "efficientnet_lite0,googlenet,bvlc_googlenet"
SECTIONS = ("tests", "first", "steady", "busy", "cli", "variants", "original")
#: Below this many seconds left, a section is skipped rather than started.
MIN_SECTION_S = 15

COLUMNS = {
    "tests": "exit status of `pytest -m cuda` (0: all passed), its summary line, its seconds.",
    "first": "load s: building the model and its weights; first frame s: from loaded to the first 720p frame "
             "dreamed (defaults, through FrameDreamer, in a fresh process: every first-use cost, including the "
             "execution copy and CUDA graph capture); the other columns: the first frame of a variant at a new frame "
             "shape (8 px shorter each: every octave shape new) in the same process: depthwise convolutions left to "
             "cuDNN, CUDA graphs off, fast path off (model.net), and a background warm-up started before decoding "
             "the frame (warm-up + decode + first frame). Target: first frame <= 1.5 s.",
    "steady": "through dream_clip (stable mode, DIS flow on the CPU, default settings): first frame s, later frames "
              "s/frame (mean) and frames/s, dream s/frame (the dream's part of a later frame; the rest is flow, "
              "warps and the loop), peak CUDA memory; each frame waits for the GPU before the clock is read. "
              "Pipeline later frames/s: the same frames through render_range as the command line runs it (host "
              "frames decoded ahead and pinned, the next flow on its thread, frames copied back for the encoder, "
              "no encoder), no wait between frames. Target: later frames >= 10 frames/s for Lite0 and GoogLeNet.",
    "busy": "torch.profiler over 3 later frames (frame loop: flow included; pipeline: render_range with its "
            "threads, the first frame included) or 3 later-frame dreams (dream "
            "alone, with and without CUDA graphs): GPU busy % = union of kernel intervals / wall time under the "
            "profiler (it slows the host, so this reads low; should it miss kernels replayed inside graphs, the "
            "graphs-on row reads far below the graphs-off one). Target: >= 70 %.",
    "cli": "`python -m dream_core video` with its defaults on the clip: whole-process wall s (start-up, model "
           "load, decode, flow, dream, encode), the seconds the command reports for the clip, and frames/s by "
           "each.",
    "variants": "seconds per later-frame dream (stable mode's iterations, with its anchor), hooks and CUDA graphs "
                "kept from frame to frame as in a clip; one row per setting.",
    "original": "benchmarks/baseline_original.py's own columns (wall / CPU s); with --original-code, the "
                "original tool's neural_dream_video.py as a whole process on the same frames.",
}


class Run:
    """What the sections share: arguments, device, time budget, and the report being written."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = B.pick_device(args.device)
        self.size = B.parse_size(args.size)
        self.models = [m.strip() for m in args.models.split(",") if m.strip()]
        self.settings = DreamSettings(num_octaves=1, num_iterations=2) if args.quick else DreamSettings()
        self.deadline = time.perf_counter() + args.budget
        self.parts: list[str] = []
        self.status = 0
        self._frames: Optional[list[torch.Tensor]] = None

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def frames(self) -> list[torch.Tensor]:
        if self._frames is None:
            self._frames = B.clip_frames(self.args.frames, self.size, self.args.clip)
        return self._frames

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.parts.append(text)
        if self.args.out:
            meanings = "\n".join(f"- **{k}**: {v}" for k, v in COLUMNS.items())
            Path(self.args.out).write_text("\n".join(self.parts) + "\n\n## What the columns mean\n\n" + meanings + "\n")


def fmt(x: Optional[float], spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def section_tests(run: Run) -> None:
    if run.device.type != "cuda":
        run.add(B.table(["exit status", "summary", "s"], [["-", "skipped: no CUDA device", "-"]], "CUDA-marked tests"))
        return
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(cmd, cwd=B.REPO, capture_output=True, text=True, timeout=max(30.0, run.left() - 200))
        code, lines = proc.returncode, proc.stdout.strip().splitlines()
        summary = lines[-1] if lines else "(no output)"
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    except subprocess.TimeoutExpired:
        code, summary, failed = 124, "did not finish in time", []
    run.status = run.status or int(code != 0)
    run.add(B.table(["exit status", "summary", "s"], [[code, summary, f"{time.perf_counter() - t0:.0f}"]],
                    "CUDA-marked tests (pytest -m cuda)") + "".join(f"\n\n    {line}" for line in failed[:12]))


FIRST_VARIANTS = ("depthwise on cuDNN", "CUDA graphs off", "fast path off", "warm-up while decoding")


def section_first(run: Run) -> None:
    rows = []
    for name in run.models:
        if run.left() < MIN_SECTION_S:
            rows.append([name, "skipped: over the time budget"] + [""] * (1 + len(FIRST_VARIANTS)))
            continue
        if run.args.quick:  # in this process: the smoke test exercises the same code
            r = P.first_frame_report(name, run.size, run.args.clip, run.device, run.settings)
        else:
            r = P.first_frame_child(name, run.size, run.args.clip, run.args.device, False, min(120.0, run.left()))
        if "error" in r:
            rows.append([name, str(r["error"])] + [""] * (1 + len(FIRST_VARIANTS)))
            continue
        rows.append([r["model"], fmt(r["load_s"], ".2f"), fmt(r["first_s"], ".2f")]  # type: ignore[arg-type]
                    + [fmt(r.get(v), ".2f") for v in FIRST_VARIANTS])  # type: ignore[arg-type]
    run.add(B.table(["model", "load s", "first frame s (fresh process)"] + [f"{v} s" for v in FIRST_VARIANTS], rows,
                    f"First frame after loading, {B.size_name(run.size)}"))


def section_steady(run: Run) -> None:
    rows = []
    frames = run.frames()
    for name in run.models:
        model = B.bench_model(name, run.device)
        P.step_speed(model, frames[0][..., :96, :96], run.settings.with_(num_octaves=1), 1)  # per-process set-up
        for precision in run.args.precisions.split(","):
            if run.left() < MIN_SECTION_S:
                rows.append([name, precision, "skipped: over the time budget", "", "", "", "", "", ""])
                continue
            amp = "none" if precision.strip() == "fp32" else precision.strip()
            r = P.clip_speed(model, frames, run.settings.with_(autocast=amp))
            piped = P.pipeline_speed(model, frames, run.settings.with_(autocast=amp))
            rows.append([model.name, precision, fmt(r["first_s"], ".2f"), fmt(r["later_s"]),
                         fmt(1 / r["later_s"], ".1f"), fmt(r["dream_s"]), fmt(1 / piped["later_s"], ".1f"),
                         fmt(r["peak_mib"], ".0f")])
        del model
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
    run.add(B.table(["model", "precision", "first frame s", "later s/frame", "later frames/s", "dream s/frame",
                     "pipeline later frames/s", "peak CUDA MiB"], rows, f"Steady speed, {B.size_name(run.size)}, stable mode, DIS flow, "
                    f"{len(frames)} frames"))


def _busy_row(model_name: str, what: str, r: Optional[dict[str, float]]) -> list[object]:
    return [model_name, what] + (["- (no CUDA)", "-", "-"] if r is None else
                                 [f"{100 * r['busy']:.0f}", fmt(r["kernel_s"]), fmt(r["wall_s"])])


def section_busy(run: Run) -> None:
    rows = []
    frames = run.frames()
    later = min(3, len(frames) - 1)
    for name in run.models[:2]:
        if run.left() < MIN_SECTION_S:
            rows.append([name, "skipped: over the time budget", "", "", ""])
            continue
        model = B.bench_model(name, run.device)
        with FrameDreamer(model, None, run.settings, VideoSettings()) as dreamer:
            loop = dream_clip(dreamer, ((i, f.to(run.device)) for i, f in enumerate(frames)), FlowEstimator("dis"))
            next(loop)  # the first frame (set-up, captures) outside the profile
            r = P.busy_share(lambda: [next(loop) for _ in range(later)], run.device)
        rows.append(_busy_row(model.name, f"frame loop, {later} later frames", r))
        r = P.busy_share(lambda: P.pipeline_speed(model, frames[:later + 1], run.settings), run.device)
        rows.append(_busy_row(model.name, f"pipeline, {later + 1} frames (the first included)", r))
        repeats = 1 if run.args.quick else 3
        for graphs in (True, False):  # graphs off: in case the profiler misses kernels replayed in graphs
            r = P.busy_share(lambda: P.step_speed(model, frames[0], run.settings.with_(cuda_graphs=graphs), repeats),
                             run.device)
            rows.append(_busy_row(model.name, f"{repeats} later-frame dreams alone (+1 untimed), CUDA graphs "
                                              f"{'on' if graphs else 'off'}", r))
    run.add(B.table(["model", "what", "GPU busy %", "kernel s", "wall s"], rows,
                    "GPU busy share under torch.profiler (fp32, defaults)"))


def section_cli(run: Run) -> None:
    count = 3 if run.args.quick else run.args.cli_frames
    with tempfile.TemporaryDirectory(prefix="gpu-check-cli-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        made_from = P.make_clip(clip, count, run.size, run.args.clip)
        argv = [str(clip), str(Path(tmp) / "out.mp4"), "--no-resume"] + (["--device", run.args.device]
                                                                         if run.args.device else [])
        if run.args.quick:
            argv += ["--octaves", "1", "--iterations", "1", "--threads", "1"]
        r = P.cli_video(argv, run.args.quick, max(30.0, run.left() - 30))
    frames, dream_s, wall = r.get("frames") or count, r.get("dream_s"), r["wall_s"]
    rows = [[f"{B.size_name(run.size)}, {made_from}", frames, fmt(wall, ".1f"), fmt(dream_s, ".1f"),  # type: ignore[arg-type]
             fmt(frames / dream_s if dream_s else None, ".2f"), fmt(frames / wall, ".2f")]]  # type: ignore[operator]
    run.status = run.status or int(r["rc"] != 0)
    run.add(B.table(["clip", "frames", "process wall s", "reported s", "frames/s (reported)",
                     "frames/s (whole process)"], rows, "Command line end to end (`python -m dream_core video`, "
                    "defaults)") + (f"\n\nError: {r['error']}" if r.get("error") else ""))


def section_variants(run: Run) -> None:
    rows = []
    frame = run.frames()[0]
    grid = [("fp32", True, True), ("fp32", True, False), ("fp32", False, True), ("bf16", True, True),
            ("bf16", False, True)]
    for name in run.models[:2]:
        model = B.bench_model(name, run.device)
        for precision, channels_last, graphs in grid:
            if run.left() < MIN_SECTION_S:
                rows.append([name, precision, channels_last, graphs, "skipped: over the time budget", ""])
                continue
            settings = run.settings.with_(autocast="none" if precision == "fp32" else precision, cuda_graphs=graphs)
            t = P.step_speed(model, frame, settings, 1 if run.args.quick else 5, channels_last=channels_last)
            rows.append([model.name, precision, "on" if channels_last else "off", "on" if graphs else "off",
                         fmt(t), fmt(1 / t, ".1f")])
    run.add(B.table(["model", "precision", "channels_last", "CUDA graphs", "s per later-frame dream",
                     "dreams/s"], rows, f"Dream step variants, {B.size_name(run.size)}"))


def section_original(run: Run) -> None:
    argv = ["--quick", "--original-malloc", "same"] if run.args.quick else \
        ["--model", "googlenet", "--size", f"{run.size[1]}x{run.size[0]}", "--frames", "3", "--clip", str(run.args.clip),
         "--ours", "stable,stable+bf16"] + (["--device", run.args.device] if run.args.device else [])
    code, tables = P.baseline_tables(argv, run.args.quick, max(30.0, run.left() - 10))
    run.status = run.status or int(code != 0)
    run.add("\n### The original pipeline re-implemented, against ours (benchmarks/baseline_original.py)\n\n" + tables)
    if not run.args.original_code:
        run.add("\n(The original tool's own code: not given; --original-code DIR --original-model FILE runs it.)")
        return
    frames = [B.to_uint8(f) for f in run.frames()]
    with tempfile.TemporaryDirectory(prefix="gpu-check-original-") as tmp:
        r = P.original_tool(Path(run.args.original_code), Path(run.args.original_model or "missing"), frames, Path(tmp),
                            run.device, run.args.original_args, max(30.0, run.left() - 5))
    rows = [["original tool (its own code)", r["frames"], fmt(r["wall_s"], ".1f"),  # type: ignore[arg-type]
             fmt(r["wall_s"] / max(1, r["frames"] or 1), ".2f")]]  # type: ignore[operator]
    run.add(B.table(["pipeline", "frames written", "process wall s", "s/frame"], rows,
                    f"The original tool's own neural_dream_video.py, {B.size_name(run.size)} ({run.args.original_args})")
            + (f"\n\nError: {r['error']}" if r.get("error") else ""))


SECTION_RUNNERS = {"tests": section_tests, "first": section_first, "steady": section_steady, "busy": section_busy,
                   "cli": section_cli, "variants": section_variants, "original": section_original}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=None, help="write the tables to this markdown file")
    p.add_argument("--models", default=MODELS, help="comma-separated registered models")
    p.add_argument("--size", default=None, help="frame size: 240p..4k or WxH (default 720p; 160x96 with --quick)")
    p.add_argument("--frames", type=int, default=8, help="frames per steady row (the first is reported apart)")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or autocast dtypes (bf16, fp16)")
    p.add_argument("--clip", type=Path, default=B.CLIP, help="source clip (a synthetic pan where absent)")
    p.add_argument("--cli-frames", type=int, default=300, help="frames of the command line's clip")
    p.add_argument("--sections", default=",".join(SECTIONS), help="which sections, in their fixed order")
    p.add_argument("--budget", type=float, default=290.0, help="seconds for the whole run")
    p.add_argument("--original-code", default=None, help="a checkout of the original tool (zhuyuezx/neural-dream)")
    p.add_argument("--original-model", default=None, help="the .pth its -model_file reads")
    p.add_argument("--original-args", default=P.ORIGINAL_ARGS, help="its dream arguments")
    p.add_argument("--first-frame-child", default=None, help=argparse.SUPPRESS)
    B.add_common_args(p)
    args = p.parse_args(argv)
    if args.quick:  # CI smoke test on any machine: tiny frames, one model, no child processes
        args.models, args.frames, args.precisions = "efficientnet_lite0", 2, "fp32"
    args.size = args.size or ("160x96" if args.quick else "720p")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    run = Run(args)
    if args.first_frame_child:  # the fresh process of section "first"
        report = P.first_frame_report(args.first_frame_child, run.size, args.clip, run.device, run.settings)
        print(P.JSON_TAG + json.dumps(report), flush=True)
        return 0
    wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"Unknown sections {unknown}; choose from {', '.join(SECTIONS)}.")
    run.add(B.machine_line(run.device))
    run.add(f"\n# GPU check: {', '.join(run.models)} at {B.size_name(run.size)}"
            f" ({'quick smoke run' if args.quick else 'defaults'}), budget {args.budget:.0f} s")
    for name in SECTIONS:
        if name not in wanted:
            continue
        if run.left() < MIN_SECTION_S:
            run.add(f"\n### {name}: skipped, over the time budget (run it alone with --sections {name})")
            continue
        t0 = time.perf_counter()
        SECTION_RUNNERS[name](run)
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return run.status


if __name__ == "__main__":
    sys.exit(main())
