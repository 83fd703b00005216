"""Shared helpers of the speed and memory benchmarks: timing, tables, machine facts, models, frames.

Not a benchmark itself. Conventions every script follows:

* variants are timed in one process, round-robin (``interleaved``), and
  compared as ratios of medians, so a busy shared machine slows all of them
  alike instead of favouring whichever ran in a quiet moment;
* every timing records wall seconds and process CPU seconds; on an
  oversubscribed machine wall >> CPU / threads shows that the run waited for a core;
* on CUDA, timers synchronise the device before reading the clock.
"""

from __future__ import annotations

import argparse

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLIP = REPO.parent / "shared" / "data" / "balcony_view.mp4"

#: Named frame sizes ``(height, width)``, 16:9 with even sides.
SIZES = {"240p": (240, 426), "360p": (360, 640), "480p": (480, 854), "720p": (720, 1280),
         "1080p": (1080, 1920), "4k": (2160, 3840)}


def parse_size(text: str) -> tuple[int, int]:
    """``"720p"`` or ``"1280x720"`` (WxH) -> ``(h, w)``."""
    if text in SIZES:
        return SIZES[text]
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()):
        raise SystemExit(f"Size {text!r}: use one of {', '.join(SIZES)} or WxH, e.g. 1280x720.")
    return int(h), int(w)


def size_name(size: tuple[int, int]) -> str:
    for name, s in SIZES.items():
        if s == tuple(size):
            return name
    return f"{size[1]}x{size[0]}"


# --------------------------------------------------------------------------- machine


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def machine_line(device: torch.device) -> str:
    """One line naming the machine, threads and load, for the top of every table."""
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    parts = [
        f"{cpu_model()}, {os.cpu_count()} logical CPUs ({' '.join(isa) or 'no AVX'})",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"load average {load}",
        f"malloc {_MALLOC['state']}",
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts.insert(0, f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB)")
    return "Machine: " + "; ".join(parts)


def add_common_args(p: "argparse.ArgumentParser") -> None:
    """The flags every benchmark script takes: --device, --threads, --quick, --default-malloc."""
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    add_malloc_arg(p)


def add_malloc_arg(p: "argparse.ArgumentParser") -> None:
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc as it is (default: tune it as the CLI does, for every variant)")


_MALLOC = {"state": "glibc default"}


def malloc_state() -> str:
    return _MALLOC["state"]


def apply_malloc(default_malloc: bool) -> None:
    """Tune malloc like ``python -m dream_core`` does, unless ``default_malloc``.

    Without it glibc's *dynamic* mmap threshold makes every large allocation's
    cost depend on what the process allocated before (page faults and zero-fill
    per step or not), so a variant's time changed with the variant run before it:
    up to 40% on our later video frames when interleaved with the original
    pipeline. Tuned, every variant in the run (the original pipeline included)
    reuses freed memory the same way.
    """
    if default_malloc:
        return
    from dream_core.allocator import keep_freed_memory

    if keep_freed_memory():
        _MALLOC["state"] = "tuned as the CLI does (keep_freed_memory)"


def pick_device(name: Optional[str]) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Sample:
    """One timed run: wall-clock seconds and process CPU seconds (all threads)."""

    wall: float
    cpu: float


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, Sample]:
    sync(device)
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    sync(device)
    return out, Sample(time.perf_counter() - w0, time.process_time() - c0)


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 1
) -> dict[str, list[Sample]]:
    """Run every variant ``warmup`` times, then ``repeats`` rounds of all variants in turn
    (the order rotates each round); return each variant's samples."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            timed(variants[name], device)
    out: dict[str, list[Sample]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].append(timed(variants[name], device)[1])
    return out


def med_wall(samples: Sequence[Sample]) -> float:
    return statistics.median(s.wall for s in samples)


def med_cpu(samples: Sequence[Sample]) -> float:
    return statistics.median(s.cpu for s in samples)


def matmul_rate(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> Sample:
    """Dense ``n x n`` matmul rate in GFLOP/s as a :class:`Sample` (``wall``: by wall clock,
    ``cpu``: by process CPU time per thread), median of ``repeats``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    samples = interleaved({"mm": lambda: a @ b}, repeats, device, warmup=2)["mm"]
    flops = 2.0 * n**3
    threads = 1 if device.type == "cuda" else torch.get_num_threads()
    return Sample(flops / med_wall(samples) / 1e9, flops / (med_cpu(samples) / threads) / 1e9)


# --------------------------------------------------------------------------- tables


def fmt(value: object, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str = "") -> str:
    """A markdown table (floats with 2 decimals unless pre-formatted as strings)."""
    lines = [f"\n### {title}\n"] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory


def _status_kb(field: str, pid: str = "self") -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb(pid: str = "self") -> Optional[float]:
    """Current resident set size in MiB (Linux; ``None`` elsewhere)."""
    kb = _status_kb("VmRSS", pid)
    return None if kb is None else kb / 1024


def peak_rss_mb(pid: str = "self") -> Optional[float]:
    """Peak resident set size (VmHWM) in MiB (Linux; ``None`` elsewhere)."""
    kb = _status_kb("VmHWM", pid)
    return None if kb is None else kb / 1024


# --------------------------------------------------------------------------- models and frames


def bench_model(name: str, device: torch.device):
    """The registered model ``name``: real weights for the offline default, random init otherwise.

    Speed does not depend on weight values; models whose weights would have to
    be downloaded get ``spec.build()``'s random initialisation.
    """
    from dream_core.models import get_spec, load_model
    from dream_core.models.spec import DreamModel

    spec = get_spec(name)
    if spec.offline:
        return load_model(name, device=device)
    with torch.inference_mode(False), torch.no_grad():
        torch.manual_seed(0)
        net = spec.build().to(device)
    return DreamModel(spec, net, "random init (benchmark)")


def clip_frames(count: int, size: Optional[tuple[int, int]], path: Path = CLIP, start: int = 0) -> list[torch.Tensor]:
    """``count`` frames of ``path`` as ``[1,3,h,w]`` float 0..1 at ``size`` (``None``: source size).

    Without the clip (e.g. in CI) a smooth synthetic pan of that size stands in.
    """
    from dream_core.image_ops import resize

    frames: list[torch.Tensor] = []
    if path.is_file():
        from dream_core.video import read_frames

        for arr in read_frames(path, start, start + count):
            x = torch.from_numpy(arr).permute(2, 0, 1)[None].float().div_(255)
            frames.append(resize(x, size) if size is not None else x)
        if len(frames) == count:
            return frames
    h, w = size or SIZES["720p"]
    scene = synthetic_scene(count, (h, w))
    return [scene[..., 8 * t: 8 * t + w].contiguous() for t in range(count)]


def synthetic_scene(count: int, size: tuple[int, int]) -> torch.Tensor:
    """A smooth random landscape ``[1,3,h,w + 8 * count]`` in 0..1: frame ``t`` of the synthetic pan is
    its columns ``8t .. 8t + w`` (what :func:`clip_frames` returns without the clip)."""
    h, w = size
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(1, 3, h // 16 + 2, (w + 8 * count) // 16 + 2, generator=g),
                                           size=(h, w + 8 * count), mode="bicubic", align_corners=False).clamp(0, 1)


def real_image(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The clip's first frame as ``[1,3,h,w]`` float 0..1 at ``size`` (``(h, w)``) on ``device``.

    Step timings use a real picture, not noise: on uniform noise EfficientNet-Lite0's
    gradients reach denormal floats, which made some oneDNN backward kernels up to 10x
    slower (a cost that real frames, even black ones, do not have).
    """
    h, w = size
    return clip_frames(1, (h, w))[0].to(device)


def to_uint8(frame: torch.Tensor) -> np.ndarray:
    """``[1,3,H,W]`` 0..1 -> ``[H,W,3]`` uint8 RGB."""
    return frame[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


class Parts:
    """Wall and process-CPU seconds accumulated per named part of a pipeline.

    Use ``with parts("flow"): ...``; :meth:`take` returns and clears the totals as
    ``{part: Sample}``. Nested parts are allowed (each counts its own span).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.t: dict[str, list[float]] = {}

    def __call__(self, name: str) -> "_PartSpan":
        return _PartSpan(self, name)

    def add(self, name: str, wall: float, cpu: float) -> None:
        acc = self.t.setdefault(name, [0.0, 0.0])
        acc[0] += wall
        acc[1] += cpu

    def take(self) -> dict[str, Sample]:
        out = {k: Sample(w, c) for k, (w, c) in self.t.items()}
        self.t = {}
        return out


class _PartSpan:
    def __init__(self, parts: Parts, name: str) -> None:
        self.parts, self.name = parts, name

    def __enter__(self) -> None:
        sync(self.parts.device)
        self.w0, self.c0 = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        sync(self.parts.device)
        self.parts.add(self.name, time.perf_counter() - self.w0, time.process_time() - self.c0)
