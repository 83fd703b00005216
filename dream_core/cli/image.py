"""``image IN OUT``: dream one image file."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Optional

import torch

from .. import allocator
from ..animation import load_mask
from ..dream import check_image_for_dream, dream_image
from ..errors import InvalidParameterError
from ..image_io import check_output_image, load_image, save_image
from ..colour import match_colour_balance
from ..image_ops import as_mask
from ..models import load_model
from ..clip.plan import INTEGER_SETTINGS, SCHEDULABLE, parse_setting_schedule
from ..objectives import resolve_objective
from .animation_args import schedules_from_args
from .args import HelpFormatter, add_dream_arguments, given, pick_device, progress_bar, settings_from_args
from .paths import check_distinct_paths

log = logging.getLogger("dream_core")


def run_image(args: argparse.Namespace) -> int:
    """Dream ``args.input`` into ``args.output``.

    Everything that can fail is checked before the dream: the output path and
    format (not any input), the input's size (from its header), the guide, the mask, the model and objective.
    """
    settings = settings_from_args(args)
    check_output_image(args.output, source=args.input)
    check_distinct_paths(args)
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
    # batch: the clips' --colour-coherence reaches its images when typed (the image command has no such flag,
    # and an image of a batch is dreamed as the image command dreams it)
    coherence = args.colour_coherence if "colour_coherence" in given(args) else None
    if coherence:
        matched = match_colour_balance(out, image, float(coherence))
        out = matched if mask is None else torch.lerp(out, matched, as_mask(mask, tuple(out.shape[-2:])))
    del image
    save_image(out, args.output)
    log.info("Wrote %s (%dx%d) in %.1f s", args.output, out.shape[-1], out.shape[-2], time.perf_counter() - t0)
    return 0


def mask_from_args(args: argparse.Namespace) -> Optional[torch.Tensor]:
    """``--mask`` as one mask (its luminance, ``[1,1,H,W]`` in ``0..1``; resized to the input by the dream), or
    ``None``. A mask video gives its first frame: an image is a clip's frame 0, as in ``batch``, where the clips
    take the whole mask video and the images its first frame.

    Raises:
        InvalidImageError, VideoError: a missing or unreadable file.
    """
    return load_mask(args.mask)(0) if getattr(args, "mask", None) else None


def image_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags as a still image takes them (``batch`` passes the clips' flags): each schedule of a dream
    setting, of ``--layers`` or ``--colour-coherence`` replaced by its value at frame 0 (an image is a clip's
    first frame); the video and motion schedules are the clips' alone.

    Raises:
        InvalidParameterError: a schedule that mixes frame and second keys with none at 0 (which comes
            first depends on a frame rate an image does not have).
    """
    values: dict[str, object] = {}
    for name, text in schedules_from_args(args).items():
        if SCHEDULABLE[name][0] not in ("dream", "objective") and name != "colour_coherence":
            continue
        schedule = parse_setting_schedule(name, text, args.interpolation)
        seconds = {k.seconds for k in schedule.keys}
        if len(seconds) > 1 and not any(k.at == 0 for k in schedule.keys):
            raise InvalidParameterError(
                f"{name}: images take each schedule's value at frame 0, and {text!r} mixes keys in frames and "
                "seconds with none at 0, so its first key depends on a clip's frame rate. Add a key at 0.",
                parameter=name,
            )
        value = schedule.at(0, 1.0 if schedule.uses_seconds else None)  # any rate: the first key's value
        if name == "objective":
            values["layers"] = value[0][0]  # type: ignore[index]  # at a key: one objective, weight 1
        else:
            values[name] = round(value) if name in INTEGER_SETTINGS else value  # type: ignore[arg-type]
    return argparse.Namespace(**{**vars(args), **values})


def check_image_flags(args: argparse.Namespace) -> None:
    """What every image of a batch shares, checked once before the first is dreamed: the settings, the model
    and objective, the guide and the mask.

    Raises:
        DreamError: the first of them that is wrong.
    """
    from ..distributed.job import cached_model

    settings_from_args(args)
    model = cached_model(args.model, args.weights, torch.device("cpu"))
    resolve_objective(model, args.layers)
    if args.guide:
        load_image(args.guide)
    mask_from_args(args)


def add_image_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("image", help="dream one image", description="Dream one image file.",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="input image (PNG/JPEG/WebP/TIFF, 8 or 16 bits)")
    p.add_argument("output", help="output image; format from the extension (.png, .jpg, .webp, .tif)")
    p.add_argument("--mask", default=None,
                   help="where to dream: an image (white = dream, black = keep, grey = weaker; resized to the input) "
                        "or a video (its first frame); outside it the input comes back unchanged; none: everywhere")
    add_dream_arguments(p)
    p.set_defaults(func=run_image)
