"""Command line: ``python -m dream_core {image,video,demo} ...``, ``--list-models``, ``--list-layers``.

Every dream parameter is a flag; defaults give a good-looking dream on the CPU
with the offline default model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable, Optional, Sequence

import torch

from .dream import AUTOCAST_DTYPES, DreamSettings
from .errors import DreamCancelled, DreamError, InvalidParameterError

log = logging.getLogger("dream_core")

_D = DreamSettings()


def add_dream_arguments(p: argparse.ArgumentParser, defaults: DreamSettings = _D) -> None:
    """Flags shared by ``image`` and ``video`` (one per :class:`DreamSettings` field, plus model/objective)."""
    g = p.add_argument_group("model and objective")
    g.add_argument("--model", default=None, help="registered model name (default: efficientnet_lite0; see --list-models)")
    g.add_argument("--weights", default=None, help="state dict file (.pth/.safetensors) for --model")
    g.add_argument("--layers", default=None,
                   help="objective, e.g. 'block10_dw' or 'block8_dw:12, 0.5*block12_dw:[3,7,10-20]' "
                        "(default: the model's own; see --list-layers MODEL)")
    g.add_argument("--guide", default=None, help="guide image: dream towards its features")
    d = p.add_argument_group("dream")
    d.add_argument("--octaves", type=int, default=defaults.num_octaves, help="number of scales (more = larger patterns)")
    d.add_argument("--octave-scale", type=float, default=defaults.octave_scale, help="size ratio between octaves (>1)")
    d.add_argument("--iterations", type=int, default=defaults.num_iterations, help="gradient steps per octave")
    d.add_argument("--lr", type=float, default=defaults.learning_rate, help="step size per iteration (larger = stronger)")
    d.add_argument("--jitter", type=int, default=defaults.jitter, help="max random shift per step, pixels")
    d.add_argument("--smoothing", type=float, default=defaults.gradient_smoothing, help="gradient blur sigma, pixels (0=off)")
    d.add_argument("--seed", type=int, default=defaults.seed, help="random seed (same seed -> same result)")
    d.add_argument("--luminance-only", action="store_true", help="keep the original colours")
    d.add_argument("--autocast", choices=list(AUTOCAST_DTYPES), default=defaults.autocast, help="mixed precision")
    d.add_argument("--tile-size", type=int, default=defaults.tile_size, help="tile larger images (pixels)")
    d.add_argument("--max-side", type=int, default=None, help="downscale the input so its longer side is at most this")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    d.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, one per core). On a VM whose cores "
                        "other work shares, --threads 1 can be several times faster (benchmarks/RESULTS.md, 'Threads')")


def settings_from_args(args: argparse.Namespace) -> DreamSettings:
    return DreamSettings(
        num_octaves=args.octaves,
        octave_scale=args.octave_scale,
        num_iterations=args.iterations,
        learning_rate=args.lr,
        jitter=args.jitter,
        gradient_smoothing=args.smoothing,
        seed=args.seed,
        luminance_only=args.luminance_only,
        autocast=args.autocast,
        tile_size=args.tile_size,
    )


def pick_device(name: Optional[str]) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_bar(total: int, desc: str, unit: str = "step") -> "Callable[[int, int, torch.Tensor], None]":
    """A tqdm bar on stderr as an ``on_step`` callback."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)

    def on_step(step: int, total_: int, _current: torch.Tensor) -> None:
        bar.total = total_
        bar.update(step - bar.n)
        if step >= total_:
            bar.close()

    return on_step


def _fit_max_side(image: torch.Tensor, max_side: Optional[int]) -> torch.Tensor:
    from .image_ops import resize

    if not max_side:
        return image
    h, w = image.shape[-2:]
    if max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    return resize(image, (max(1, round(h * f)), max(1, round(w * f))))


def cmd_image(args: argparse.Namespace) -> int:
    from .dream import check_image_for_dream, dream_image
    from .image_io import load_image, save_image
    from .models import DEFAULT_MODEL, load_model
    from .objectives import parse_objective

    settings = settings_from_args(args)
    settings.validate()
    image = _fit_max_side(load_image(args.input), args.max_side)
    model = load_model(args.model or DEFAULT_MODEL, weights=args.weights, device=pick_device(args.device))
    objective = parse_objective(args.layers or model.spec.default_objective, model)
    guide = load_image(args.guide) if args.guide else None
    check_image_for_dream(image, model, settings)
    total = settings.num_octaves * settings.num_iterations
    t0 = time.perf_counter()
    out = dream_image(model, image, objective, settings, guide=guide,
                      on_step=progress_bar(total, f"dreaming {args.input}"))
    save_image(out, args.output)
    log.info("Wrote %s (%dx%d) in %.1f s", args.output, out.shape[-1], out.shape[-2], time.perf_counter() - t0)
    return 0


def cmd_list_models() -> int:
    from .models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:20s} {'offline' if spec.offline else 'needs weights file/download':28s} {spec.description}")
    return 0


def cmd_list_layers(model_name: str, weights: Optional[str]) -> int:
    from .models import get_spec
    from .models.spec import DreamModel

    spec = get_spec(model_name)
    # Channel counts need no trained weights: probe the architecture itself.
    with torch.inference_mode(False), torch.no_grad():
        model = DreamModel(spec, spec.build(), "architecture only")
    counts = model.layer_channels()
    print(f"Layers of {model_name} (shallow to deep; default objective: {spec.default_objective}):")
    for name, c in counts.items():
        print(f"  {name:32s} {c:5d} channels  (0..{c - 1})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dream_core",
        description="DeepDream images and flow-stable DeepDream videos.",
    )
    p.add_argument("--list-models", action="store_true", help="list registered models and exit")
    p.add_argument("--list-layers", metavar="MODEL", help="list MODEL's dreamable layers with channel counts and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command")
    pi = sub.add_parser("image", help="dream one image", description="Dream one image file.")
    pi.add_argument("input", help="input image (PNG/JPEG/WebP)")
    pi.add_argument("output", help="output image; format from the extension")
    add_dream_arguments(pi)
    pi.set_defaults(func=cmd_image)
    try:
        from .video_cli import add_video_commands
    except ImportError:  # pragma: no cover - video support not built yet
        pass
    else:
        add_video_commands(sub)
    return p


def _apply_threads(threads: Optional[int]) -> None:
    """``--threads``: the number of CPU threads torch's operators use (``None``: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise InvalidParameterError(f"--threads must be at least 1; got {threads}. Leave it out to use one thread per core.")
    torch.set_num_threads(threads)
    log.debug("torch uses %d CPU thread(s).", threads)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.list_models:
            return cmd_list_models()
        if args.list_layers:
            return cmd_list_layers(args.list_layers, None)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        _apply_threads(getattr(args, "threads", None))
        from .allocator import keep_freed_memory

        keep_freed_memory()  # this process dreams for a long time: reuse freed activation memory
        return args.func(args)
    except DreamError as exc:
        log.error("%s", exc)
        return 2
    except (KeyboardInterrupt, DreamCancelled):
        log.error("Interrupted.")
        return 130
