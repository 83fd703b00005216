"""Camera-like motion per frame: zoom, rotation and translation, as a flow field (the project's one convention).

Used by the animation controls (:mod:`dream_core.animation`) for zoom animations and for a drift of a
video's carried dream.

A :class:`Motion` says how the picture moves from one frame to the next:

* ``zoom``: scale about the centre per frame; ``1.02`` = the content grows 2 % per
  frame (zooming in), ``< 1`` zooms out, ``1`` none;
* ``rotate``: degrees per frame, positive = counter-clockwise on screen;
* ``translate``: ``(dx, dy)`` pixels per frame the content moves, ``dx`` to the right,
  ``dy`` down.

As a map of content positions: ``p_new = c + zoom * R(rotate) (p_old - c) + translate``
with ``c`` the image centre. :func:`motion_flow` gives it as the *backward* flow of
:mod:`dream_core.flow.warp` (``new(x) = old(x + flow(x))``), so
``warp(previous, motion_flow(...))`` is the next frame of a zoom animation, and a
motion composes with an optical flow (:func:`compose_backward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InvalidParameterError
from .warp import warp


@dataclass(frozen=True)
class Motion:
    """Zoom factor, rotation (degrees, counter-clockwise) and translation (pixels, x right, y down) per frame."""

    zoom: float = 1.0
    rotate: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)

    @property
    def is_identity(self) -> bool:
        return self.zoom == 1.0 and self.rotate == 0.0 and tuple(self.translate) == (0.0, 0.0)

    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` for a zoom that is not a positive finite number, or a
        non-finite rotation or translation."""
        if not (math.isfinite(self.zoom) and self.zoom > 0):
            raise InvalidParameterError(f"zoom must be a positive number (1 = none); got {self.zoom}.",
                                        parameter="zoom")
        if not math.isfinite(self.rotate):
            raise InvalidParameterError(f"rotate must be a finite number of degrees; got {self.rotate}.",
                                        parameter="rotate")
        if len(self.translate) != 2 or not all(math.isfinite(v) for v in self.translate):
            raise InvalidParameterError(f"translate must be two finite numbers (dx, dy); got {self.translate}.",
                                        parameter="translate")


def motion_flow(height: int, width: int, motion: Motion, *, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The backward flow ``[H,W,2]`` (pixels) of ``motion``: ``next(x) = previous(x + flow(x))``."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float64),
                            torch.arange(width, device=device, dtype=torch.float64), indexing="ij")
    # Invert p_new = c + z R (p_old - c) + t:  p_old = c + R^-1 (p_new - t - c) / z.
    # Screen coordinates (y down): a counter-clockwise turn by a maps (dx, dy) to
    # (dx cos a + dy sin a, -dx sin a + dy cos a); its inverse turns by -a.
    a = math.radians(motion.rotate)
    dx = xs - motion.translate[0] - cx
    dy = ys - motion.translate[1] - cy
    old_x = cx + (dx * math.cos(a) - dy * math.sin(a)) / motion.zoom
    old_y = cy + (dx * math.sin(a) + dy * math.cos(a)) / motion.zoom
    return torch.stack([old_x - xs, old_y - ys], dim=-1).to(dtype)


def apply_motion(image: torch.Tensor, motion: Motion, padding_mode: str = "reflection") -> torch.Tensor:
    """``image`` ``[B,C,H,W]`` moved by ``motion`` (areas coming in from outside: ``padding_mode``)."""
    if motion.is_identity:
        return image
    flow = motion_flow(image.shape[-2], image.shape[-1], motion, device=image.device, dtype=image.dtype)
    return warp(image, flow, padding_mode=padding_mode)


def compose_backward(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """The backward flow of ``first`` followed by ``then`` (both ``[H,W,2]``).

    ``warp(warp(x, first), then) ≈ warp(x, compose_backward(first, then))``: the
    composite samples ``x`` at ``p + then(p) + first(p + then(p))``, in one warp.
    """
    moved = warp(first.permute(2, 0, 1).unsqueeze(0), then, padding_mode="border")[0].permute(1, 2, 0)
    return then + moved
