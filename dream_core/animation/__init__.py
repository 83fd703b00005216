"""Animation controls on the one frame loop: keyframed schedules, zoom/rotate/translate motion, masks, cadence,
feedback animation ("infinite zoom").

* :mod:`.schedule`: ``"0:(0.01), 48:(0.04)"`` strings -> :class:`Schedule` (frames or seconds, linear / smooth / hold);
* :mod:`dream_core.flow.motion`: :class:`Motion` as a backward flow field (zoom, rotation, translation per frame);
* :mod:`.plan`: :class:`ClipPlan`, every frame's settings, objective, motion and cadence by global index;
* :mod:`.masks`: where to dream, per frame (image, video file, batch);
* :mod:`.feedback`: :class:`FeedbackFrames`, the frames of a zoom animation from a still image.
"""

from .feedback import FeedbackFrames, feedback_plan
from .masks import MaskBatch, MaskSource, VideoMask, load_mask
from ..flow.motion import Motion, apply_motion, compose_backward, motion_flow
from .plan import SCHEDULABLE, ClipPlan, FramePlan
from .schedule import INTERPOLATIONS, Schedule, is_keyed, parse_schedule

__all__ = [
    "SCHEDULABLE", "INTERPOLATIONS", "ClipPlan", "FeedbackFrames", "FramePlan", "MaskBatch", "MaskSource", "Motion",
    "Schedule", "VideoMask", "apply_motion", "compose_backward", "feedback_plan", "is_keyed", "load_mask", "motion_flow",
    "parse_schedule",
]
