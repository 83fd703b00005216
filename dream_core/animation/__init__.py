"""Animation inputs on the one frame loop: masks (where to dream, per frame) and feedback animation
("infinite zoom" from a still image).

* :mod:`.masks`: where to dream, per frame (image, video file, batch);
* :mod:`.feedback`: :class:`FeedbackFrames`, the frames of a zoom animation from a still image.

Schedules, the per-frame plan and cadence are the clip wing's (:mod:`dream_core.clip`); motion fields are
the flow package's (:mod:`dream_core.flow.motion`), re-exported here for convenience.
"""

from ..flow.motion import Motion, apply_motion, compose_backward, motion_flow
from .feedback import FeedbackFrames, feedback_plan
from .masks import MaskBatch, MaskSource, VideoMask, load_mask

__all__ = [
    "FeedbackFrames", "MaskBatch", "MaskSource", "Motion", "VideoMask", "apply_motion", "compose_backward",
    "feedback_plan", "load_mask", "motion_flow",
]
