"""What every command of the command line shares: dream flags, device and threads, help format, remedies.

Flags map one to one onto :class:`~dream_core.dream.DreamSettings` and
:class:`~dream_core.clip.settings.VideoSettings` fields and are made from their
declarations (:func:`add_setting_argument`, :mod:`dream_core.options`);
(:data:`FLAGS` names the flag of each core parameter); :data:`REMEDIES` turns a
core error's ``parameter`` into the sentence the command line adds to its
message (:func:`dream_core.errors.with_remedy`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Callable, Optional

import torch

from ..settings import DreamSettings
from ..clip.settings import VideoSettings
from ..errors import InvalidParameterError
from ..models import DEFAULT_MODEL
from ..clip.schedule import is_keyed, parse_schedule
from ..errors import ScheduleSyntaxError
from ..options import Option, options
from ..presets import DEFAULT_PRESET, LOOK_FIELDS, PRESETS, preset_look, preset_settings

log = logging.getLogger("dream_core")

#: Every dream and video setting's declaration (:mod:`dream_core.options`), by field name.
SETTINGS: dict[str, Option] = {**options(DreamSettings), **options(VideoSettings)}

#: The flag of each core parameter (DreamSettings / VideoSettings fields, function arguments).
FLAGS = {
    **{name: option.flag for name, option in SETTINGS.items()},
    "max_side": "--max-side", "model": "--model", "weights": "--weights",
    "objective": "--layers", "guide": "--guide", "flow_method": "--flow", "flow_weights": "--flow-weights",
    "start": "--start", "end": "--end", "start_image": "--start-image", "crf": "--crf", "x264_preset": "--x264-preset", "preset": "--preset",
    "segment_frames": "--segment-frames", "zoom": "--zoom", "rotate": "--rotate", "translate": "--translate",
    "cadence": "--cadence", "mask": "--mask", "interpolation": "--interpolation", "frames": "--frames",
    "fps": "--fps",
}

#: Core parameter -> what the command line adds to an error about it.
REMEDIES = {
    **{name: f"Set it with {flag}." for name, flag in FLAGS.items()},
    "image": "Shrink the input with --max-side.",
    "tile_overlap": "Raise --tile-size or lower --tile-overlap.",
    "model": "List the registered models with --list-models.",
    "objective": "Give it with --layers; --list-layers MODEL lists the layers and their channel counts.",
    "weights": "Give the state dict file for --model with --weights FILE.",
    "flow_weights": "Give the RAFT state dict file with --flow-weights FILE, or use --flow dis.",
    "mode": "Set it with --mode, or dream a single frame with the image command.",
    "resume": "Start over with --no-resume.",
    "workers": "Or run with --workers 1.",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every flag's default, ``(default: ...)``, after its help (unless the help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default: " in text else super()._get_help_string(action)


class Keyed(str):
    """A flag's value written as a keyframed schedule (``"0:(0.01), 48:(0.04)"``): the plan parses it per frame."""


#: How a schedulable flag's help ends.
SCHEDULE_HINT = "; or a schedule '0:(v), 48:(v)' (frames) / '0s:(v), 2.5s:(v)' (seconds)"


def number_or_schedule(kind: type, schedulable: bool, value_kind: str = "number") -> Callable[[str], object]:
    """An argparse ``type``: a number (``kind``), or a keyframed schedule when ``schedulable``.

    The schedule's syntax is checked here, so a typo is reported with the flag before anything runs.
    """
    def convert(text: str) -> object:
        if is_keyed(text):
            if not schedulable:
                raise argparse.ArgumentTypeError(
                    "keyframed schedules apply to the video and animate commands; give one number here")
            try:
                parse_schedule(text, kind=value_kind)
            except ScheduleSyntaxError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
            return Keyed(text)
        if value_kind == "pair":
            try:
                return parse_schedule(text, kind="pair").at(0)
            except ScheduleSyntaxError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            return kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            more = " or a schedule like '0:(1), 48:(2)'" if schedulable else ""
            raise argparse.ArgumentTypeError(f"expected {expected}{more}; got {text!r}") from None

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _preset_name(value: str) -> str:
    """``--preset``'s type: a look preset; an x264 speed preset is pointed to ``--x264-preset``."""
    from ..video.encoder import X264_PRESETS

    if value in PRESETS:
        return value
    hint = " (the x264 speed preset is set with --x264-preset)" if value in X264_PRESETS else ""
    raise argparse.ArgumentTypeError(f"unknown look preset {value!r}; choose from {', '.join(PRESETS)}{hint}")


def _look_default(field: str) -> str:
    """``(default: the preset's: gentle 0.006, classic 0.01, ...)`` for a flag a preset decides."""
    values = ", ".join(f"{name} {preset_look(name)[field]}" for name in PRESETS)
    return f"(default: the --preset's; {values})"


def add_setting_argument(group: "argparse._ArgumentGroup | argparse.ArgumentParser", option: Option, *,
                         schedules: bool, default: Any = None, help: Optional[str] = None) -> None:
    """The flag of one setting, from its declaration: its name, type, choices, range and help.

    A look field (a preset decides it) defaults to ``None`` (the ``--preset``'s value; :func:`settings_from_args`);
    any other to ``default`` or the setting's front-end default. With ``schedules`` a schedulable number also
    takes a keyframed schedule (a :class:`Keyed` value). The range is checked by the core's validation, whose
    error the command line names the flag in (:data:`REMEDIES`).
    """
    text = (help or option.help).rstrip(".").replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": option.name}
    if option.kind is bool:
        group.add_argument(option.flag, action="store_true", help=text, **kwargs)
        return
    if option.choices:
        kwargs.update(choices=list(option.choices), metavar="{" + ",".join(option.choices) + "}")
    else:
        scheduled = schedules and option.schedulable
        kwargs.update(type=number_or_schedule(option.kind, scheduled) if option.schedulable else option.kind,
                      metavar=option.flag[2:].upper().replace("-", "_"))
        text += f" ({option.range_text}{SCHEDULE_HINT if scheduled else ''})"
    if option.look:
        group.add_argument(option.flag, default=None, help=f"{text} {_look_default(option.name)}", **kwargs)
    else:
        group.add_argument(option.flag, default=option.front_default if default is None else default, help=text,
                           **kwargs)


def add_dream_arguments(p: argparse.ArgumentParser, *, schedules: bool = False) -> None:
    """Flags shared by ``image``, ``video``, ``animate`` and ``demo`` (one per :class:`DreamSettings` field, plus
    model/objective). With ``schedules`` the numeric look flags, ``--jitter`` and ``--layers`` also take keyframed
    schedules (videos and animations)."""
    g = p.add_argument_group("model and objective")
    g.add_argument("--model", default=DEFAULT_MODEL, help="registered model name (see --list-models)")
    g.add_argument("--weights", default=None, help="state dict file (.pth/.safetensors) for --model; "
                                                   "none: the model's own default weights")
    g.add_argument("--layers", default=None,
                   help="objective, e.g. 'block10_dw' or 'block8_dw:12, 0.5*block12_dw:[3,7,10-20]'; "
                        "none: the model's own (see --list-layers MODEL)"
                        + ("; or a schedule '0:(block8_dw), 60:(block12_dw)' (cross-fades between keys)" if schedules else ""))
    g.add_argument("--guide", default=None, help="guide image: dream towards its features")
    d = p.add_argument_group("dream", "A --preset sets the look; the flags marked 'the --preset's' override it one by one.")
    d.add_argument("--preset", type=_preset_name, metavar="{" + ",".join(PRESETS) + "}", default=DEFAULT_PRESET,
                   help="the look: " + "; ".join(f"{p.name}: {p.description.rstrip('.')}" for p in PRESETS.values()))
    for option in options(DreamSettings).values():
        add_setting_argument(d, option, schedules=schedules)
    d.add_argument("--max-side", type=int, default=None,
                   help="downscale the input so its longer side is at most this; none: keep its size")
    r = p.add_argument_group("running")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps; none: cuda if available, else cpu")
    r.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch; none: torch's choice, one per core. On a VM whose cores other "
                        "work shares, --threads 1 can be several times faster (benchmarks/RESULTS.md, 'Threads')")
    r.add_argument("--no-fast-path", action="store_true",
                   help="run the network as loaded instead of its optimised execution copy (debugging, comparison; "
                        "same as DEEPDREAM_FAST_PATH=0)")


def settings_from_args(args: argparse.Namespace) -> DreamSettings:
    """The :class:`DreamSettings` the dream flags describe: ``--preset``'s look, flags given override it; validated.

    A flag given as a keyframed schedule leaves its field at the default here (the plan sets it frame by frame).
    """
    base = DreamSettings(**{
        name: option.default if isinstance(getattr(args, name), Keyed) else getattr(args, name)
        for name, option in options(DreamSettings).items() if not option.look
    })
    given = {field: getattr(args, field) for field in LOOK_FIELDS
             if getattr(args, field) is not None and not isinstance(getattr(args, field), Keyed)}
    return preset_settings(args.preset, base, **given)


def pick_device(name: Optional[str]) -> torch.device:
    """``--device``, or CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def apply_threads(threads: Optional[int]) -> None:
    """``--threads``: the number of CPU threads torch's operators use (``None``: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise InvalidParameterError(f"--threads must be at least 1; got {threads}. Leave it out to use one thread per core.")
    torch.set_num_threads(threads)
    log.debug("torch uses %d CPU thread(s).", threads)


def progress_bar(total: int, desc: str, unit: str = "step") -> Callable[[int, int, torch.Tensor], None]:
    """A tqdm bar on stderr as an ``on_step`` callback."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)

    def on_step(step: int, total_: int, _current: torch.Tensor) -> None:
        bar.total = total_
        bar.update(step - bar.n)
        if step >= total_:
            bar.close()

    return on_step
