"""``image IN OUT``: dream one image file."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from .. import allocator
from ..animation import load_mask
from ..animation.masks import VIDEO_SUFFIXES
from ..dream import check_image_for_dream, dream_image
from ..errors import InvalidParameterError
from ..image_io import check_output_image, load_image, save_image
from ..models import load_model
from ..objectives import resolve_objective
from .args import HelpFormatter, add_dream_arguments, pick_device, progress_bar, settings_from_args

log = logging.getLogger("dream_core")


def run_image(args: argparse.Namespace) -> int:
    """Dream ``args.input`` into ``args.output``.

    Everything that can fail is checked before the dream: the output path and
    format, the input's size (from its header), the guide, the mask, the model and objective.
    """
    settings = settings_from_args(args)
    check_output_image(args.output, source=args.input)
    image = load_image(args.input, max_side=args.max_side)
    if max(image.shape[-2:]) <= settings.tile_size:
        # Small images: reuse freed activation memory step after step. Large (tiled) ones keep
        # the default: heap fragments between their full-size buffers would raise the peak.
        allocator.keep_freed_memory()
    guide = load_image(args.guide) if args.guide else None
    mask = mask_from_args(args)
    model = load_model(args.model, weights=args.weights, device=pick_device(args.device))
    objective = resolve_objective(model, args.layers)
    check_image_for_dream(image, model, settings)
    total = settings.num_octaves * settings.num_iterations
    t0 = time.perf_counter()
    out = dream_image(model, image, objective, settings, guide=guide, mask=mask,
                      on_step=progress_bar(total, f"dreaming {args.input}"))
    del image
    save_image(out, args.output)
    log.info("Wrote %s (%dx%d) in %.1f s", args.output, out.shape[-1], out.shape[-2], time.perf_counter() - t0)
    return 0


def mask_from_args(args: argparse.Namespace) -> Optional[torch.Tensor]:
    """``--mask`` read as one mask image (its luminance, ``[1,1,H,W]`` in ``0..1``; resized to the input by the
    dream), or ``None``.

    Raises:
        InvalidParameterError: a video file (one mask per frame is for the video and animate commands).
        InvalidImageError: a missing or unreadable file.
    """
    if not args.mask:
        return None
    if Path(args.mask).suffix.lower() in VIDEO_SUFFIXES:
        raise InvalidParameterError(
            f"The image command takes one mask image; '{args.mask}' is a video (one mask per frame, for the video "
            "and animate commands). Give a PNG/JPEG mask.", parameter="mask")
    return load_mask(args.mask)(0)


def add_image_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("image", help="dream one image", description="Dream one image file.",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="input image (PNG/JPEG/WebP/TIFF, 8 or 16 bits)")
    p.add_argument("output", help="output image; format from the extension (.png, .jpg, .webp, .tif)")
    p.add_argument("--mask", default=None,
                   help="where to dream: an image (white = dream, black = keep, grey = weaker; resized to the input); "
                        "outside it the input comes back unchanged; none: everywhere")
    add_dream_arguments(p)
    p.set_defaults(func=run_image)
