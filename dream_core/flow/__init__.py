"""Optical flow between video frames: estimation, reliability masks, previews.

Convention (:mod:`dream_core.flow.warp` states it in full):

* Frames are RGB ``[3,H,W]`` or ``[1,3,H,W]`` (a clip ``[N,3,H,W]``) floating
  tensors in ``0..1``.
* A flow is ``[H,W,2]`` or ``[N,H,W,2]`` float32 in pixel units, channel 0 =
  x (column) displacement ``u``, channel 1 = y (row) displacement ``v``.
* The **backward flow of frame t** maps each pixel of frame ``t`` to where it
  came from in frame ``t-1``: ``frame_t(x, y) ≈ frame_{t-1}(x + u, y + v)``, so
  ``warp(frame_{t-1}, bw_t) ≈ frame_t``. It is what
  ``cv2.calcOpticalFlowFarneback(cur_gray, prev_gray, ...)`` returns (the
  original tool does exactly that) and what ``cv2.remap`` needs.
* The **forward flow of frame t** maps frame ``t-1`` pixels to where they go in
  frame ``t``: ``frame_{t-1}(x, y) ≈ frame_t(x + u, y + v)``.
* Example: content that moves 3 px right and 2 px up between ``t-1`` and ``t``
  (``cur = torch.roll(prev, (-2, 3), dims=(-2, -1))``) has backward flow
  ``(-3, +2)`` and forward flow ``(+3, -2)``.

Modules: :mod:`.warp` (the convention, warping), :mod:`.estimate`
(:class:`FlowEstimator`: DIS, Farneback, RAFT via :mod:`.raft`), :mod:`.reliability`
(:func:`reliability_mask`, :func:`flow_pair`), :mod:`.flowset` (a clip's flows,
:func:`compute_flows`), :mod:`.preview` (pictures of flow).
"""

from .estimate import DEFAULT_FLOW_METHOD, DIS_PRESETS, FLOW_METHODS, FlowEstimator, compute_flow, flow_size, resize_flow
from .flowset import FlowSet, compute_flows
from .preview import flow_preview, flow_to_color
from .raft import RAFT_METHODS, load_raft
from .reliability import FlowPair, flow_pair, motion_edges, reliability_mask
from .warp import check_flow, inside_mask, warp, warp_with_mask

__all__ = [
    "DEFAULT_FLOW_METHOD", "DIS_PRESETS", "FLOW_METHODS", "FlowEstimator", "FlowPair", "FlowSet", "RAFT_METHODS",
    "check_flow", "compute_flow", "compute_flows", "flow_pair", "flow_preview", "flow_size", "flow_to_color",
    "inside_mask", "load_raft", "motion_edges", "reliability_mask", "resize_flow", "warp", "warp_with_mask",
]
