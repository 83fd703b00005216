"""Segments on Ray workers: seam size against burn-in and cross-fade, speed of 2x1 vs 1x2, a killed worker.

Three tables on the shared clip (``--frames`` frames at ``--max-side``, the command line's default look, stable mode):

1. **Seams.** The clip dreamed unbroken, and in segments of ``--segment-length`` kept frames with
   burn-in ``k`` (``--burn-ins``), joined by a hard cut (overlap 0) or a cross-fade over ``o`` frames
   (``--overlaps``). Each output is encoded once losslessly (as the writer's segments are) and decoded;
   the stability metric's warp error of every frame pair (:func:`dream_core.stability.stability_metrics`,
   with the input's flow) is divided by the median over the *interior* pairs (pairs touching no join
   window); a join's excess is the largest ratio over the pairs ``(t-1, t)`` with ``t`` in
   ``[join - o, join]``. "vs unbroken" is the mean absolute difference from the unbroken run.
   Segment 0 is the unbroken run's own first frames (it starts at frame 0), so it is dreamed once.
2. **Speed.** The library's parallel path on a real local Ray runtime: 2 workers x 1 thread against
   1 worker x 2 threads (one segment: the unbroken run) on the same clip, with the plan the command
   line would choose, and a projection for more GPUs from the measured per-frame cost.
3. **Faults.** The 2-worker run again with segment 1's worker process dying mid-segment
   (``SegmentJob.fail_once``: ``os._exit`` after its first kept frame): Ray retries it; the output
   is compared with the unbroken 2-worker run frame for frame (both lossless, ``crf 0``), and the
   starts per segment show that no finished segment was redone.

Seam PNGs (``--out DIR``): frames around the first join for the unbroken run, the hard cut and the
cross-fade, side by side.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from _bench import CLIP, REPO, machine_line, table  # noqa: F401  (REPO puts the project on sys.path)

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dream_core import DreamSettings  # noqa: E402
from dream_core.distributed.assemble import Assembler, crossfade  # noqa: E402
from dream_core.distributed.job import SegmentJob, dream_segment, encode_segment  # noqa: E402
from dream_core.distributed.segments import choose_plan, plan_segments  # noqa: E402
from dream_core.flow import FlowEstimator, compute_flows  # noqa: E402
from dream_core.image_io import from_uint8_hwc  # noqa: E402
from dream_core.image_ops import fit_max_side  # noqa: E402
from dream_core.presets import DEFAULT_PRESET, preset_settings  # noqa: E402
from dream_core.stability import stability_metrics  # noqa: E402
from dream_core.video import VideoWriter, probe_video, read_frames  # noqa: E402
from dream_core.clip import VideoSettings


def decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def lossless(frames: list[np.ndarray], rate) -> list[np.ndarray]:
    """The frames as the writer stores them: one lossless H.264 encode (yuv420p) and back."""
    return decode(encode_segment(frames, rate, 0)[0])


def dreams_of(job: SegmentJob, seg) -> dict[int, np.ndarray]:
    """Every frame segment ``seg``'s worker dreamed (burn-in included), by global index."""
    result = dream_segment(job, seg)
    frames = list(result.blend_in) + decode(result.body) + list(result.blend_out)
    start = seg.keep.start - seg.overlap_in
    out = {start + j: f for j, f in enumerate(frames)}
    return out


def joined(plan, dreams: dict[int, dict[int, np.ndarray]], overlap: int) -> list[np.ndarray]:
    """The output of ``plan``'s segments cross-faded over ``overlap`` frames at each join (0: hard cut)."""
    out = {}
    for seg in plan:
        for t in seg.keep:
            out[t] = dreams[seg.number][t]
    for seg in plan[1:]:
        window = range(seg.keep.start - overlap, seg.keep.start)
        if overlap:
            mixed = crossfade(np.stack([dreams[seg.number - 1][t] for t in window]),
                              np.stack([dreams[seg.number][t] for t in window]))
            for j, t in enumerate(window):
                out[t] = mixed[j]
    return [out[t] for t in sorted(out)]


def seam_figures(inputs: torch.Tensor, flows, frames: list[np.ndarray], joins: Sequence[int], overlap: int,
                 window: int) -> tuple[list[float], float]:
    """Per join: largest pair warp error in its window / median of interior pairs; and the median."""
    out = torch.stack([from_uint8_hwc(f)[0] for f in frames])
    pairs = stability_metrics(inputs, out, flows).pair_warp_err_out  # pair (t-1, t) at index t-1
    touched = {t for j in joins for t in range(j - window, j + 1)}
    interior = [e for t, e in enumerate(pairs, 1) if t not in touched and e == e]
    median = statistics.median(interior)
    return [max(pairs[t - 1] for t in range(j - overlap, j + 1)) / median for j in joins], median


def seams(args, job: SegmentJob, inputs, flows, rate, out_dir: Optional[Path]) -> str:
    n, length = args.frames, args.segment_length
    t0 = time.perf_counter()
    whole_seg = plan_segments(range(n), n, 0, 0)[0]
    unbroken = dreams_of(job, whole_seg)
    per_frame = (time.perf_counter() - t0) / n
    joins = list(range(length, n, length))
    window = max(args.overlaps)
    reference = lossless([unbroken[t] for t in range(n)], rate)
    ref_joins, _ = seam_figures(inputs, flows, reference, joins, 0, window)
    rows = [["unbroken", "-", "-", " ".join(f"{x:.2f}" for x in ref_joins), f"{max(ref_joins):.2f}", "0"]]
    shots = {"unbroken": reference}
    for k in args.burn_ins:
        plan = plan_segments(range(n), length, k, min(k, window))  # workers return up to `window` burn-in frames
        dreams = {0: unbroken}
        for seg in plan[1:]:
            dreams[seg.number] = dreams_of(job, seg)
        for o in args.overlaps:
            if o > k:
                continue
            frames = lossless(joined(plan, dreams, o), rate)
            excess, _ = seam_figures(inputs, flows, frames, joins, o, window)
            diff = float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255
                                  for a, b in zip(frames, reference)]))
            rows.append([f"k={k}", str(k), "cut" if o == 0 else f"cross-fade {o}",
                         " ".join(f"{x:.2f}" for x in excess), f"{max(excess):.2f}", f"{diff:.4f}"])
            if k == args.picture_burn_in:
                shots["cut" if o == 0 else f"fade{o}"] = frames
        print(f"  burn-in {k} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if out_dir is not None:
        save_seam_pictures(shots, joins[0], out_dir)
    h, w = inputs.shape[-2:]
    return table(("variant", "burn-in k", "join", "excess per join (x interior median)", "worst",
                  "mean |out - unbroken|"), rows,
                 title=f"seams: {CLIP.name}, {n} frames at {w}x{h}, segments of {length} (joins at "
                       f"{', '.join(map(str, joins))}); unbroken run {per_frame:.2f} s/frame")


def save_seam_pictures(shots: dict[str, list[np.ndarray]], join: int, out_dir: Path) -> None:
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    picks = list(range(join - 3, join + 2))
    rows = []
    for name, frames in shots.items():
        rows.append(np.concatenate([frames[t] for t in picks], axis=1))
        Image.fromarray(frames[join - 1]).save(out_dir / f"seam_{name}_{join - 1}.png")
        Image.fromarray(frames[join]).save(out_dir / f"seam_{name}_{join}.png")
    Image.fromarray(np.concatenate(rows, axis=0)).save(out_dir / f"seam_sheet_frames_{picks[0]}-{picks[-1]}.png")
    print(f"  seam pictures: rows {', '.join(shots)}; frames {picks[0]}..{picks[-1]} -> {out_dir}", file=sys.stderr)


def parallel_run(job: SegmentJob, plan, path: Path, rate, workers: int, threads: int):
    from dream_core.distributed.runner import render_segments

    with VideoWriter(path, rate, crf=0, resume=False, settings={"bench": str(path.name)}) as writer:
        assembler = Assembler(writer, plan, rate, 0)
        stats = render_segments(job, plan, assembler, workers=workers, threads=threads, progress=False)
    return stats


def one_worker_run(job: SegmentJob, n: int, path: Path, rate, threads: int) -> float:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    plan = plan_segments(range(n), n, 0, 0)
    with VideoWriter(path, rate, crf=0, resume=False) as writer:
        Assembler(writer, plan, rate, 0).add(dream_segment(job, plan[0]))
    return time.perf_counter() - t0


def speed_and_faults(args, job: SegmentJob, rate, tmp: Path) -> tuple[str, str]:
    import ray

    n = args.frames
    plan = choose_plan(range(n), 2, segment_length=args.speed_segment_length)
    k = plan[1].burn_in
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        warm = choose_plan(range(4), 2, segment_length=2, burn_in=1, overlap=1)  # workers start, models load
        parallel_run(job, warm, tmp / "warm.mp4", rate, 2, 1)
        one = one_worker_run(job, n, tmp / "one.mp4", rate, args.threads)
        t0 = time.perf_counter()
        stats = parallel_run(job, plan, tmp / "two.mp4", rate, 2, 1)
        two = time.perf_counter() - t0
        marker = tmp / "died"
        faulty_job = SegmentJob(**{**job.__dict__, "fail_once": (1, str(marker))})
        t0 = time.perf_counter()
        fstats = parallel_run(faulty_job, plan, tmp / "faulty.mp4", rate, 2, 1)
        faulty = time.perf_counter() - t0
    finally:
        ray.shutdown()
    dreamed = sum(stats.frames_dreamed.values())
    per_frame = sum(stats.seconds.values()) / dreamed
    speed_rows = [
        ["1 worker x 2 threads (unbroken)", f"{one:.1f}", f"{n}", f"{one / n:.2f}", "1.00x"],
        [f"2 workers x 1 thread ({len(plan)} segments of {len(plan[0].keep)}, burn-in {k})", f"{two:.1f}",
         f"{dreamed}", f"{per_frame:.2f}", f"{one / two:.2f}x"],
    ]
    speed = table(("run", "wall s", "frames dreamed", "worker s / dreamed frame", "speed vs 1x2"), speed_rows,
                  title=f"speed: {n} frames, real local Ray runtime (num_cpus=2); model load and Ray start excluded")
    projection = []
    for gpus in (2, 4, 8):
        clip = 9000
        segs = choose_plan(range(clip), gpus)
        length = len(segs[0].keep)
        efficiency = length / (length + segs[1].burn_in)
        projection.append([f"{gpus} GPUs, 9000 frames", f"{len(segs)} x {length}", f"{segs[1].burn_in}",
                           f"{efficiency:.3f}", f"{gpus * efficiency:.1f}x"])
    speed += "\n\n" + table(("projection", "segments", "burn-in", "L / (L + k)", "ideal speed-up"), projection,
                            title="multi-GPU projection from the plan (per-frame cost equal on every GPU; the "
                                  "driver's joins and the final encode not counted)")
    a = np.stack(list(read_frames(tmp / "two.mp4")))
    b = np.stack(list(read_frames(tmp / "faulty.mp4")))
    same = a.shape == b.shape and bool((a == b).all())
    faults = table(("trial", "frames", "equal to unbroken 2-worker run", "starts per segment", "wall s"), [
        ["unbroken 2 workers", f"{len(a)}", "-", str(dict(sorted(stats.starts.items()))), f"{two:.1f}"],
        ["segment 1's worker dies mid-segment", f"{len(b)}", "yes, frame for frame" if same else "NO",
         str(dict(sorted(fstats.starts.items()))), f"{faulty:.1f}"],
    ], title=f"faults: worker killed (os._exit) after its first kept frame, Ray max_retries 3, crf 0; "
             f"marker written: {marker.exists()}")
    return speed, faults


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--max-side", type=int, default=256)
    p.add_argument("--segment-length", type=int, default=20, help="seam table: kept frames per segment")
    p.add_argument("--speed-segment-length", type=int, default=None, help="speed: kept frames per segment "
                                                                           "(none: the command line's choice)")
    p.add_argument("--burn-ins", type=lambda s: [int(x) for x in s.split(",")], default=[4, 8, 16])
    p.add_argument("--overlaps", type=lambda s: [int(x) for x in s.split(",")], default=[0, 4, 8])
    p.add_argument("--picture-burn-in", type=int, default=8, help="burn-in of the seam pictures")
    p.add_argument("--octaves", type=int, default=None, help="override the preset's octaves (tiny trials)")
    p.add_argument("--threads", type=int, default=2, help="threads of the in-process runs")
    p.add_argument("--skip-seams", action="store_true")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="folder for the seam pictures")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rate = probe_video(CLIP).frame_rate
    given = {} if args.octaves is None else {"num_octaves": args.octaves}
    settings = preset_settings(DEFAULT_PRESET, DreamSettings(), **given)  # the command line's default look
    job = SegmentJob(source=str(CLIP), rate=rate, first_frame=0, max_side=args.max_side, model="efficientnet_lite0",
                     weights=None, objective=None, settings=settings, video=VideoSettings(), crf=0,
                     device="cpu")
    print(machine_line(torch.device("cpu")))
    if not args.skip_seams:
        inputs = torch.cat([fit_max_side(from_uint8_hwc(a), args.max_side, multiple=2)
                            for a in read_frames(CLIP, 0, args.frames)])
        flows = compute_flows(inputs, estimator=FlowEstimator("dis"))
        print("\n" + seams(args, job, inputs, flows, rate, args.out))
    if not args.skip_ray:
        with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
            speed, faults = speed_and_faults(args, job, rate, Path(tmp))
        print("\n" + speed + "\n\n" + faults)
    return 0


if __name__ == "__main__":
    sys.exit(main())
