"""Effect of :func:`dream_core.allocator.keep_freed_memory` (glibc malloc tuning) on a dream step.

Run from the repository root::

    python benchmarks/allocator.py [--models efficientnet_lite0,googlenet] [--size 720p] [--rounds 3]

The setting is process-wide and cannot be undone cleanly, so each variant runs
in its own child process; children of the two variants alternate
(default, tuned, default, tuned, ...) and the table gives medians over rounds of
the per-step wall time, process CPU time, system time, minor page faults, and
the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench as B  # noqa: E402
import torch  # noqa: E402

_MARK = "ALLOCATOR-BENCH-RESULT "


def child(model_name: str, size: tuple[int, int], steps: int, tuned: bool, device_name: Optional[str]) -> int:
    if tuned:
        from dream_core.allocator import keep_freed_memory

        keep_freed_memory()
    from dream_core.dream import DreamSettings, _objective_gradient
    from dream_core.objectives import resolve_objective
    from dream_core.features import FeatureHooks

    device = B.pick_device(device_name)
    model = B.bench_model(model_name, device)
    objective = resolve_objective(model, None)
    x = B.real_image(size, device)
    settings = DreamSettings()
    with FeatureHooks(model, objective.layers(), optimize=True) as hooks:
        _objective_gradient(hooks, objective, x, settings, None)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        samples = B.interleaved({"step": lambda: _objective_gradient(hooks, objective, x, settings, None)}, steps,
                                device, warmup=0)["step"]
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(_MARK + json.dumps({
        "wall": B.med_wall(samples), "cpu": B.med_cpu(samples), "sys": (r1.ru_stime - r0.ru_stime) / steps,
        "minflt": (r1.ru_minflt - r0.ru_minflt) / steps, "peak": B.peak_rss_mb(),
    }), flush=True)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="efficientnet_lite0,googlenet")
    p.add_argument("--size", default="720p")
    p.add_argument("--steps", type=int, default=3, help="timed steps per child")
    p.add_argument("--rounds", type=int, default=3, help="children per variant, alternating")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--child", nargs=2, metavar=("MODEL", "TUNED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.size, args.steps, args.rounds, args.threads = "efficientnet_lite0", "128x72", 1, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    size = B.parse_size(args.size)
    if args.child:
        return child(args.child[0], size, args.steps, args.child[1] == "1", args.device)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(B.REPO), env.get("PYTHONPATH", "")])
    common = ["--size", args.size, "--steps", str(args.steps)] + (["--threads", str(args.threads)] if args.threads else [])
    common += ["--device", args.device] if args.device else []
    print(B.machine_line(B.pick_device(args.device)))
    rows = []
    for name in args.models.split(","):
        got: dict[str, list[dict[str, float]]] = {"0": [], "1": []}
        for _ in range(args.rounds):
            for tuned in ("0", "1"):
                cmd = [sys.executable, str(Path(__file__).resolve()), *common, "--child", name.strip(), tuned]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
                got[tuned].append(json.loads(lines[-1][len(_MARK):]))
        med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in got.items()}
        for tuned, label in (("0", "default (mmap large blocks)"), ("1", "keep_freed_memory()")):
            m = med[tuned]
            rows.append([name.strip(), B.size_name(size), label, f"{m['wall'] * 1000:.0f}", f"{m['cpu'] * 1000:.0f}",
                         f"{m['sys'] * 1000:.0f}", f"{m['minflt']:.0f}", f"{m['peak']:.0f}",
                         "" if tuned == "0" else f"{med['0']['cpu'] / m['cpu']:.2f}x"])
    print(B.table(["model", "size", "malloc", "step ms (wall)", "step ms (CPU)", "system ms per step",
                   "minor faults per step", "peak RSS MiB", "CPU speed-up"], rows,
                  f"glibc malloc tuning: one gradient step (ours, fp32), medians over {args.rounds} alternating child "
                  f"processes x {args.steps} steps"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
