"""The animation flags of ``video`` and ``animate``: schedules, motion, masks, cadence -> a :class:`ClipPlan`."""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any, Optional

from ..animation import MaskSource, Motion, VideoMask, load_mask
from ..clip import INTERPOLATIONS, SCHEDULABLE, ClipPlan, is_keyed
from ..models.spec import DreamModel
from ..settings import DreamSettings
from ..video.journal import file_identity
from ..clip.settings import RECOMMENDED_COLOUR_COHERENCE, VideoSettings
from .args import SCHEDULE_HINT, SETTINGS, Keyed, add_setting_argument, number_or_schedule

#: Schedulable setting -> the argparse dest of its flag (where they differ).
_DEST = {"objective": "layers"}


def add_animation_arguments(p: argparse.ArgumentParser, *, cadence: bool, motion_help: str) -> None:
    """``--interpolation``, ``--zoom``, ``--rotate``, ``--translate``, ``--mask`` and, for videos, ``--cadence``."""
    g = p.add_argument_group("animation", "Numeric dream and video flags, --layers and the motion flags take keyframed "
                                          "schedules too: '0:(0.01), 48:(0.04)' (frame numbers of the clip) or "
                                          "'0s:(0.01), 2.5s:(0.04)' (seconds).")
    g.add_argument("--interpolation", choices=INTERPOLATIONS, default="linear",
                   help="between schedule keys: linear, smooth (eases in and out of each key) or hold (a step); "
                        "a schedule can name its own, 'smooth: 0:(1), 30:(2)'")
    g.add_argument("--zoom", type=number_or_schedule(float, True), default=None, metavar="ZOOM",
                   help=f"{motion_help}: scale per frame about the centre, 1.02 = 2%% in per frame, <1 zooms out"
                        f"{SCHEDULE_HINT} (default: 1, none)")
    g.add_argument("--rotate", type=number_or_schedule(float, True), default=None, metavar="DEGREES",
                   help=f"{motion_help}: degrees per frame, positive = counter-clockwise{SCHEDULE_HINT} (default: 0)")
    g.add_argument("--translate", type=number_or_schedule(float, True, "pair"), default=None, metavar="DX,DY",
                   help=f"{motion_help}: pixels per frame the picture moves, x right, y down, e.g. 0,2"
                        f"{SCHEDULE_HINT} (default: 0,0)")
    g.add_argument("--mask", default=None,
                   help="where to dream: an image (white = dream, black = keep, grey = weaker; resized to the frames) "
                        "or a video with one mask per frame; none: everywhere")
    add_setting_argument(g, SETTINGS["colour_coherence"], schedules=True)
    if cadence:
        g.add_argument("--cadence", type=int, default=1,
                       help="dream every Nth frame; the frames between take the dreams on both sides, carried along "
                            "the optical flow and cross-faded (N times fewer dreamed frames)")


def schedules_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The flags given as keyframed schedules: setting name -> schedule text."""
    out = {}
    for name in SCHEDULABLE:
        value = getattr(args, _DEST.get(name, name), None)
        if isinstance(value, Keyed) or (name == "objective" and isinstance(value, str) and is_keyed(value)):
            out[name] = str(value)
    return out


def _constant(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None or isinstance(value, Keyed) else value


def plan_from_args(args: argparse.Namespace, model: DreamModel, settings: DreamSettings, video: VideoSettings, *,
                   fps: Optional[Fraction], cadence_start: int = 0) -> ClipPlan:
    """The :class:`ClipPlan` the flags describe (constants, schedules, motion, cadence)."""
    schedules = schedules_from_args(args)
    motion = Motion(zoom=_constant(args, "zoom", 1.0), rotate=_constant(args, "rotate", 0.0),
                    translate=tuple(_constant(args, "translate", (0.0, 0.0))))
    return ClipPlan(
        model, settings,
        objective=None if "objective" in schedules else args.layers,
        video=video, schedules=schedules, motion=motion,
        cadence=getattr(args, "cadence", 1), cadence_start=cadence_start,
        fps=float(fps) if fps else None, interpolation=args.interpolation,
    )


def masks_from_args(args: argparse.Namespace) -> Optional[MaskSource | VideoMask]:
    """``--mask`` as a mask source, or ``None``."""
    return load_mask(args.mask) if args.mask else None


def colour_coherence_from_args(args: argparse.Namespace) -> float:
    """``--colour-coherence`` as a constant (a schedule's value comes from the plan, frame by frame)."""
    return _constant(args, "colour_coherence", RECOMMENDED_COLOUR_COHERENCE)


def animation_identity(args: argparse.Namespace) -> dict[str, Any]:
    """What of the animation flags a resumed run must share with the first one."""
    return {
        "schedules": schedules_from_args(args),
        "interpolation": args.interpolation,
        "motion": [_constant(args, "zoom", 1.0), _constant(args, "rotate", 0.0),
                   list(_constant(args, "translate", (0.0, 0.0)))],
        "cadence": getattr(args, "cadence", 1),
        "mask": file_identity(args.mask),  # its content: a mask replaced at the same path is another run
        "colour_coherence": colour_coherence_from_args(args),
    }
