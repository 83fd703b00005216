"""The clip wing: how a sequence of frames is dreamed, independent of any file.

* :mod:`.settings`: :class:`VideoSettings` (the modes: stable, seed, independent; carry, occlusion, cadence);
* :mod:`.schedule`: ``"0:(0.01), 48:(0.04)"`` strings -> :class:`Schedule` (frames or seconds);
* :mod:`.plan`: :class:`ClipPlan`, every frame's settings, objective, motion and cadence by global index;
* :mod:`.cadence`: in-between frames carried from the dreamed frames on both sides;
* :mod:`.frame_dreamer`: :class:`FrameDreamer`, one frame after another (hooks, previous dream, tile budget);
* :mod:`.loop`: :func:`dream_clip`, the one frame loop every front end drives.

Files (decoding, encoding, the resumable work folder) live in :mod:`dream_core.video`, which this package
never imports. Convention: frames are ``[1,3,H,W]`` float tensors in ``0..1``; frame ``i`` is the ``i``-th
frame of the source in display order, counting from 0 (its *global index*).
"""

from .frame_dreamer import FrameDreamer
from .loop import (
    ClipState,
    DreamedFrame,
    EstimatedFlows,
    FlowSource,
    PrecomputedFlows,
    check_clip_flows,
    dream_clip,
    dream_frames,
    frame_range,
)
from .plan import SCHEDULABLE, ClipPlan, FramePlan
from .schedule import INTERPOLATIONS, Schedule, is_keyed, parse_schedule
from .settings import DEFAULT_VIDEO_MODE, VIDEO_MODES, VideoSettings

__all__ = [
    "DEFAULT_VIDEO_MODE", "INTERPOLATIONS", "SCHEDULABLE", "VIDEO_MODES", "ClipPlan", "ClipState", "DreamedFrame",
    "EstimatedFlows", "FlowSource", "FramePlan", "FrameDreamer", "PrecomputedFlows", "Schedule", "VideoSettings",
    "check_clip_flows", "dream_clip", "dream_frames", "frame_range", "is_keyed", "parse_schedule",
]
