"""Mask sources (dream_core.animation.masks) and the mask in a single image dream."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import textured_image
from dream_core import DreamSettings, dream_image
from dream_core.animation import MaskSource, VideoMask, load_mask
from dream_core.errors import InvalidImageError

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=3, jitter=4)


def test_image_dream_keeps_black_and_scales_grey(tiny_model):
    x = textured_image(48, 64)
    mask = torch.zeros(48, 64)
    mask[:, 32:] = 1.0
    mask[:, 16:32] = 0.5
    full = dream_image(tiny_model, x, "conv2", FAST)
    out = dream_image(tiny_model, x, "conv2", FAST, mask=mask)
    assert torch.equal(out[..., :16], x[..., :16])
    half = (out[..., 18:30] - x[..., 18:30]).abs().mean()
    assert 0 < half < (out[..., 34:] - x[..., 34:]).abs().mean()
    # The steps themselves are masked (patterns form inside the mask), not only the result blended afterwards.
    assert not torch.allclose(out, torch.lerp(x, full, mask), atol=1e-4)
    small = torch.zeros(12, 16)  # another size: resized to the image
    assert torch.equal(dream_image(tiny_model, x, "conv2", FAST, mask=small), x)


def test_mask_files_image_and_video(tmp_path):
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[:, 20:] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png")(7)
    assert m.shape == (1, 1, 30, 40) and m[..., :20].max() == 0 and m[..., 20:].min() == 1

    from dream_core.video import VideoWriter

    with VideoWriter(tmp_path / "m.mp4", Fraction(10), resume=False, crf=0) as writer:
        for k in range(4):
            frame = np.zeros((30, 40, 3), np.uint8)
            frame[:, : 10 * (k + 1)] = 255
            writer.write(frame)
    video = load_mask(tmp_path / "m.mp4")
    assert isinstance(video, VideoMask)
    widths = [int((video(k)[0, 0, 15] > 0.5).sum()) for k in (0, 1, 3, 2)]
    assert widths == [10, 20, 40, 30]
    with pytest.raises(InvalidImageError, match="has 4 frames"):
        video(4)
    with pytest.raises(InvalidImageError, match="not found"):
        load_mask(tmp_path / "none.png")


def test_bad_masks_are_refused():
    with pytest.raises(InvalidImageError, match="One mask per image"):
        MaskSource(torch.zeros(2, 8, 8))
    with pytest.raises(InvalidImageError, match="NaN"):
        MaskSource(torch.full((8, 8), float("nan")))
