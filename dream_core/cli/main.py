"""The command line's entry: ``deepdream-video`` / ``python -m dream_core {image,video,animate,demo,batch} ...``.

Parses, sets up logging, threads, the fast-path switch and malloc, runs the
command, and turns core errors into one line with the command line's own
remedy (:data:`~dream_core.cli.args.REMEDIES`) and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from .. import allocator
from ..errors import DreamCancelled, DreamError, with_remedy
from ..catalog import layer_catalog
from ..errors import InvalidParameterError
from ..image_io import load_image
from ..models import get_spec, list_models, load_model
from ..ranking import RANK_MAX_SIDE, strongest_channels
from . import checks
from .args import REMEDIES, HelpFormatter, apply_threads, pick_device
from .animate import add_animate_command
from .batch import add_batch_command
from .demo import add_demo_command
from .image import add_image_command
from .video import add_video_command

log = logging.getLogger("dream_core")

#: The program name shown in usage lines when no other is given.
PROG = "deepdream-video"


def list_models_text() -> str:
    """One line per registered model: name, whether its weights work offline, description."""
    lines = []
    for name in list_models():
        spec = get_spec(name)
        lines.append(f"{name:20s} {'offline' if spec.offline else 'needs weights file/download':28s} {spec.description}")
    return "\n".join(lines)


def list_layers_text(model_name: str, image: Optional[str] = None, top: int = 8) -> str:
    """``model_name``'s dreamable layers with channel counts (needs no weights); with ``image`` (a file),
    also each layer's ``top`` strongest channels on that picture with their mean activations (loads the model)."""
    info = layer_catalog(model_name)
    strongest: dict[str, list[tuple[int, float]]] = {}
    head = f"Layers of {model_name} (shallow to deep; default objective: {info['objective']})"
    if image is not None:
        if top < 1:
            raise InvalidParameterError(f"--top must be at least 1; got {top}.")
        model = load_model(model_name, device=pick_device(None))
        strongest = strongest_channels(model, load_image(image), top)
        head += (f"; strongest channels on {Path(image).name} as channel:mean activation (ranked at most "
                 f"{RANK_MAX_SIDE} px; 'layer:strong{top}' dreams them)")
    lines = [head + ":"]
    for entry in info["layers"]:
        c = entry["channels"]
        line = f"  {entry['name']:32s} {c:5d} channels  (0..{c - 1})"
        if entry["name"] in strongest:
            line += "  " + " ".join(f"{ch}:{mean:.2f}" for ch, mean in strongest[entry["name"]])
        lines.append(line)
    return "\n".join(lines)


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or PROG,
        description="DeepDream images and flow-stable DeepDream videos.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--list-models", action="store_true", help="list registered models and exit")
    p.add_argument("--list-layers", metavar="MODEL", help="list MODEL's dreamable layers with channel counts and exit")
    p.add_argument("--image", metavar="IN", default=None,
                   help="with --list-layers: also show each layer's strongest channels on this picture")
    p.add_argument("--top", type=int, default=8, help="with --list-layers --image: strongest channels per layer")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command")
    add_image_command(sub)
    add_video_command(sub)
    add_animate_command(sub)
    add_demo_command(sub)
    add_batch_command(sub)
    return p


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 the file system refused, 2 bad input, 130
    interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.list_models:
            print(list_models_text())
            return 0
        if args.image is not None and not args.list_layers:
            parser.error("--image goes with --list-layers MODEL (the input of a dream is given after its command)")
        if args.list_layers:
            print(list_layers_text(args.list_layers, args.image, args.top))
            return 0
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        checks.check_run_arguments(args)
        apply_threads(args.threads)
        checks.warn_if_busy(args.threads, args.device)
        if args.command != "image":  # the image command decides by the image's size (cli/image.py)
            allocator.keep_freed_memory()  # this process dreams for a long time: reuse freed activation memory
        return args.func(args)
    except DreamError as exc:
        log.error("%s", with_remedy(exc, {**REMEDIES, **checks.REMEDIES}))
        return 2
    except (KeyboardInterrupt, DreamCancelled):
        log.error("%s", checks.interrupted_message(args, argv, prog or PROG))
        return 130
    except OSError as exc:  # a full disk, a read-only or vanished folder: our message, not a traceback
        log.debug("File system error", exc_info=True)
        log.error("%s", checks.filesystem_message(exc, args, argv, prog or PROG))
        return 1
