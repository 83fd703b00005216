"""dream_core.image_io: bit depths scaled to 0..1, sizes checked from the header, outputs checked before the work."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import textured_image
from dream_core.errors import InvalidImageError, InvalidParameterError
from dream_core.image_io import check_output_image, image_size, load_image, save_image
from dream_core.image_ops import MAX_PIXELS

RAMP = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` RGB pixels and holds none (a few dozen bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_16_bit_gray_png_keeps_its_range(tmp_path):
    Image.fromarray(RAMP).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (1, 3, 48, 64) and image.dtype == torch.float32
    expected = torch.from_numpy(RAMP.astype(np.float32) / 65535)
    for c in range(3):  # gray repeated, scaled by 65535 (not clipped at 255: the audit's near-white picture)
        torch.testing.assert_close(image[0, c], expected)


@pytest.mark.parametrize("name", ["rgb16.png", "rgb16.tif", "rgba16.png"])
def test_16_bit_colour_png_and_tiff_keep_their_range(tmp_path, name):
    cv2 = pytest.importorskip("cv2")
    rgb = np.stack([RAMP, RAMP[::-1], RAMP // 2], axis=-1)
    pixels = np.concatenate([rgb, np.full_like(RAMP, 65535)[..., None]], -1)[..., [2, 1, 0, 3]] \
        if name.startswith("rgba") else rgb[..., ::-1]
    assert cv2.imwrite(str(tmp_path / name), np.ascontiguousarray(pixels))
    image = load_image(tmp_path / name)
    expected = torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1)
    assert (image[0] - expected).abs().max() < 1 / 255 + 1e-6  # Pillow reads 16-bit colour as 8 bits a channel


def test_size_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    import dream_core.image_io as image_io

    def no_decoding(im):
        raise AssertionError("the pixels were decoded before the size was checked")

    monkeypatch.setattr(image_io, "_to_rgb_array", no_decoding)  # was: 3.95 GB to decode, then refused
    path = header_only_png(tmp_path / "huge.png", 12000, 8000)
    assert image_size(path) == (12000, 8000)
    with pytest.raises(InvalidImageError, match=r"12000x8000 = 96 MP.*max_side=\d+") as info:
        load_image(path)
    assert info.value.parameter == "image"
    fits = int(str(info.value).split("max_side=")[1].split()[0])
    assert fits * fits * 8000 / 12000 <= MAX_PIXELS < (fits + 2) ** 2 * 8000 / 12000


def test_header_past_pillows_bomb_limit_is_a_clear_error(tmp_path):
    path = header_only_png(tmp_path / "bomb.png", 20000, 20000)  # Pillow itself raises DecompressionBombError
    with pytest.raises(InvalidImageError, match="too large to decode.*image editor") as info:
        load_image(path, max_side=1000)
    assert info.value.parameter is None  # no --max-side remedy: it cannot be read to be shrunk


def test_max_side_shrinks_while_reading_and_is_checked(tmp_path):
    save_image(textured_image(60, 80), tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", max_side=40).shape == (1, 3, 30, 40)
    with pytest.raises(InvalidParameterError, match="max_side") as info:
        load_image(tmp_path / "a.png", max_side=-5)
    assert info.value.parameter == "max_side"


def test_truncated_file_is_an_image_error(tmp_path):
    save_image(textured_image(64, 64), tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing/out.png", "does not exist"),
        ("out.psd", "cannot be written"),
        ("out", "no extension"),
        ("folder", "is a folder"),
        ("in.png", "input image"),
    ],
)
def test_output_is_checked_before_the_work(tmp_path, name, match):
    (tmp_path / "folder").mkdir()
    (tmp_path / "in.png").write_bytes(b"")
    with pytest.raises(InvalidParameterError, match=match) as info:
        check_output_image(tmp_path / name, source=tmp_path / "in.png")
    assert info.value.parameter == "output"


def test_writable_outputs_pass_and_save(tmp_path):
    for ext in (".png", ".jpg", ".webp", ".tif"):
        path = check_output_image(tmp_path / f"out{ext}", source=tmp_path / "in.png")
        save_image(textured_image(16, 16), path)
        assert load_image(path).shape == (1, 3, 16, 16)
    with pytest.raises(InvalidParameterError, match="cannot be written"):
        save_image(textured_image(16, 16), tmp_path / "out.psd")
    assert not list(tmp_path.glob("*.partial"))


def test_max_side_that_still_leaves_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = header_only_png(tmp_path / "huge.png", 12000, 8000)
    with pytest.raises(InvalidImageError, match=r"max_side=10000 it is still over the limit.*max_side=\d+") as info:
        load_image(path, max_side=10000)
    assert info.value.parameter == "max_side"


def test_large_image_shrunk_while_reading_matches_a_float_resize(tmp_path):
    from dream_core.image_ops import fit_max_side

    image = textured_image(300, 400)
    save_image(image, tmp_path / "big.png")
    full = load_image(tmp_path / "big.png")
    small = load_image(tmp_path / "big.png", max_side=100)  # reduced by 4 in 8 bits first
    assert small.shape == (1, 3, 75, 100)
    resized = fit_max_side(full, 100)
    assert (small - resized).abs().mean() < 0.02  # box vs triangle filter on a texture: same picture
    assert (small.mean() - resized.mean()).abs() < 0.002  # and no shift of brightness or position


def test_8000x8000_is_refused_from_its_header(tmp_path):
    # It passed the old 67 MP limit and took over 10 GB before its first step.
    with pytest.raises(InvalidImageError, match=r"8000x8000 = 64 MP; the limit is 48 MP.*max_side=6928") as info:
        load_image(header_only_png(tmp_path / "square.png", 8000, 8000))
    assert info.value.parameter == "image"
