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

``--video`` measures what users see of a clip instead: the command line dreams the
shared clip into an ``.mp4`` exactly as a user runs it (``--frames`` frames,
``--max-side``, the default ``stable`` mode and ``independent`` for comparison, same
settings), then the encoded files are decoded and measured against the input with
:func:`dream_core.stability.stability_metrics` (DIS flow of the input,
forward-backward reliable pixels): excess flicker over strength, strength against
``independent``, the first frame's strength over the later frames' mean (the "pop"),
and the worst pair at a 30-frame mark (where segments of the resumable writer join)
over the median pair (the "pulse").
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _bench import REPO, add_common_args, apply_malloc, machine_line, pick_device, table  # noqa: E402

from dream_core import DreamSettings, dream_image, load_model  # noqa: E402
from dream_core.image_ops import gaussian_blur, resize  # noqa: E402
from dream_core.presets import PRESETS, preset_settings  # noqa: E402

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
        from dream_core.video import read_frames

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


def _decoded(path: Path, end: int, max_side: int) -> list[torch.Tensor]:
    from dream_core.image_io import from_uint8_hwc
    from dream_core.image_ops import fit_max_side
    from dream_core.video import read_frames

    return [fit_max_side(from_uint8_hwc(arr), max_side, multiple=2) for arr in read_frames(path, 0, end)]


def video_look(args: argparse.Namespace, out_dir: Optional[Path]) -> None:
    """Dream the clip with the CLI in ``stable`` and ``independent`` mode; measure the encoded files."""
    import statistics
    import subprocess
    import tempfile

    from dream_core.stability import stability_metrics

    clip = PICTURES["balcony_frame0"]
    frames, max_side = (4, 96) if args.quick else (args.frames, args.video_max_side)
    extra = ["--octaves", "2", "--iterations", "2"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    inputs = _decoded(clip, frames, max_side)
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory(prefix="look-video-") as tmp:
        for mode in ("stable", "independent"):
            out = Path(tmp) / f"{mode}.mp4"
            cmd = [sys.executable, "-m", "dream_core", "video", str(clip), str(out), "--end", str(frames),
                   "--max-side", str(max_side), "--mode", mode, "--preset", args.video_preset, "--no-resume",
                   *threads, *extra]
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
            seconds = (time.perf_counter() - t0) / frames
            outputs[mode] = _decoded(out, frames, 0)
            m = stability_metrics(inputs, outputs[mode], method="dis")
            pairs = [e for e in m.pair_warp_err_out if e == e]
            median = statistics.median(pairs)
            marks = [m.pair_warp_err_out[t - 1] / median for t in range(30, frames, 30)]
            later = statistics.mean(m.frame_strength[1:])
            rows.append([mode, m.excess_flicker, m.strength, m.ratio, m.frame_strength[0] / later,
                         max(marks) if marks else float("nan"), seconds])
    independent = rows[1][2]
    h, w = inputs[0].shape[-2:]
    print(table(
        ("mode", "excess flicker", "strength", "strength / independent", "excess / strength",
         "first frame / later mean", "worst 30-frame mark / median pair", "s/frame (CLI, incl. load)"),
        [[r[0], f"{r[1]:.4f}", f"{r[2]:.4f}", f"{r[2] / independent:.2f}x", f"{r[3]:.3f}", f"{r[4]:.2f}",
          f"{r[5]:.2f}", f"{r[6]:.2f}"] for r in rows],
        title=f"video: {clip.name}, {frames} frames at {w}x{h}, preset {args.video_preset}, encoded .mp4 (crf 18)"))
    if out_dir:
        picks = [0, frames // 2, frames - 1]
        sheet = strip([x for t in picks for x in (inputs[t], outputs["stable"][t], outputs["independent"][t])],
                      [f"{name} {t}" for t in picks for name in ("input", "stable", "independent")])
        sheet.save(out_dir / "look_video.jpg", quality=90)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variants")
    p.add_argument("--pictures", default=",".join(PICTURES), help="comma-separated: " + ", ".join(PICTURES))
    p.add_argument("--max-side", type=int, default=0, help="shrink pictures to this longer side (0 = as they are)")
    p.add_argument("--out", default=None, help="folder for comparison strips (JPEG)")
    p.add_argument("--video", action="store_true", help="measure the clip dreamed by the CLI to .mp4 instead")
    p.add_argument("--frames", type=int, default=64, help="--video: frames of the clip")
    p.add_argument("--video-max-side", type=int, default=640, help="--video: the CLI's --max-side")
    p.add_argument("--video-preset", default="classic", help="--video: the CLI's --preset")
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
    print(machine_line(device))
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    if args.video:
        video_look(args, out_dir)
        return 0
    model = load_model(device=device)
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
