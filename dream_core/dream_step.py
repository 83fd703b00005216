"""One dream step: the one recipe that the step-by-step loop and the CUDA-graph replay both run.

From the current image ``x`` (RGB ``[B,3,h,w]`` in ``0..1``) one step is
(:func:`dream_step`):

1. jitter: the network sees ``x`` rolled by this step's offset (:func:`gradient_at`);
2. forward up to the deepest requested layer, the objective, and its gradient
   with respect to the rolled image, rolled back;
3. the step direction (:func:`dream_core.step.step_direction`);
4. ``x + scale * direction`` (``scale``: ``learning_rate``, times a mask's weights);
5. the temporal pull towards an anchor image, if any;
6. clamp to ``0..1``.

Jitter offsets: :func:`draw_jitter` draws every step's ``(ox, oy)`` of a dream at once
from the seeded generator: the same numbers in the same order as one draw per step.
The step-by-step loop rolls by them as Python integers (:class:`HostShift`,
``torch.roll``); a captured CUDA graph rolls by an offset held in a device tensor
that is rewritten before every replay (:class:`DeviceShift`: index arithmetic and
``index_select``, no host synchronisation). Both roll exactly like ``torch.roll``,
so both paths jitter a dream identically.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager, Optional, Union

import torch

from .settings import DreamSettings
from .step import step_direction

if TYPE_CHECKING:  # pragma: no cover
    from .features import FeatureHooks
    from .objectives import Objective


def draw_jitter(settings: DreamSettings, steps: int) -> torch.Tensor:
    """Every step's jitter offset: ``[steps, 2]`` int64 on the CPU, rows ``(ox, oy)`` in
    ``-jitter..jitter`` (uniform, inclusive), from a generator seeded with ``settings.seed``;
    zeros when ``jitter`` is 0."""
    if not settings.jitter:
        return torch.zeros(steps, 2, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(settings.seed))
    return torch.randint(-settings.jitter, settings.jitter + 1, (steps, 2), generator=gen)


class HostShift:
    """Roll by offsets known on the host: ``torch.roll`` by ``(oy, ox)`` pixels along ``(H, W)``."""

    def __init__(self, oy: int, ox: int) -> None:
        self.oy, self.ox = int(oy), int(ox)

    def roll(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,C,H,W]`` rolled: pixel ``(i, j)`` of the result is pixel ``(i - oy, j - ox)`` (mod size) of ``x``."""
        return torch.roll(x, shifts=(self.oy, self.ox), dims=(2, 3))

    def unroll(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`roll`."""
        return torch.roll(x, shifts=(-self.oy, -self.ox), dims=(2, 3))

    def indices(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, cols)``: row ``i`` of the rolled image is row ``rows[i]`` of the image (``(i - oy) mod h``),
        and the same for columns (what the tiled gradient reads and writes back through)."""
        h, w = size
        return (torch.arange(h, device=device).sub_(self.oy).remainder_(h),
                torch.arange(w, device=device).sub_(self.ox).remainder_(w))


class DeviceShift:
    """Roll by the offset in ``offset`` (``[2]`` int64 ``(ox, oy)`` on the images' device), read when the
    roll runs: the same result as :class:`HostShift`, by gathering rows and columns at indices
    ``(i - oy) mod h`` and ``(j - ox) mod w`` computed on the device (capturable in a CUDA graph).

    Args:
        offset: the offset tensor; rewrite it in place (``offset.copy_(...)``) to move the roll.
        size: ``(h, w)`` of the images rolled.
    """

    def __init__(self, offset: torch.Tensor, size: tuple[int, int]) -> None:
        self.offset = offset
        self.size = size
        self.rows = torch.arange(size[0], device=offset.device)
        self.cols = torch.arange(size[1], device=offset.device)

    def _index(self, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
        ox, oy = self.offset[0:1], self.offset[1:2]  # views: no host synchronisation
        return (self.rows - sign * oy).remainder_(self.size[0]), (self.cols - sign * ox).remainder_(self.size[1])

    def _gather(self, x: torch.Tensor, sign: int) -> torch.Tensor:
        rows, cols = self._index(sign)
        return x.index_select(2, rows).index_select(3, cols)

    def indices(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`HostShift.indices` (``size`` must be this shift's)."""
        return self._index(1)

    def roll(self, x: torch.Tensor) -> torch.Tensor:
        """As :meth:`HostShift.roll`."""
        return self._gather(x, 1)

    def unroll(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`roll`."""
        return self._gather(x, -1)


Shift = Union[HostShift, DeviceShift]


def autocast_context(device_type: str, amp_dtype: Optional[torch.dtype], *, cache: bool = True) -> ContextManager:
    """The forward pass's autocast (``None``: float32 as loaded). ``cache=False`` inside CUDA graphs
    (autocast's cast-weight cache must not outlive a capture)."""
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type, dtype=amp_dtype) if cache else \
        torch.autocast(device_type, dtype=amp_dtype, cache_enabled=False)


def gradient_at(hooks: "FeatureHooks", objective: "Objective", image: torch.Tensor, shift: Shift,
                amp: ContextManager) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``objective`` at ``image`` ``[B,3,h,w]`` seen rolled by ``shift``, in ``image``'s own
    frame (rolled back), and the objective's value ``[B]`` (detached)."""
    x = shift.roll(image.detach()).requires_grad_(True)
    with amp:
        value = objective(hooks.run(x))
    (grad,) = torch.autograd.grad(value.sum(), x)
    return shift.unroll(grad), value.detach()


#: Extended tiles start on a multiple of this (the networks' total stride), so every tile sees the
#: sampling grid the whole image would.
TILE_ALIGN = 32


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``0..length`` into ``[start, end)`` spans of at most ``tile``."""
    n = max(1, -(-length // tile))
    edges = [round(i * length / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def tiled_gradient(hooks: "FeatureHooks", objective: "Objective", image: torch.Tensor, tile_size: int,
                   tile_overlap: int, shift: Shift, amp: ContextManager) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gradient_at` for an image larger than ``tile_size``, tile by tile: ``(grad, value [B])``.

    Each tile is extended by ``tile_overlap`` pixels of context, and only its centre's gradient is kept.
    Each tile's (mean-based) objective is scaled by its extended area over the image area, so the
    centre's gradient matches the whole-image gradient up to the receptive field reaching past the
    margin. Tiles are read from ``image`` with the roll's wrap-around (``shift.indices``) and their
    gradients written back the same way, so no rolled copy of a large image is made. The tile grid
    depends only on the image's shape: with a :class:`DeviceShift` the whole tiled step is captured
    in a CUDA graph like an untiled one.
    """
    _, _, h, w = image.shape
    grad = torch.zeros_like(image)
    total = torch.zeros(image.shape[0], device=image.device, dtype=torch.float32)
    m = tile_overlap
    rows, cols = shift.indices((h, w), image.device)  # pixel i of the rolled image is pixel rows[i] / cols[i]
    spans = []
    for y0, y1 in tile_spans(h, tile_size):
        for x0, x1 in tile_spans(w, tile_size):
            ey0, ex0 = max(0, (y0 - m) // TILE_ALIGN * TILE_ALIGN), max(0, (x0 - m) // TILE_ALIGN * TILE_ALIGN)
            spans.append((y0, y1, x0, x1, ey0, ex0, min(h, y1 + m), min(w, x1 + m)))
    # Largest extended tile first: every later tile's activations fit in the memory it freed.
    spans.sort(key=lambda t: (t[6] - t[4]) * (t[7] - t[5]), reverse=True)
    for y0, y1, x0, x1, ey0, ex0, ey1, ex1 in spans:
        x = image.detach().index_select(2, rows[ey0:ey1]).index_select(3, cols[ex0:ex1]).requires_grad_(True)
        share = (ey1 - ey0) * (ex1 - ex0) / (h * w)  # tile mean -> whole-image mean scale
        with amp:
            value = objective(hooks.run(x)) * share
        (g,) = torch.autograd.grad(value.sum(), x)
        centre = g[:, :, y0 - ey0 : y0 - ey0 + (y1 - y0), x0 - ex0 : x0 - ex0 + (x1 - x0)]
        grad[:, :, rows[y0:y1, None], cols[None, x0:x1]] = centre
        total += value.detach().float() * ((y1 - y0) * (x1 - x0) / ((ey1 - ey0) * (ex1 - ex0)))
    return grad, total


@dataclass
class StepTerms:
    """What an octave's steps add besides the gradient (fixed for the octave).

    Attributes:
        scale: ``learning_rate``, or ``learning_rate`` times a mask ``[1,1,h,w]`` in ``0..1``.
        anchor_target: temporal pull target ``[B,3,h,w]`` (``None``: no pull).
        anchor_weight: its per-pixel weight times the pull strength, ``[B,1,h,w]``.
    """

    scale: Union[float, torch.Tensor]
    anchor_target: Optional[torch.Tensor] = None
    anchor_weight: Optional[torch.Tensor] = None


def dream_step(current: list[torch.Tensor], gradient: Callable[[torch.Tensor], torch.Tensor],
               settings: DreamSettings, terms: StepTerms) -> torch.Tensor:
    """One step (the recipe in the module docstring); returns the next image ``[B,3,h,w]`` in ``0..1``.

    Args:
        current: a one-item list holding the image; it is handed over (the list is emptied) so the
            caller keeps no reference and the image can be freed as soon as the update is made.
        gradient: the objective's gradient at an image, in that image's frame (the jitter inside it).
        settings: the step rule's settings (``step_rule``, ``gradient_smoothing``, ...).
        terms: :class:`StepTerms` of this octave.
    """
    x = current.pop()
    # The raw gradient is handed straight over: step_direction frees it once it has derived the
    # direction from it (one full-size buffer less at its peak).
    direction = step_direction(gradient(x), settings.step_rule, smoothing=settings.gradient_smoothing,
                               colour_decorrelation=settings.colour_decorrelation,
                               laplacian_levels=settings.laplacian_levels)
    x = x + terms.scale * direction
    del direction
    if terms.anchor_target is not None:
        x = x + terms.anchor_weight * (terms.anchor_target - x)
    return x.clamp(0, 1)
