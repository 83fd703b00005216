"""Reading and writing still images as ``[1,3,H,W]`` float tensors in ``0..1``.

Reading checks the size in the file's header before decoding anything (a
huge or hostile file is refused in milliseconds, without the memory its
pixels would take), scales every bit depth to ``0..1`` (16-bit PNG and
TIFF, gray or colour, keep their range instead of clipping to white) and
turns the picture as viewers show it (the EXIF orientation of a phone photo),
shrunk or not. Writing checks the path and the format *before* the work
(:func:`check_output_image`) and writes atomically (:func:`save_image`) with
the permissions any new file gets (the umask).
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .paths import same_file
from .errors import InvalidImageError, InvalidParameterError
from .image_ops import MAX_PIXELS, check_max_side, fit_max_side

#: Largest image (pixels) :func:`load_image` decodes at all, shrinking it to ``max_side`` afterwards;
#: just below Pillow's own refusal (twice ``PIL.Image.MAX_IMAGE_PIXELS``, 179 MP).
MAX_DECODE_PIXELS = 178_000_000

#: Pillow modes holding one integer or float channel of more than 8 bits, and the value that is white.
_WIDE_GRAY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}

#: Modes Pillow cannot shrink with ``reduce`` (or would shrink wrongly: a palette's indices averaged),
#: and the mode each is converted to first (same picture, same range).
_REDUCE_AS = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}

#: The EXIF orientation tag, and the turn that shows the stored pixels upright for each of its values
#: (2..8; 1 = stored upright). Values 5..8 swap width and height.
_ORIENTATION_TAG = 0x0112
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file as viewers show it (EXIF orientation applied), read from its
    header (nothing is decoded).

    Raises:
        InvalidImageError: missing or unreadable file.
    """
    with _open(Path(path)) as im:
        width, height = int(im.size[0]), int(im.size[1])
        return (height, width) if _orientation(im) >= 5 else (width, height)


def _orientation(im) -> int:  # im: PIL.Image.Image
    """The EXIF orientation (1..8) of ``im``; 1 (upright) when it has none or an unreadable one."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: show the pixels as stored, as most viewers do
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def load_image(path: str | os.PathLike[str], max_side: Optional[int] = None) -> torch.Tensor:
    """Read an image file as RGB ``[1,3,H,W]`` float32 in ``0..1``.

    Grayscale, 1-bit and palette images become RGB; alpha is dropped (composited on
    black). Every bit depth is scaled to ``0..1``: 8-bit by 255, 16-bit
    (``I;16`` gray PNG/TIFF) by 65535; Pillow reads 16-bit colour PNG/TIFF as
    8 bits per channel, scaled alike. The EXIF orientation is applied (a portrait
    phone photo comes out portrait), and every mode reads the same shrunk or not.

    The size is checked from the header first: an image over
    :data:`~dream_core.image_ops.MAX_PIXELS` is refused before it is decoded
    unless ``max_side`` shrinks it (then up to :data:`MAX_DECODE_PIXELS`).

    Args:
        path: the image file.
        max_side: shrink (antialiased, :func:`~dream_core.image_ops.fit_max_side`)
            so the longer side is at most this; ``None`` or ``0`` keeps the size.

    Raises:
        InvalidImageError: missing, unreadable or too large a file
            (``parameter="image"``; the message gives the ``max_side`` that fits).
        InvalidParameterError: a negative ``max_side``.
    """
    check_max_side(max_side)
    path = Path(path)
    with _open(path) as im:
        width, height = im.size
        _check_decode_size(path, width, height, max_side)
        factor = max(width, height) // max_side if max_side else 1
        upright = _orientation(im)
        try:
            if factor >= 2:  # shrink by a whole factor while still 8 bits (box filter): no full-size float copy
                im.draft(im.mode, (width // factor, height // factor))  # JPEG: decode at the smaller size
                if max(im.size) // max_side >= 2:
                    if im.mode in _REDUCE_AS:
                        im = im.convert(_REDUCE_AS[im.mode])
                    im = im.reduce(max(im.size) // max_side)
            if upright != 1:
                from PIL import Image

                im = im.transpose(getattr(Image.Transpose, _UPRIGHT[upright]))
            rgb = _to_rgb_array(im)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidImageError(
                f"Cannot read image '{path}': {exc}. Is it a complete PNG/JPEG/WebP image?") from exc
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    del rgb
    image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
    return fit_max_side(image, max_side)


def _open(path: Path):  # -> PIL.Image.Image (lazy: header only)
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InvalidImageError(f"Image file not found: '{path}'.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 MP and raises above 179 MP; the size checks here are ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(
            f"Image '{path}' is too large to decode at all ({exc}). Scale it down with an image editor first "
            f"(at most {MAX_DECODE_PIXELS / 1e6:.0f} MP are read, then shrunk to max_side)."
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"Cannot read image '{path}': {exc}. Is it a PNG/JPEG/WebP image?") from exc


def _check_decode_size(path: Path, width: int, height: int, max_side: Optional[int]) -> None:
    pixels = width * height
    if pixels <= MAX_PIXELS:
        return
    fits = int((MAX_PIXELS / pixels) ** 0.5 * max(width, height))
    if not max_side:
        raise InvalidImageError(
            f"Image '{path.name}' is {width}x{height} = {pixels / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP "
            "(memory). Shrink it while reading with max_side, "
            f"e.g. max_side={fits} or less.", parameter="image",
        )
    scale = min(1.0, max_side / max(width, height))
    if round(width * scale) * round(height * scale) > MAX_PIXELS:
        raise InvalidImageError(
            f"Image '{path.name}' is {width}x{height}; shrunk to max_side={max_side} it is still over the limit of "
            f"{MAX_PIXELS / 1e6:.0f} MP (memory). Use max_side={fits} or less.", parameter="max_side",
        )
    if pixels > MAX_DECODE_PIXELS:
        raise InvalidImageError(
            f"Image '{path.name}' is {width}x{height} = {pixels / 1e6:.0f} MP; at most {MAX_DECODE_PIXELS / 1e6:.0f} MP "
            "are decoded (then shrunk to max_side). Scale it down with an image editor first."
        )


def _to_rgb_array(im) -> np.ndarray:  # im: PIL.Image.Image
    """``H x W x 3`` RGB: uint8 for 8-bit images, float32 in ``0..1`` for wider gray ones."""
    from PIL import Image

    if im.mode in _WIDE_GRAY:
        gray = np.asarray(im)
        if gray.dtype.kind == "f" and not (np.isfinite(gray).all() and gray.min() >= 0 and gray.max() <= 1):
            raise InvalidImageError("A floating-point gray image must hold values in 0..1; convert it to 8 or 16 bits.")
        gray = np.clip(gray.astype(np.float32) / np.float32(_WIDE_GRAY[im.mode]), 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    else:
        im.load()
    return np.array(im, dtype=np.uint8)  # a writable copy (asarray of a PIL image is read-only)


def from_uint8_hwc(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 RGB (a decoded video frame) -> ``[1,3,H,W]`` float32 in ``0..1`` on ``device``."""
    return torch.from_numpy(frame).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def uint8_hwc(image: torch.Tensor) -> torch.Tensor:
    """``[1,3,H,W]`` or ``[3,H,W]`` in ``0..1`` -> ``H x W x 3`` uint8 tensor on ``image``'s device (rounded, clamped)."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """``[1,3,H,W]`` or ``[3,H,W]`` in ``0..1`` -> ``H x W x 3`` uint8 array (rounded, clamped): :func:`uint8_hwc`
    on the host."""
    return uint8_hwc(image).cpu().numpy()



def output_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format that writes ``path`` (from its extension), checked to write RGB images.

    Raises:
        InvalidParameterError: no extension, an extension Pillow only reads (``.psd``) or
            cannot write RGB in (``parameter="output"``).
    """
    from PIL import Image

    path = Path(path)
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        what = "has no extension" if not ext else f"has the extension '{ext}', which cannot be written"
        raise InvalidParameterError(
            f"Output '{path}' {what}; write .png, .jpg, .webp or .tif (e.g. '{path.with_suffix('.png').name}').",
            parameter="output",
        )
    try:
        Image.new("RGB", (2, 2)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidParameterError(
            f"Output '{path}': the {fmt} format cannot hold an RGB image ({exc}); write .png, .jpg, .webp or .tif.",
            parameter="output",
        ) from exc
    return fmt


def check_output_image(path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> Path:
    """Check, before any work starts, that an image can be written to ``path``.

    Checks the format (:func:`output_format`), that ``path`` is not a folder nor
    the ``source`` file, that its folder exists, and that a file can be created
    there (a temporary probe file is made and removed).

    Returns:
        ``path`` as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidParameterError: unwritable format, a folder, or the source itself (``parameter="output"``).
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise InvalidParameterError(f"Output '{out}' is a folder; give a file name such as '{out / 'dream.png'}'.",
                                    parameter="output")
    output_format(out)
    if source is not None and same_file(out, Path(source)):
        raise InvalidParameterError(
            f"Output '{out}' is the input image; refusing to overwrite the source. Choose another output name.",
            parameter="output",
        )
    folder = out.parent
    if not folder.is_dir():
        raise InvalidParameterError(f"Cannot write '{out}': the folder '{folder}' does not exist. Create it first.",
                                    parameter="output")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dream-write-test-"):
            pass
    except OSError as exc:
        raise InvalidParameterError(f"Cannot write '{out}': the folder '{folder}' is not writable ({exc}).",
                                    parameter="output") from exc
    return out


def _new_partial(path: Path) -> tuple[int, str]:
    """A new, empty file next to ``path`` for an atomic write: ``(descriptor, name)``, created with mode
    ``0o666`` so the umask decides its permissions as for any new file (``mkstemp`` makes ``0o600``)."""
    folder = path.parent or Path(".")
    while True:
        tmp = str(folder / f"{path.name}.{secrets.token_hex(4)}.partial")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def save_image(image: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Write ``[1,3,H,W]`` in ``0..1`` to ``path`` atomically (temp file + rename).

    The format follows the extension (PNG, JPEG, WebP, ...). A failure leaves no partial file. The file gets
    the permissions of any new file (``0o666`` less the umask), not the temporary file's private ``0o600``.

    Raises:
        InvalidParameterError: an extension no format writes (see :func:`output_format`).
    """
    from PIL import Image

    path = Path(path)
    fmt = output_format(path)
    arr = to_uint8_hwc(image)
    fd, tmp = _new_partial(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(arr).save(fh, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
