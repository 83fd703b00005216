"""Feedback animation ("infinite zoom"): every frame is the previous dreamed frame moved by a motion, dreamed again.

:class:`FeedbackFrames` produces the ``(index, frame)`` pairs of such an animation
for the one frame loop (:func:`dream_core.clip.loop.dream_clip`, mode
``independent``): frame 0 is the start image, frame ``k`` the dream of frame
``k - 1`` moved by frame ``k``'s motion (:class:`~dream_core.animation.motion.Motion`,
scheduled through a :class:`~dream_core.clip.plan.ClipPlan`). It reads the
previous dream from the :class:`~dream_core.clip.frame_dreamer.FrameDreamer`
that the loop drives, so the frames are made one at a time (memory stays flat
however long the animation) and a run resumes from a saved dream.

With no motion (zoom 1, no rotation, no translation) frame ``k`` is exactly frame
``k - 1``'s dream dreamed again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional

import torch

from ..errors import InvalidParameterError
from ..clip.frame_dreamer import FrameDreamer
from ..flow.motion import Motion, apply_motion
from ..clip.plan import FramePlan

#: A feedback animation's frames after the first dream with this share of their iterations by default.
DEFAULT_LATER_ITERATIONS = 0.3

#: Areas that come into view (zooming out, rotating, translating) reflect the picture at its edge.
EDGE_MODE = "reflection"


class FeedbackFrames:
    """The frames of a feedback animation, for :func:`~dream_core.clip.loop.dream_clip` (a frame source of
    :func:`~dream_core.pipeline.render_range`: indices :attr:`frames`, never made ahead of the loop).

    Args:
        dreamer: the entered :class:`FrameDreamer` the loop drives (mode ``independent``).
        start: the start image, RGB ``[1,3,H,W]`` in ``0..1``: frame 0.
        count: how many frames the animation has (frame indices ``0 .. count-1``).
        motion: frame index -> the motion from the previous frame onto this one (e.g.
            ``lambda k: plan(k).motion``).
        first: index of the first frame to produce (a resumed run: ``first > 0`` continues from
            ``previous``, the dream of frame ``first - 1``).
        previous: the dream of frame ``first - 1`` when ``first > 0``.

    Raises:
        InvalidParameterError: ``count`` below 1, a dreamer in a flow-based mode, or a resume
            without the previous dream.
    """

    def __init__(self, dreamer: FrameDreamer, start: torch.Tensor, count: int,
                 motion: Callable[[int], Motion], *, first: int = 0, previous: Optional[torch.Tensor] = None) -> None:
        if count < 1:
            raise InvalidParameterError(f"An animation needs at least 1 frame; got {count}.", parameter="frames")
        if dreamer.video.mode != "independent":
            raise InvalidParameterError(
                f"A feedback animation dreams each frame from the moved previous dream, without optical flow; "
                f"its frame dreamer must be in mode 'independent', not {dreamer.video.mode!r}.", parameter="mode",
            )
        if first > 0 and previous is None:
            raise InvalidParameterError("Resuming an animation at a later frame needs the previous frame's dream.",
                                        parameter="start")
        self.dreamer = dreamer
        self.start = start
        self.count = count
        self.motion = motion
        self.first = first
        self.previous = previous
        #: The global indices it yields.
        self.frames = range(first, count)
        #: Frame ``k`` is made from frame ``k - 1``'s dream: it cannot be made ahead, on another thread.
        self.background = False

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        for index in range(self.first, self.count):
            if index == 0:
                yield 0, self.start
                continue
            previous = self.dreamer.prev_dream if index > self.first else self.previous
            assert previous is not None, "dream_clip dreams each frame before it asks for the next"
            yield index, apply_motion(previous, self.motion(index), padding_mode=EDGE_MODE).clamp(0, 1)


def feedback_plan(plan: Callable[[int], FramePlan],
                  later_iterations: float = DEFAULT_LATER_ITERATIONS) -> Callable[[int], FramePlan]:
    """``plan`` with frames after the first dreamed with ``later_iterations`` of their iterations: each frame
    starts from the previous dream, which already holds most of the pattern (a full dream per frame
    compounds into a saturated picture within a few frames).

    Raises:
        InvalidParameterError: ``later_iterations`` outside ``(0, 1]``.
    """
    if not 0 < later_iterations <= 1:
        raise InvalidParameterError(f"later_iterations must be in (0, 1]; got {later_iterations}.",
                                    parameter="later_iterations")

    def frame(index: int) -> FramePlan:
        p = plan(index)
        if index == 0:
            return p
        iterations = max(1, round(p.settings.num_iterations * later_iterations))
        return dataclasses.replace(p, settings=p.settings.with_(num_iterations=iterations))

    return frame
