"""The look: colour static, strength, saturation and speed of each gradient step, on real pictures.

Run from the repository root::

    python benchmarks/look.py [--out out/look] [--max-side 0] [--variants legacy,classic,...]

For both photos in ``../shared/data`` and the first frame of its clip, every
variant dreams the picture with the offline default model and the table gives:

* **fine chroma**: fine colour detail of the output over the input's, where fine
  colour detail is ``mean |C - GaussianBlur(C, sigma 1.5 px)|`` over Cb and Cr
  (BT.601), measured at the output's size: the "TV static" of a dream (1.0 = as much
  as the photo itself has);
* **fine luma**: the same on luminance (grain);
* **strength**: mean ``|out - in|`` in ``0..1`` RGB;
* **saturation**: mean HSV saturation, input -> output;
* **s**: seconds of the dream (model loaded once; noisy on a shared machine: see
  ``dream_speed.py`` for speed).

Variants (``--variants``, comma separated): the presets (``legacy`` = the step of
earlier versions, ``classic`` = today's defaults, ``gentle``, ``intense``) and the
candidates the default was chosen from, all at the default learning rate:
``plain`` (the old per-pixel RGB rule), ``plain-smooth`` (old rule, smoothing 1.5 px),
``decorrelated`` (colour decorrelation 0.5 without Laplacian normalisation),
``lapnorm-rgb`` (Laplacian normalisation without colour decorrelation),
``lapnorm-full`` (full colour decorrelation, 1.0).

``--out DIR`` writes one comparison strip per picture (input, then every variant,
each labelled) as JPEG, for looking at.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import _bench  # noqa: F401  (puts the repository on sys.path)
import torch
from _bench import REPO, add_common_args, apply_malloc, machine_line, pick_device, table

from dream_core import DreamSettings, dream_image, load_model
from dream_core.image_ops import gaussian_blur, resize
from dream_core.presets import PRESETS, preset_settings

DATA = REPO.parent / "shared" / "data"
PICTURES = {"golden_gate": DATA / "golden_gate.jpg", "tubingen": DATA / "tubingen.jpg",
            "balcony_frame0": DATA / "balcony_view.mp4"}

_D = DreamSettings()
CANDIDATES = {
    "plain": _D.with_(step_rule="plain", colour_decorrelation=0.0),
    "plain-smooth": _D.with_(step_rule="plain", colour_decorrelation=0.0, gradient_smoothing=1.5),
    "decorrelated": _D.with_(step_rule="plain"),
    "lapnorm-rgb": _D.with_(colour_decorrelation=0.0),
    "lapnorm-full": _D.with_(colour_decorrelation=1.0),
}
DEFAULT_VARIANTS = ("legacy", "plain", "plain-smooth", "decorrelated", "lapnorm-rgb", "lapnorm-full",
                    "classic", "gentle", "intense")

# BT.601 (JPEG) chroma rows.
_CB = (-0.168736, -0.331264, 0.5)
_CR = (0.5, -0.418688, -0.081312)
_Y = (0.299, 0.587, 0.114)


def variant_settings(name: str) -> DreamSettings:
    if name in PRESETS:
        return preset_settings(name)
    if name in CANDIDATES:
        return CANDIDATES[name]
    raise SystemExit(f"Unknown variant {name!r}; choose from {', '.join(list(PRESETS) + list(CANDIDATES))}.")


def _project(image: torch.Tensor, rows: Sequence[Sequence[float]]) -> torch.Tensor:
    m = torch.tensor(rows, dtype=image.dtype, device=image.device)
    return torch.einsum("ij,bjhw->bihw", m, image)


def fine_detail(image: torch.Tensor, rows: Sequence[Sequence[float]], sigma: float = 1.5) -> float:
    """``mean |P - GaussianBlur(P, sigma)|`` of the projection ``P`` of ``image`` ``[1,3,H,W]`` on ``rows``."""
    p = _project(image, rows)
    return float((p - gaussian_blur(p, sigma)).abs().mean())


def saturation(image: torch.Tensor) -> float:
    hi, lo = image.max(dim=1).values, image.min(dim=1).values
    return float(((hi - lo) / hi.clamp_min(1e-6)).mean())


def look_figures(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """Fine chroma / luma ratios, strength and saturation of ``after`` against ``before`` (``[1,3,H,W]``, 0..1)."""
    return {
        "chroma": fine_detail(after, (_CB, _CR)) / max(1e-9, fine_detail(before, (_CB, _CR))),
        "luma": fine_detail(after, (_Y,)) / max(1e-9, fine_detail(before, (_Y,))),
        "strength": float((after - before).abs().mean()),
        "sat_in": saturation(before),
        "sat_out": saturation(after),
    }


def load_picture(path: Path, max_side: int) -> torch.Tensor:
    from dream_core.image_io import load_image

    if path.suffix == ".mp4":
        from dream_core.video_io import read_frames

        arr = next(iter(read_frames(path, 0, 1)))
        image = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    else:
        image = load_image(path)
    h, w = image.shape[-2:]
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        image = resize(image, (round(h * f), round(w * f)))
    return image


def strip(images: Sequence[torch.Tensor], labels: Sequence[str], width: int = 480):
    """Side-by-side labelled thumbnails (PIL image)."""
    from PIL import Image, ImageDraw

    from dream_core.image_io import to_uint8_hwc

    tiles = []
    for image, label in zip(images, labels):
        tile = Image.fromarray(to_uint8_hwc(image))
        tile = tile.resize((width, round(tile.height * width / tile.width)), Image.LANCZOS)
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, 7 * len(label) + 8, 16), fill=(0, 0, 0))
        draw.text((4, 3), label, fill=(255, 255, 255))
        tiles.append(tile)
    cols = min(3, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (width * cols, tiles[0].height * rows))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % cols) * width, (k // cols) * tiles[0].height))
    return sheet


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variants")
    p.add_argument("--pictures", default=",".join(PICTURES), help="comma-separated: " + ", ".join(PICTURES))
    p.add_argument("--max-side", type=int, default=0, help="shrink pictures to this longer side (0 = as they are)")
    p.add_argument("--out", default=None, help="folder for comparison strips (JPEG)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    apply_malloc(args.default_malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    variants = args.variants.split(",")
    names = args.pictures.split(",")
    max_side = args.max_side
    if args.quick:
        variants, names, max_side = ["legacy", "classic"], names[:1], 160
    settings = {v: variant_settings(v) for v in variants}
    if args.quick:
        settings = {v: s.with_(num_octaves=2, num_iterations=2) for v, s in settings.items()}
    missing = [n for n in names if not PICTURES[n].is_file()]
    if missing:
        raise SystemExit(f"Missing inputs {missing}: the real pictures live in {DATA}.")
    model = load_model(device=device)
    print(machine_line(device))
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = load_picture(PICTURES[name], max_side).to(device)
        rows, results = [], []
        for v in variants:
            t0 = time.perf_counter()
            out = dream_image(model, image, None, settings[v])
            seconds = time.perf_counter() - t0
            f = look_figures(image, out)
            results.append(out.cpu())
            rows.append((v, f"{f['chroma']:.2f}x", f"{f['luma']:.2f}x", f"{f['strength']:.4f}",
                         f"{f['sat_in']:.3f} -> {f['sat_out']:.3f}", f"{seconds:.1f}"))
        h, w = image.shape[-2:]
        print(table(("variant", "fine chroma", "fine luma", "strength", "saturation", "s"), rows,
                    title=f"{name} ({w}x{h}), model {model.name}, objective {model.spec.default_objective}"))
        if out_dir:
            sheet = strip([image.cpu()] + results, ["input"] + variants)
            sheet.save(out_dir / f"look_{name}.jpg", quality=90)
    for v in variants:
        print(f"{v}: {settings[v]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
