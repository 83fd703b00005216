"""Reading and writing still images as ``[1,3,H,W]`` float tensors in ``0..1``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import InvalidImageError


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file as RGB ``[1,3,H,W]`` float32 in ``0..1``.

    Grayscale and palette images become RGB; alpha is dropped (composited on black).

    Raises:
        InvalidImageError: missing or unreadable file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"Image file not found: '{path}'.")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            rgb = np.array(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidImageError(f"Cannot read image '{path}': {exc}. Is it a PNG/JPEG/WebP image?") from exc
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def from_uint8_hwc(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 RGB (a decoded video frame) -> ``[1,3,H,W]`` float32 in ``0..1`` on ``device``."""
    return torch.from_numpy(frame).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """``[1,3,H,W]`` or ``[3,H,W]`` in ``0..1`` -> ``H x W x 3`` uint8 (rounded, clamped)."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def save_image(image: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Write ``[1,3,H,W]`` in ``0..1`` to ``path`` atomically (temp file + rename).

    The format follows the extension (PNG, JPEG, WebP, ...). A failure leaves no partial file.
    """
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InvalidImageError(f"Unknown image extension '{path.suffix}' for '{path}'; use .png, .jpg or .webp.")
    arr = to_uint8_hwc(image)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(arr).save(fh, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
