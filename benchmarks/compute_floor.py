"""Compute floor of a dream step: counted FLOPs over this machine's measured matmul rate.

Run from the repository root::

    python benchmarks/compute_floor.py [--models googlenet,efficientnet_lite0] [--size 720p] [--repeats 3]

For each model and each octave size of the default dream (4 octaves, scale
1.4), one gradient step (forward through the truncated network plus backward
to the image) is timed in five variants, round-robin in one process:

* ``before``: the plain network (``FeatureHooks(optimize=False)``, NCHW, BatchNorm kept);
* ``copy NCHW``: the execution copy (BatchNorm folded into the convolutions,
  constant padding for stride-1 "same" convolutions) in NCHW;
* ``ours, stem grad by PyTorch``: the same copy with ``channels_last`` weights;
* ``ours``: that, with the stem's input gradient computed by
  :class:`~dream_core.fastpath.polyphase.PolyphaseConv2d` on the CPU (what the dream loop runs);
* ``ours bf16``: ``ours`` under ``torch.autocast(bfloat16)`` (fp16 on CUDA).

The floor is the step's FLOPs (``torch.utils.flop_counter`` on the untiled
image: forward + backward to the input; weights are frozen so no weight
gradient) divided by a dense 2048x2048 matmul rate in the same dtype measured
in the same run. "Achieved fraction" = floor time / measured time. A second
fraction uses process CPU time per thread for both sides, which on a shared,
oversubscribed machine is closer to what the cores did while we had them.

Also printed: where the time goes by convolution kind (each convolution of the
full-size octave timed alone, forward + input-gradient), and the effect of
``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from dream_core.dream import DreamSettings, _objective_gradient  # noqa: E402
from dream_core.dream_step import tile_spans  # noqa: E402
from dream_core.objectives import resolve_objective  # noqa: E402
from dream_core.fastpath import execution_net  # noqa: E402
from dream_core.features import FeatureHooks  # noqa: E402
from dream_core.image_ops import octave_sizes  # noqa: E402


def amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def step_flops(hooks: FeatureHooks, objective, x: torch.Tensor, settings: DreamSettings) -> float:
    with FlopCounterMode(display=False) as counter:
        _objective_gradient(hooks, objective, x, settings, None)
    return float(counter.get_total_flops())


def octave_table(model, size: tuple[int, int], settings: DreamSettings, repeats: int, device: torch.device,
                 variants: list[str]) -> tuple[str, dict[str, float]]:
    objective = resolve_objective(model, None)
    layers = objective.layers()
    hooks = {
        "before": FeatureHooks(model, layers, optimize=False),
        "copy NCHW": FeatureHooks(model, layers, optimize=True, channels_last=False),
        "ours": FeatureHooks(model, layers, optimize=True, channels_last=True),
        "ours, stem grad by PyTorch": FeatureHooks(model, layers, optimize=True, channels_last=True, polyphase=False),
        "ours bf16": FeatureHooks(model, layers, optimize=True, channels_last=True),
    }
    amp = {"ours bf16": amp_dtype(device)}
    untiled = settings.with_(tile_size=1 << 16)
    threads = 1 if device.type == "cuda" else torch.get_num_threads()
    rows: list[list[str]] = []
    totals = {"flops": 0.0, **{v: 0.0 for v in variants}, **{v + " cpu": 0.0 for v in variants}}
    n = 256 if min(size) < 128 else 2048
    mm = {k: (torch.randn(n, n, device=device).to(dt), torch.randn(n, n, device=device).to(dt))
          for k, dt in (("fp32", torch.float32), ("amp", amp_dtype(device)))}
    rate_log: dict[str, list[B.Sample]] = {"fp32": [], "amp": []}
    for h, w in octave_sizes(*size, settings.num_octaves, settings.octave_scale):
        x = B.real_image((h, w), device)
        tiles = len(tile_spans(h, settings.tile_size)) * len(tile_spans(w, settings.tile_size)) if max(h, w) > settings.tile_size else 1
        for hk in hooks.values():
            hk.__enter__()
        try:
            flops = step_flops(hooks["ours"], objective, x, untiled)

            def make(name: str) -> Callable[[], object]:
                return lambda: _objective_gradient(hooks[name], objective, x, settings, amp.get(name))

            # The matmuls run in the same rounds as the steps: each octave's floor uses the
            # rate the machine gave us while that octave was measured.
            runs = {v: make(v) for v in variants}
            runs.update({"mm fp32": lambda: mm["fp32"][0] @ mm["fp32"][1], "mm amp": lambda: mm["amp"][0] @ mm["amp"][1]})
            samples = B.interleaved(runs, repeats, device)
        finally:
            for hk in hooks.values():
                hk.__exit__()
        t = {v: B.med_wall(samples[v]) for v in variants}
        c = {v: B.med_cpu(samples[v]) / threads for v in variants}
        mm_flops = 2.0 * mm["fp32"][0].shape[0] ** 3
        local = {k: B.Sample(mm_flops / B.med_wall(samples["mm " + k]) / 1e9,
                             mm_flops / (B.med_cpu(samples["mm " + k]) / threads) / 1e9) for k in ("fp32", "amp")}
        for k in local:
            rate_log[k].append(local[k])
        rows.append(_row(f"{w}x{h}", flops, str(tiles), t, c, local, variants))
        totals["flops"] += flops
        for v in variants:
            totals[v] += t[v]
            totals[v + " cpu"] += c[v]
    mean_rates = {k: B.Sample(sum(r.wall for r in v) / len(v), sum(r.cpu for r in v) / len(v)) for k, v in rate_log.items()}
    rows.append(_row("all octaves", totals["flops"], "", {v: totals[v] for v in variants},
                     {v: totals[v + " cpu"] for v in variants}, mean_rates, variants))
    headers = ["octave (WxH)", "GFLOP fwd+bwd", "tiles"] + [f"{v} ms (wall / CPU)" for v in variants]
    headers += ["ours vs before (wall / CPU)", "ours GFLOP/s", "ours % of fp32 floor (wall / CPU)"]
    if "ours bf16" in variants:
        headers += ["bf16 vs fp32 (wall / CPU)", "bf16 % of bf16 floor (wall / CPU)"]
    title = (f"{model.name} at {B.size_name(size)}: one gradient step per octave (median of {repeats}; CPU = process "
             f"CPU time per thread; "
             f"matmul rate measured in the same rounds, mean fp32 {mean_rates['fp32'].wall:.0f} / "
             f"{mean_rates['fp32'].cpu:.0f} GFLOP/s by wall / CPU time)")
    return B.table(headers, rows, title), totals


def _row(label: str, flops: float, tiles: str, t: dict[str, float], c: dict[str, float], rates: dict[str, B.Sample],
         variants: list[str]) -> list[str]:
    """One table row; ``t``: wall seconds, ``c``: CPU seconds per thread, per variant."""
    def pct(rate: B.Sample, wall: float, cpu: float) -> str:
        return f"{flops / (rate.wall * 1e9) / wall:.0%} / {flops / (rate.cpu * 1e9) / cpu:.0%}"

    row = [label, f"{flops / 1e9:.1f}", tiles] + [f"{t[v] * 1000:.0f} / {c[v] * 1000:.0f}" for v in variants]
    row += [f"{t['before'] / t['ours']:.2f}x / {c['before'] / c['ours']:.2f}x", f"{flops / t['ours'] / 1e9:.1f}",
            pct(rates["fp32"], t["ours"], c["ours"])]
    if "ours bf16" in variants:
        row += [f"{t['ours'] / t['ours bf16']:.2f}x / {c['ours'] / c['ours bf16']:.2f}x",
                pct(rates["amp"], t["ours bf16"], c["ours bf16"])]
    return row


def conv_kind(conv: torch.nn.Conv2d) -> str:
    if conv.in_channels == 3:
        return "stem (3 input channels)"
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise kxk"
    if conv.kernel_size == (1, 1):
        return "pointwise 1x1"
    return "dense kxk"


def conv_kinds_table(model, size: tuple[int, int], repeats: int, device: torch.device, step: B.Sample) -> str:
    """Each convolution of the full-size octave timed alone (forward + gradient to its input), by kind.

    Times are process CPU seconds per thread on CPU (robust on a shared machine at 1 thread),
    wall seconds on CUDA; the floor is the matmul rate measured the same way, in the same rounds.
    """
    objective = resolve_objective(model, None)
    net = execution_net(model)
    inputs: dict[torch.nn.Conv2d, torch.Tensor] = {}

    def keep_input(module: torch.nn.Module, args: tuple, _out: object) -> None:
        inputs.setdefault(module, args[0].detach())  # type: ignore[arg-type]

    handles = [m.register_forward_hook(keep_input) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad(), FeatureHooks(model, objective.layers(), optimize=True) as hooks:
            hooks.run(B.real_image(size, device))
    finally:
        for hd in handles:
            hd.remove()
    threads = 1 if device.type == "cuda" else torch.get_num_threads()

    def seconds(samples: list[B.Sample]) -> float:
        return B.med_wall(samples) if device.type == "cuda" else B.med_cpu(samples) / threads

    n = 256 if min(size) < 128 else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    kinds: dict[str, list[float]] = {}
    mm_seconds: list[float] = []
    for conv, inp in inputs.items():
        x = inp.clone().requires_grad_(True)
        with torch.enable_grad():
            out = conv(x)
        g = torch.randn_like(out)

        def fwd_bwd() -> None:
            with torch.enable_grad():
                torch.autograd.grad(conv(x), x, g)

        samples = B.interleaved({"conv": fwd_bwd, "mm": lambda: a @ b}, repeats, device)
        mm_seconds.append(seconds(samples["mm"]))
        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        acc = kinds.setdefault(conv_kind(conv), [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += 2.0 * 2 * out.numel() * k  # forward + input gradient
        acc[2] += seconds(samples["conv"])
    rate = 2.0 * n**3 / (sum(mm_seconds) / len(mm_seconds))
    rows = []
    conv_time = sum(v[2] for v in kinds.values())
    step_s = step.wall if device.type == "cuda" else step.cpu / threads
    for kind, (count, flops, t) in sorted(kinds.items(), key=lambda kv: -kv[1][2]):
        rows.append([kind, str(int(count)), f"{flops / 1e9:.2f}", f"{t * 1000:.0f}", f"{t / step_s:.0%}",
                     f"{flops / t / 1e9:.1f}", f"{flops / rate / t:.0%}"])
    rest = max(step_s - conv_time, 0.0)
    rows.append(["everything else (activations, pooling, concat, padding, glue)", "", "", f"{rest * 1000:.0f}",
                 f"{rest / step_s:.0%}", "", ""])
    unit = "wall" if device.type == "cuda" else "CPU"
    return B.table(["convolution kind", "convs", "GFLOP fwd+bwd", f"ms alone ({unit})", "share of step", "GFLOP/s",
                    "% of fp32 floor"], rows,
                   f"{model.name} at {B.size_name(size)} full-size octave (untiled): convolutions by kind, each timed "
                   f"alone; the whole step took {step_s * 1000:.0f} ms ({unit}); fp32 matmul {rate / 1e9:.0f} GFLOP/s")


def threads_table(model, size: tuple[int, int], repeats: int, device: torch.device) -> str:
    """Full-size octave step and matmul at 1 thread and at every core, all in the same rounds."""
    objective = resolve_objective(model, None)
    settings = DreamSettings()
    x = B.real_image(size, device)
    original = torch.get_num_threads()
    counts = sorted({1, os.cpu_count() or 1, original})
    n = 256 if min(size) < 128 else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def with_threads(count: int, fn: Callable[[], object]) -> Callable[[], object]:
        def f() -> object:
            torch.set_num_threads(count)
            try:
                return fn()
            finally:
                torch.set_num_threads(original)
        return f

    with FeatureHooks(model, objective.layers(), optimize=True) as hooks:
        runs: dict[str, Callable[[], object]] = {}
        for c in counts:
            runs[f"step {c}"] = with_threads(c, lambda: _objective_gradient(hooks, objective, x, settings, None))
            runs[f"mm {c}"] = with_threads(c, lambda: a @ b)
        samples = B.interleaved(runs, repeats, device)
    base = B.med_wall(samples[f"step {counts[0]}"])
    rows = []
    for c in counts:
        s, mm = samples[f"step {c}"], samples[f"mm {c}"]
        rate = 2.0 * n**3 / B.med_wall(mm) / 1e9
        rows.append([str(c), f"{rate:.0f}", f"{B.med_wall(s) * 1000:.0f}", f"{B.med_cpu(s) * 1000:.0f}",
                     f"{base / B.med_wall(s):.2f}x"])
    return B.table(["threads", "matmul GFLOP/s (wall)", "step ms (wall)", "step ms (CPU, all threads)",
                    "step speed-up vs 1 thread (wall)"], rows,
                   f"{model.name} at {B.size_name(size)}: torch.set_num_threads (full-size octave as the dream tiles it, "
                   f"fp32, ours; median of {repeats}, interleaved)")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="googlenet,efficientnet_lite0")
    p.add_argument("--size", default="720p", help="frame size: 480p, 720p, 4k or WxH")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--octaves", type=int, default=DreamSettings().num_octaves)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    B.add_malloc_arg(p)
    p.add_argument("--tables", default="octaves,kinds,threads",
                   help="which tables: octaves (per-octave floor), kinds (convolutions by kind), threads")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.models, args.size, args.repeats, args.octaves = "efficientnet_lite0", "96x64", 1, 1
        args.tables, args.threads = "octaves,kinds", 1
    if args.threads:
        torch.set_num_threads(args.threads)
    B.apply_malloc(args.default_malloc)
    device = B.pick_device(args.device)
    size = B.parse_size(args.size)
    tables = {t.strip() for t in args.tables.split(",")}
    settings = DreamSettings(num_octaves=args.octaves)
    print(B.machine_line(device))
    bf16 = device.type == "cuda" or B.native_bf16()
    variants = ["before", "copy NCHW", "ours, stem grad by PyTorch", "ours"] + (["ours bf16"] if bf16 else [])
    n = 256 if args.quick else 2048
    rates = {"fp32": B.matmul_rate(torch.float32, device, n), "amp": B.matmul_rate(amp_dtype(device), device, n)}
    print(B.table(["dtype", "GFLOP/s (wall)", "GFLOP/s per thread-second of CPU"],
                  [["fp32", f"{rates['fp32'].wall:.0f}", f"{rates['fp32'].cpu:.0f}"],
                   [str(amp_dtype(device)).replace("torch.", ""), f"{rates['amp'].wall:.0f}", f"{rates['amp'].cpu:.0f}"]],
                  f"Dense {n}x{n} matmul rate (native bf16 on this CPU: {B.native_bf16()})"))
    for name in args.models.split(","):
        model = B.bench_model(name.strip(), device)
        if "octaves" in tables:
            print(octave_table(model, size, settings, args.repeats, device, variants)[0])
        if "kinds" in tables:
            full = octave_sizes(*size, settings.num_octaves, settings.octave_scale)[-1]
            objective = resolve_objective(model, None)
            with FeatureHooks(model, objective.layers(), optimize=True) as hk:
                x = B.real_image(full, device)
                s = B.interleaved({"s": lambda: _objective_gradient(hk, objective, x, settings.with_(tile_size=1 << 16),
                                                                    None)}, args.repeats, device)["s"]
            print(conv_kinds_table(model, full, args.repeats, device, B.Sample(B.med_wall(s), B.med_cpu(s))))
        if "threads" in tables and device.type == "cpu":
            print(threads_table(model, size, args.repeats, device))
    # Re-measure the matmul rate after the models ran: a changing machine load shows here.
    after = B.matmul_rate(torch.float32, device, n)
    print(f"\nfp32 matmul rate after the run: {after.wall:.0f} GFLOP/s (before: {rates['fp32'].wall:.0f}). "
          + "; ".join(B.machine_line(device).split("; ")[-2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
