"""Which pixels a backward flow carries reliably, and the one function that makes a flow pair.

:func:`reliability_mask` is Ruder et al. 2016's test (forward-backward
consistency, motion boundaries, samples leaving the frame); :func:`flow_pair`
estimates both directions of a frame pair and that mask in one call, so every
caller (whole-clip flows, the video loop, stability metrics, benchmarks) makes
flows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import FlowError
from .warp import check_flow, inside_mask, warp

if TYPE_CHECKING:  # pragma: no cover
    from .estimate import FlowEstimator

# Ruder et al. 2016 (consistencyChecker.cpp, coefficients from Sundaram et al.).
CONSISTENCY_REL = 0.01
CONSISTENCY_ABS = 0.5
MOTION_EDGE_REL = 0.01
MOTION_EDGE_ABS = 0.002


def motion_edges(flow: torch.Tensor) -> torch.Tensor:
    """Squared flow gradient ``|grad u|^2 + |grad v|^2`` (central differences).

    Args:
        flow: ``[H,W,2]`` or ``[N,H,W,2]``.

    Returns:
        ``[H,W]`` or ``[N,H,W]``, same dtype and device; one-sided at the border.
    """
    single = flow.dim() == 3
    f = check_flow(flow).permute(0, 3, 1, 2)  # [N,2,H,W]
    padded = F.pad(f, (1, 1, 1, 1), mode="replicate")
    dx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) * 0.5
    dy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) * 0.5
    edges = (dx * dx + dy * dy).sum(dim=1)
    return edges[0] if single else edges


def reliability_mask(backward: torch.Tensor, forward: torch.Tensor | None = None) -> torch.Tensor:
    """Which pixels of frame ``t`` the backward flow carries reliably from ``t-1``.

    A pixel ``x`` of frame ``t`` is unreliable (0) when any of these holds
    (Ruder et al. 2016, thresholds from their ``consistencyChecker``), with
    ``w^ = backward(x)`` and ``w~ = forward(x + w^)`` (the forward flow of
    frame ``t-1`` sampled where ``x`` came from, bilinearly):

    * forward-backward disagreement (occlusion):
      ``|w~ + w^|^2 >= 0.01 (|w~|^2 + |w^|^2) + 0.5``;
    * motion boundary: ``|grad u|^2 + |grad v|^2 > 0.01 |w^|^2 + 0.002``
      (gradients of the backward flow, central differences);
    * ``x + w^`` outside frame ``t-1`` (regions entering at the border).

    Args:
        backward: ``[H,W,2]`` or ``[N,H,W,2]`` backward flows of frames ``t``.
        forward: forward flows, same shape, or ``None`` to skip the
            forward-backward test (motion boundaries and borders only).

    Returns:
        ``[H,W]`` or ``[N,H,W]`` float 0/1 mask, dtype and device of ``backward``.

    Convention:
        See the module docstring: ``frame_t(x) ≈ frame_{t-1}(x + backward(x))``
        and ``frame_{t-1}(x) ≈ frame_t(x + forward(x))``, so a consistent pair
        has ``w~ ≈ -w^``.

    Raises:
        FlowError: shapes differ or are not flows.
    """
    single = backward.dim() == 3
    bw = check_flow(backward, "backward flow")
    mag_bw = (bw * bw).sum(dim=-1)
    ok = inside_mask(bw).bool()
    ok &= motion_edges(bw) <= MOTION_EDGE_REL * mag_bw + MOTION_EDGE_ABS
    if forward is not None:
        fw = check_flow(forward, "forward flow")
        if fw.shape != bw.shape:
            raise FlowError(f"forward flow {tuple(fw.shape)} and backward flow {tuple(bw.shape)} must have the same shape.")
        fw = fw.to(device=bw.device, dtype=bw.dtype)
        fw_at = warp(fw.permute(0, 3, 1, 2), bw, padding_mode="border").permute(0, 2, 3, 1)
        total = fw_at + bw
        ok &= (total * total).sum(dim=-1) < CONSISTENCY_REL * ((fw_at * fw_at).sum(dim=-1) + mag_bw) + CONSISTENCY_ABS
    out = ok.to(bw.dtype)
    return out[0] if single else out



@dataclass(frozen=True)
class FlowPair:
    """Flows between frames ``t-1`` and ``t``, with the reliability of the backward one.

    Attributes:
        backward: ``[H,W,2]``: ``frame_t(x) ≈ frame_{t-1}(x + backward(x))``.
        forward: ``[H,W,2]`` (``frame_{t-1}(x) ≈ frame_t(x + forward(x))``), or ``None``
            when it was not estimated (``consistency=False``).
        reliable: ``[H,W]`` 0/1 (:func:`reliability_mask`).
    """

    backward: torch.Tensor
    forward: torch.Tensor | None
    reliable: torch.Tensor

    def to(self, device: torch.device | str) -> "FlowPair":
        """The pair on ``device``."""
        return FlowPair(self.backward.to(device), None if self.forward is None else self.forward.to(device),
                        self.reliable.to(device))


def flow_pair(estimator: "FlowEstimator", prev: torch.Tensor, cur: torch.Tensor, *, consistency: bool = True) -> FlowPair:
    """Backward flow of ``cur`` w.r.t. ``prev`` and its reliability (and the forward flow).

    Args:
        estimator: the :class:`~dream_core.flow.estimate.FlowEstimator` to use.
        prev: frame ``t-1``, RGB ``[3,H,W]`` or ``[1,3,H,W]`` in ``0..1``.
        cur: frame ``t``, same shape.
        consistency: also estimate the forward flow and use the forward-backward
            test (twice the estimation time); ``False`` keeps the motion-boundary
            and border tests only.

    Returns:
        :class:`FlowPair` on ``cur``'s device. A host estimator (``estimator.on_host``: DIS, Farneback)
        makes the whole pair on the host and moves it there at the end, so the flows and the mask
        are the same whichever device the frames come from (the pipeline estimates ahead from the
        decoded frames on the host, the frame loop from the frames on the GPU).
    """
    device = cur.device
    if getattr(estimator, "on_host", False):  # a stand-in estimator computes where its frames are
        prev, cur = prev.cpu(), cur.cpu()
    if consistency:
        backward, forward = estimator.bidirectional(prev, cur)
        pair = FlowPair(backward, forward, reliability_mask(backward, forward))
    else:
        backward = estimator(prev, cur)
        pair = FlowPair(backward, None, reliability_mask(backward))
    return pair if pair.backward.device == device else pair.to(device)
