"""A cadence's in-between frames: carried from the dreamed frames on both sides.

With a cadence of N only every Nth frame (a *key*) is dreamed. A frame between
key ``a`` and key ``b`` takes both dreams, carried onto it along the optical flow
where the flow is reliable:

* ``a``'s dream difference, forward: warped once along the composed backward flows
  from ``a`` to this frame (:class:`CarryPath`, kept while the frames come in);
* ``b``'s, backward: after ``b`` is dreamed, the composed backward flow from ``b``
  to this frame is inverted (:func:`~dream_core.flow.motion.invert_backward`) and
  ``b``'s difference warped along it.

Frame ``a + j`` of ``a .. b = a + N`` gets ``raw + (1 - s) * w_a * d_a + s * w_b * d_b``
with ``s = j / N`` and ``w`` the reliability weights: where both dreams are
trusted the frame cross-fades from one to the other, so the change from one key
to the next is spread over the N frame pairs instead of jumping at ``b``; where
content is covered (only ``a`` trusted) the dream fades out, where new content
comes into view (only ``b`` trusted) it fades in. Frames after the last key of a
run have no ``b`` and keep ``a``'s carry alone.

Conventions: images ``[1,3,H,W]`` in ``0..1``, flows ``[H,W,2]`` backward in pixels
(:mod:`dream_core.flow.warp`), weights ``[1,1,H,W]`` in ``0..1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..colour import match_colour_balance
from ..flow.motion import compose_backward, invert_backward
from ..flow.warp import warp, warp_with_mask
from ..image_ops import gaussian_blur
from .settings import VideoSettings

#: An inverted flow is trusted where it maps back to within this many pixels.
MAX_INVERSION_RESIDUAL = 0.5


class CarryPath:
    """From the last dreamed frame to the current one: its dream difference, the composed backward flow
    onto it, where every step was reliable (``[1,1,H,W]``), and how many frames it spans (``age``)."""

    __slots__ = ("diff", "flow", "reliable", "age")

    def __init__(self, diff: torch.Tensor, flow: torch.Tensor, reliable: torch.Tensor, age: int = 1) -> None:
        self.diff, self.flow, self.reliable, self.age = diff, flow, reliable, age

    def as_carry(self) -> dict[str, torch.Tensor]:
        """What a resumed run needs to continue from here (``diff``, ``flow``, ``reliable``, ``age``)."""
        return {"diff": self.diff, "flow": self.flow, "reliable": self.reliable, "age": torch.full((), self.age)}


@dataclass
class Between:
    """An in-between frame waiting for the next key.

    Attributes:
        index: its global frame index (``None`` when the caller gave none).
        raw: its raw frame ``[1,3,H,W]``.
        flow: its backward flow onto the previous frame ``[H,W,2]`` (drift composed in).
        reliable: that flow's reliability ``[1,1,H,W]``.
        forward: the previous key's difference carried onto it, times its weight ``[1,3,H,W]``.
        mask: where to dream ``[1,1,H,W]``, or ``None`` for everywhere.
        video: its video settings (feather, colour coherence).
        path: the way back from it to the last dreamed frame (its ``age``: frames since that frame, 1 for
            the first in-between frame); what a run resumed after it continues from.
    """

    index: Optional[int]
    raw: torch.Tensor
    flow: torch.Tensor
    reliable: torch.Tensor
    forward: torch.Tensor
    mask: Optional[torch.Tensor]
    video: VideoSettings
    path: CarryPath

    @property
    def age(self) -> int:
        return self.path.age

    def finish(self, carried: torch.Tensor, colour_reference: Optional[torch.Tensor]) -> torch.Tensor:
        """The frame from its carried difference: clamped, colour-kept, masked."""
        out = (self.raw + carried).clamp(0, 1)
        if self.video.colour_coherence > 0:
            reference = self.raw if colour_reference is None else colour_reference
            out = match_colour_balance(out, reference, self.video.colour_coherence)
        return out if self.mask is None else torch.lerp(self.raw, out, self.mask)


def feathered(weight: torch.Tensor, feather: float) -> torch.Tensor:
    """Erode-then-blur: a soft edge of ``weight`` ``[1,1,H,W]`` that never reaches into untrusted pixels."""
    if feather <= 0:
        return weight
    return gaussian_blur(weight, feather).clamp(0, 1) * weight


def carry_back(diff: torch.Tensor, flow: torch.Tensor, reliable: torch.Tensor,
               feather: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A later key's difference carried back onto an earlier frame.

    Args:
        diff: the key's dream difference ``[1,3,H,W]``.
        flow: the composed backward flow from the key to the earlier frame ``[H,W,2]`` (the key's
            pixel ``p`` is the earlier frame's ``p + flow(p)``).
        reliable: where every step from the key back to that frame was reliable, in the key's
            pixels ``[1,1,H,W]``.
        feather: blur (pixels) of the trusted area's edge.

    Returns:
        ``(carried [1,3,H,W], weight [1,1,H,W] in 0..1)`` in the earlier frame's pixels.
    """
    inverse, residual = invert_backward(flow)
    carried, inside = warp_with_mask(diff, inverse, padding_mode="border")
    weight = warp(reliable, inverse, padding_mode="zeros") * inside[:, None]
    weight = weight * (residual < MAX_INVERSION_RESIDUAL).to(weight)[None, None]
    return carried, feathered(weight, feather)


def settle(pending: list[Between], key_diff: torch.Tensor, key_flow: torch.Tensor, key_reliable: torch.Tensor,
           colour_reference: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """The in-between frames ``pending`` (in order, up to key ``b``) once key ``b`` is dreamed.

    Args:
        pending: the frames between the keys, oldest first (after a resumed run, only the later ones;
            their ``age`` places them between the keys).
        key_diff: key ``b``'s dream difference ``[1,3,H,W]``.
        key_flow: key ``b``'s backward flow onto the last in-between frame ``[H,W,2]``.
        key_reliable: its reliability ``[1,1,H,W]``.
        colour_reference: the image whose colour balance frames keep (``None``: their raw frames).

    Returns:
        The finished frames ``[1,3,H,W]``, in the order of ``pending``.
    """
    span = pending[-1].age + 1
    flow, reliable = key_flow, key_reliable
    finished: list[torch.Tensor] = []
    for frame in reversed(pending):  # from the key back: each step extends the path through one more flow
        share = frame.age / span
        carried, weight = carry_back(key_diff, flow, reliable, frame.video.occlusion_feather)
        finished.append(frame.finish((1 - share) * frame.forward + share * weight * carried, colour_reference))
        reliable = reliable * warp(frame.reliable, flow, padding_mode="zeros")
        flow = compose_backward(frame.flow, flow)
    return finished[::-1]


def forward_only(pending: list[Between], colour_reference: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """In-between frames with no later key (the end of a run): the earlier key's carry alone."""
    return [frame.finish(frame.forward, colour_reference) for frame in pending]


class PendingFrames:
    """The one owner of a cadence's in-between frames: those since the last dreamed frame, oldest first, and
    the flow from the next dreamed frame (the key) back onto the last of them.

    A :class:`~dream_core.clip.frame_dreamer.FrameDreamer` adds each in-between frame (:meth:`add`), links the
    key when it dreams it (:meth:`link`) and hands them out finished (:meth:`settle`); the frame loop only asks
    whether a frame is waiting (:meth:`holds`).
    """

    def __init__(self) -> None:
        self._frames: list[Between] = []
        self._link: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: Between) -> None:
        """One more in-between frame (after the ones held)."""
        self._frames.append(frame)

    def link(self, flow: torch.Tensor, reliable: torch.Tensor) -> None:
        """The key after the held frames: its backward flow onto the last of them ``[H,W,2]`` and that flow's
        reliability ``[1,1,H,W]``."""
        self._link = (flow, reliable)

    def holds(self, index: Optional[int]) -> bool:
        """Whether the frame with global ``index`` is waiting for the next key."""
        return any(frame.index == index for frame in self._frames)

    def clear(self) -> None:
        self._frames, self._link = [], None

    def settle(self, key_diff: Optional[torch.Tensor],
               colour_reference: Optional[torch.Tensor] = None) -> list[tuple[Between, torch.Tensor]]:
        """Hand out the held frames, finished, and hold none.

        Args:
            key_diff: the linked key's dream difference ``[1,3,H,W]``; ``None`` (or no key linked: the end of
                a run) finishes them with the earlier key's carry alone (:func:`forward_only`).
            colour_reference: the image whose colour balance the frames keep (``None``: their raw frames).

        Returns:
            ``(frame, finished [1,3,H,W])`` pairs, oldest first.
        """
        pending, link = self._frames, self._link
        self.clear()
        if not pending:
            return []
        if link is None or key_diff is None:
            return list(zip(pending, forward_only(pending, colour_reference)))
        return list(zip(pending, settle(pending, key_diff, *link, colour_reference=colour_reference)))
