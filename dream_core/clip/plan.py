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

import torch

from ..dream import check_image_for_dream, guide_objective
from ..objectives import (Objective, ScaledObjective, SumObjective, check_objective_size, parse_objective,
                          resolve_objective)
from ..errors import InvalidParameterError, did_you_mean
from ..models.spec import DreamModel
from ..options import options
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
#: The DreamSettings fields that hold whole numbers (rounded after interpolation).
INTEGER_SETTINGS = {name for name, o in options(DreamSettings).items() if o.kind is int}


#: Most memory a cadence's held frames may take (the in-between frames wait for the next dreamed frame:
#: :mod:`dream_core.clip.cadence`). A cap, checked before the first frame, not a spill to disk.
MAX_HELD_BYTES = 2 * 1024**3
#: Values each held frame keeps per pixel (raw, provisional dream, carried difference, composed flow and
#: reliability, its own flow and reliability: 15 in tensors), with the allocator's overhead: at 640x360 the
#: process grew by 21.5 MB (93 bytes a pixel) per held frame in float32.
HELD_VALUES_PER_PIXEL = 24


def held_frame_bytes(size: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Memory one held in-between frame of ``size`` ``(H, W)`` takes, in bytes (estimate, see
    :data:`HELD_VALUES_PER_PIXEL`)."""
    return size[0] * size[1] * HELD_VALUES_PER_PIXEL * torch.finfo(dtype).bits // 8


def check_cadence_memory(cadence: int, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> None:
    """Refuse a cadence whose ``cadence - 1`` held frames of ``size`` ``(H, W)`` exceed :data:`MAX_HELD_BYTES`.

    Raises:
        InvalidParameterError: naming the largest cadence that fits and the frame size that fits this one
            (``parameter="cadence"``).
    """
    each = held_frame_bytes(size, dtype)
    if (cadence - 1) * each <= MAX_HELD_BYTES:
        return
    h, w = size
    fits = 1 + MAX_HELD_BYTES // each
    side = int(max(h, w) * (MAX_HELD_BYTES / ((cadence - 1) * each)) ** 0.5)
    raise InvalidParameterError(
        f"A cadence of {cadence} holds {cadence - 1} frames of {w}x{h} until the next dreamed frame, about "
        f"{(cadence - 1) * each / 1e9:.1f} GB; at most {MAX_HELD_BYTES / 1e9:.1f} GB are held. Use a cadence of at "
        f"most {fits} at this size, or smaller frames (max_side {side} or less for a cadence of {cadence}).",
        parameter="cadence",
    )


def parse_setting_schedule(name: str, text: Union[str, float, int],
                           interpolation: str = DEFAULT_INTERPOLATION) -> Schedule:
    """The schedule of the setting ``name`` (one of :data:`SCHEDULABLE`), bounded as a whole: the text
    (:data:`~dream_core.clip.schedule.MAX_SCHEDULE_TEXT`) and, for the objective, every channel its keys
    name together (:func:`~dream_core.objectives.check_objective_size`). What a front end validates with.

    Raises:
        InvalidParameterError: ``name`` cannot be scheduled.
        ScheduleSyntaxError, ObjectiveSyntaxError, ChannelOutOfRangeError: as the parsers.
    """
    if name not in SCHEDULABLE:
        raise InvalidParameterError(
            f"{name!r} cannot be scheduled.{did_you_mean(name, SCHEDULABLE)} Schedulable: {', '.join(SCHEDULABLE)}.",
            parameter="schedule",
        )
    schedule = parse_schedule(text, kind=SCHEDULABLE[name][1], interpolation=interpolation, name=name)
    if name == "objective":
        check_objective_size(",".join(map(str, schedule.values())))
    return schedule


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
        feedback: a feedback animation (mode ``independent``, frames after the first dreamed with
            ``video.later_iterations``): a schedule of ``later_iterations`` is read.
        guide: an RGB ``[1,3,H,W]`` image in ``0..1``: every frame is dreamed towards its features at the
            layers of its objective (:func:`~dream_core.dream.guide_objective`, as ``dream_image(guide=...)``;
            a scheduled objective's keys are each guided).

    Raises:
        InvalidParameterError: an unknown setting name, a cadence below 1, a schedule of a setting the
            mode never reads (:meth:`VideoSettings.unused`: ``carry`` in mode ``independent``).
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
        feedback: bool = False,
        guide: Optional[torch.Tensor] = None,
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
            self.schedules[name] = text if isinstance(text, Schedule) else parse_setting_schedule(
                name, text, interpolation)
            self.schedules[name].check_keys(fps)
        ignored = [name for name in self.schedules if name in video.unused(cadence, feedback)]
        if ignored:
            raise InvalidParameterError(
                f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} scheduled, but mode {video.mode!r} "
                f"{'of a feedback animation ' if feedback else ''}never reads {'it' if len(ignored) == 1 else 'them'}"
                f"{' (only stable mode does)' if video.mode != 'seed' or cadence == 1 else ''}. Remove the "
                "schedule, or use mode 'stable'.", parameter="schedule",
            )
        if "objective" in self.schedules:  # a Schedule made elsewhere is bounded as a whole here too
            check_objective_size(",".join(map(str, self.schedules["objective"].values())))
        self._objectives: dict[str, Objective] = {}
        def guided(target: Objective) -> Objective:
            return target if guide is None else guide_objective(model, target, guide)

        if "objective" in self.schedules:
            for text in self.schedules["objective"].values():
                self._objectives[str(text)] = guided(parse_objective(str(text), model))
            self.objective: Optional[Objective] = None
        else:
            self.objective = guided(resolve_objective(model, objective))

    @property
    def objectives(self) -> list[Objective]:
        """Every objective a frame may use: the constant one, or each key's of the objective schedule."""
        return [self.objective] if self.objective is not None else list(self._objectives.values())

    @property
    def layers(self) -> list[str]:
        """Every layer any frame's objective reads."""
        return sorted({name for o in self.objectives for name in o.layers()})

    def __call__(self, index: int) -> FramePlan:
        """The plan of the frame with global ``index``."""
        values = {name: s.at(index, self.fps) for name, s in self.schedules.items()}
        dream = {k: v for k, v in values.items() if SCHEDULABLE[k][0] == "dream"}
        dream = {k: (round(v) if k in INTEGER_SETTINGS else v) for k, v in dream.items()}
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

    def check(self, indices: range, size: Optional[tuple[int, int]] = None, masks: Any = None) -> None:
        """Everything about the frames ``indices`` that can be known before the first one is dreamed.

        Validates the settings of every frame where a schedule has a key, and of the first and last frame;
        with the frames' ``size`` ``(H, W)``, that every dreamed frame fits the model at its own octaves and
        scale (a scheduled ``num_octaves`` too deep for the frame size at a later frame), and that a cadence's
        held frames fit :data:`MAX_HELD_BYTES`; with ``masks``, that they cover every frame (a mask source's
        ``check_frames(indices)``, e.g. a mask video shorter than the clip).

        Raises:
            InvalidParameterError: a scheduled value outside its range, naming the setting and the frame;
                too many octaves for the frame size at some frame; a cadence holding too much memory.
            InvalidImageError: frames the model cannot dream at all; masks that do not cover the frames.
        """
        self._check_values(indices)
        if size is not None:
            self._check_octaves(indices, size)
            check_cadence_memory(self.cadence, size, self.model.dtype)
        check_frames = getattr(masks, "check_frames", None)
        if check_frames is not None:
            check_frames(indices)

    def _check_octaves(self, indices: range, size: tuple[int, int]) -> None:
        """Every distinct ``(num_octaves, octave_scale)`` of the dreamed frames of ``indices`` against the model."""
        octaves, scale = self.schedules.get("num_octaves"), self.schedules.get("octave_scale")
        pairs: dict[tuple[int, float], int] = {}
        if octaves is None and scale is None:
            pairs[(self.settings.num_octaves, self.settings.octave_scale)] = indices.start
        else:  # a product of two interpolations can dip between keys: every frame (cheap lookups; the first
            for index in indices:  # frame of a resumed run or of a worker's segment is dreamed whatever the cadence)
                pair = (round(octaves.at(index, self.fps)) if octaves else self.settings.num_octaves,
                        scale.at(index, self.fps) if scale else self.settings.octave_scale)
                pairs.setdefault(pair, index)  # type: ignore[arg-type]
        frame = torch.zeros(1, 3, 1, 1).expand(1, 3, *size)  # the size alone: no frame-sized memory
        for (count, ratio), index in pairs.items():
            try:
                check_image_for_dream(frame, self.model, self.settings.with_(num_octaves=count, octave_scale=ratio))
            except InvalidParameterError as exc:
                where = f" (frame {index} of the clip)" if octaves is not None or scale is not None else ""
                raise InvalidParameterError(f"{exc}{where}", parameter=exc.parameter) from None

    def _check_values(self, indices: range) -> None:
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
