"""Inputs read the way viewers show them (EXIF orientation, palette/1-bit/16-bit modes), shrunk or not, and
images written with the umask's permissions (issue 20)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from conftest import textured_image
from dream_core.animation import load_mask
from dream_core.image_io import image_size, load_image, save_image
from dream_core.image_ops import fit_max_side


def _stored(h: int = 40, w: int = 60) -> np.ndarray:
    """An asymmetric picture: every orientation of it is different."""
    return (textured_image(h, w, seed=4)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _with_orientation(path, pixels: np.ndarray, value: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    Image.fromarray(pixels).save(path, exif=exif.tobytes())


@pytest.mark.parametrize("value", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_show_it(tmp_path, value):
    path = tmp_path / f"o{value}.png"
    _with_orientation(path, _stored(), value)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))  # Pillow's viewer rule
    image = load_image(path)
    assert image.shape[-2:] == shown.shape[:2]
    assert torch.equal((image[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(shown))
    assert image_size(path) == (shown.shape[1], shown.shape[0])  # the header size, upright too


def test_exif_orientation_is_applied_when_shrunk_and_to_jpeg_and_masks(tmp_path):
    """A portrait phone photo (stored landscape, orientation 6) is portrait on every path: shrunk while
    reading (JPEG draft + reduce), as a mask."""
    _with_orientation(tmp_path / "phone.jpg", _stored(120, 200), 6)
    full = load_image(tmp_path / "phone.jpg")
    assert full.shape == (1, 3, 200, 120)
    small = load_image(tmp_path / "phone.jpg", max_side=50)
    assert small.shape == (1, 3, 50, 30)
    assert (small - fit_max_side(full, 50)).abs().mean() < 0.03  # the same picture, not a rotated one
    top = np.zeros((120, 200), np.uint8)
    top[:, :100] = 255  # stored: the left half white; shown (turned 90 degrees clockwise): the top half
    _with_orientation(tmp_path / "mask.png", np.repeat(top[..., None], 3, 2), 6)
    mask = load_mask(tmp_path / "mask.png")(0)
    assert mask.shape[-2:] == (200, 120)
    assert mask[..., :100, :].min() == 1 and mask[..., 100:, :].max() == 0


@pytest.mark.parametrize("mode", ["P", "P+tRNS", "1", "I;16", "LA"])
def test_every_png_mode_reads_the_same_shrunk_or_not(tmp_path, mode):
    rgb = (textured_image(120, 160, seed=6)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    im = Image.fromarray(rgb)
    if mode == "I;16":
        im = Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257))
    else:
        im = im.convert(mode[0] if mode == "P+tRNS" else mode)
    im.save(tmp_path / "m.png", **({"transparency": 3} if mode == "P+tRNS" else {}))  # palette entry 3 clear
    assert Image.open(tmp_path / "m.png").mode == mode.split("+")[0]
    full = load_image(tmp_path / "m.png")
    small = load_image(tmp_path / "m.png", max_side=40)  # reduced by 4 while reading: was 'wrong mode'
    assert small.shape == (1, 3, 30, 40)
    tolerance = 0.12 if mode == "1" else 0.03  # dithered 1-bit: box and triangle filters differ most
    assert (small - fit_max_side(full, 40)).abs().mean() < tolerance
    assert (small.mean() - full.mean()).abs() < 0.01  # a palette's indices were not averaged


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_images_get_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_image(textured_image(8, 8), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no partial file left
