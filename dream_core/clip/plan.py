"""What each frame of a clip is dreamed with: settings, objective and motion from keyframed schedules, and cadence.

:class:`ClipPlan` is given the constant settings of a run, the schedules of the
settings that change over time (:data:`SCHEDULABLE`), a drift or zoom motion and a
cadence, and answers per global frame index with a :class:`FramePlan`. The frame
loop (:func:`dream_core.clip.loop.dream_clip`) asks it for every frame, so a
schedule changes the settings of the frames it says, whichever front end runs
the clip (CLI, node, a worker of a distributed render: the plan depends on the
global index only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Union

from ..errors import InvalidParameterError, did_you_mean
from ..models.spec import DreamModel
from ..options import options
from ..objectives import Objective, ScaledObjective, SumObjective, parse_objective, resolve_objective
from ..settings import DreamSettings
from .settings import VideoSettings
from ..flow.motion import Motion
from .schedule import DEFAULT_INTERPOLATION, Schedule, parse_schedule

#: Setting name -> (where it lives, value kind): the settings declared ``schedulable``
#: (:mod:`dream_core.options`), then the motion and the objective. Integers are rounded after interpolation.
SCHEDULABLE: dict[str, tuple[str, str]] = {
    **{name: ("dream", "number") for name, o in options(DreamSettings).items() if o.schedulable},
    **{name: ("video", "number") for name, o in options(VideoSettings).items() if o.schedulable},
    "zoom": ("motion", "number"),
    "rotate": ("motion", "number"),
    "translate": ("motion", "pair"),
    "objective": ("objective", "text"),
}
_INTEGERS = {name for name, o in options(DreamSettings).items() if o.kind is int}


@dataclass(frozen=True)
class FramePlan:
    """How one frame is made.

    Attributes:
        index: the frame's global index.
        settings: its dream settings.
        video: its video settings (the mode never changes within a clip).
        objective: what it maximises (a cross-fade of two objectives between their keys).
        motion: the drift of the carried dream (video) or the camera move onto this frame (animation).
        dream: ``False`` for the frames between two dreamed ones of a cadence: they are carried
            along the flow only.
    """

    index: int
    settings: DreamSettings
    video: VideoSettings
    objective: Objective
    motion: Motion
    dream: bool = True


class ClipPlan:
    """Per-frame settings of a clip, from constant settings and keyframed schedules.

    Args:
        model: the model (objectives are checked against its layers).
        settings: the constant dream settings (fields without a schedule).
        objective: the constant objective (``None``: the model's default), unless scheduled.
        video: the constant video settings (its mode must be the frame dreamer's).
        schedules: setting name -> schedule string (or a parsed :class:`Schedule`) for any of
            :data:`SCHEDULABLE`; a plain number is a constant.
        motion: the constant motion (zoom, rotate, translate) unless scheduled.
        cadence: dream every ``cadence``-th frame counted from ``cadence_start``; the frames between
            are carried along the flow (``1``: dream every frame).
        cadence_start: global index of the first frame of the range being dreamed (it is always
            dreamed); a resumed run or a segment of it passes the same value.
        fps: the clip's frame rate, for keys written in seconds.

    Schedule keys are global frame indices (key ``0`` is the clip's first frame, whatever range
    or segment is being dreamed) or seconds from it.
        interpolation: between keys, unless a schedule names its own (``"smooth: 0:(1), ..."``).

    Raises:
        InvalidParameterError: an unknown setting name, a cadence below 1.
        ScheduleSyntaxError: a schedule that cannot be read.
        UnknownLayerError, ObjectiveSyntaxError: an objective in a schedule that the model lacks.
    """

    def __init__(
        self,
        model: DreamModel,
        settings: DreamSettings,
        *,
        objective: Objective | str | None = None,
        video: VideoSettings = VideoSettings(),
        schedules: Optional[Mapping[str, Union[str, float, Schedule]]] = None,
        motion: Motion = Motion(),
        cadence: int = 1,
        cadence_start: int = 0,
        fps: Optional[float] = None,
        interpolation: str = DEFAULT_INTERPOLATION,
    ) -> None:
        if isinstance(cadence, bool) or not isinstance(cadence, int) or cadence < 1:
            raise InvalidParameterError(f"cadence must be a whole number >= 1 (1 = dream every frame); got {cadence!r}.",
                                        parameter="cadence")
        if cadence > 1 and not video.needs_flow:
            raise InvalidParameterError(
                f"A cadence of {cadence} carries the dream along the optical flow between dreamed frames; mode "
                f"{video.mode!r} has no flow. Use mode 'stable' or 'seed', or a cadence of 1.", parameter="cadence",
            )
        self.model = model
        self.settings = settings
        self.video = video
        self.motion = motion
        self.cadence = cadence
        self.cadence_start = cadence_start
        self.fps = fps
        self.schedules: dict[str, Schedule] = {}
        for name, text in (schedules or {}).items():
            if name not in SCHEDULABLE:
                raise InvalidParameterError(
                    f"{name!r} cannot be scheduled.{did_you_mean(name, SCHEDULABLE)} Schedulable: "
                    f"{', '.join(SCHEDULABLE)}.", parameter="schedule",
                )
            kind = SCHEDULABLE[name][1]
            self.schedules[name] = text if isinstance(text, Schedule) else parse_schedule(
                text, kind=kind, interpolation=interpolation, name=name)
        self._objectives: dict[str, Objective] = {}
        if "objective" in self.schedules:
            for text in self.schedules["objective"].values():
                self._objectives[str(text)] = parse_objective(str(text), model)
            self.objective: Optional[Objective] = None
        else:
            self.objective = resolve_objective(model, objective)

    @property
    def layers(self) -> list[str]:
        """Every layer any frame's objective reads."""
        objectives = [self.objective] if self.objective is not None else list(self._objectives.values())
        return sorted({name for o in objectives for name in o.layers()})

    def __call__(self, index: int) -> FramePlan:
        """The plan of the frame with global ``index``."""
        values = {name: s.at(index, self.fps) for name, s in self.schedules.items()}
        dream = {k: v for k, v in values.items() if SCHEDULABLE[k][0] == "dream"}
        dream = {k: (round(v) if k in _INTEGERS else v) for k, v in dream.items()}
        video = {k: v for k, v in values.items() if SCHEDULABLE[k][0] == "video"}
        motion = {k: (tuple(v) if k == "translate" else v) for k, v in values.items() if SCHEDULABLE[k][0] == "motion"}
        return FramePlan(
            index=index,
            settings=self.settings.with_(**dream) if dream else self.settings,
            video=replace(self.video, **video) if video else self.video,
            objective=self._objective_at(values.get("objective")),
            motion=replace(self.motion, **motion) if motion else self.motion,
            dream=(index - self.cadence_start) % self.cadence == 0,
        )

    def _objective_at(self, blend: Any) -> Objective:
        if blend is None:
            assert self.objective is not None
            return self.objective
        terms = [self._objectives[text] if weight == 1.0 else ScaledObjective(self._objectives[text], weight)
                 for text, weight in blend]
        return terms[0] if len(terms) == 1 else SumObjective(terms)

    def check(self, indices: range) -> None:
        """Validate the settings of every frame where a schedule has a key, and of the first and last frame.

        Raises:
            InvalidParameterError: a scheduled value outside its range, naming the setting and the frame.
        """
        positions = {indices.start, indices.stop - 1}
        for schedule in self.schedules.values():
            for p in schedule.positions(self.fps):
                frame = math.floor(p)
                if indices.start <= frame < indices.stop:
                    positions.update({frame, min(frame + 1, indices.stop - 1)})
        for index in sorted(positions):
            plan = self(index)
            try:
                plan.settings.validate()
                plan.video.validate()
                plan.motion.validate()
            except InvalidParameterError as exc:
                scheduled = exc.parameter in self.schedules
                where = f" (frame {index}, from its schedule {self.schedules[exc.parameter].text!r})" if scheduled else ""
                raise InvalidParameterError(f"{exc}{where}", parameter=exc.parameter) from None
