"""Each setting declared once, on its dataclass field: type, range, default, help, flag, schedulable, look.

:class:`~dream_core.settings.DreamSettings` and :class:`~dream_core.clip.settings.VideoSettings`
declare their fields with :func:`setting`::

    num_octaves: int = setting(4, minimum=1, maximum=32, flag="--octaves", look=True, schedulable=True,
                               help="Number of scales ... More -> larger patterns.")

and everything else is read from that declaration through :func:`options`: the validation
(:func:`check_options`), the command line's flags (:mod:`dream_core.cli.args`), the nodes' widgets
(``nodes/common.py``), the schedulable settings (:data:`dream_core.clip.plan.SCHEDULABLE`) and the
fields a preset decides (:data:`dream_core.presets.LOOK_FIELDS`).

Convention: ranges include both ends; numbers are finite; an ``int`` setting takes integers only
(not ``bool``); a ``str`` setting is one of its ``choices``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .errors import InvalidParameterError

_KEY = "dream_core.option"
_SAME = object()  # front_default not given: the library's default


@dataclass(frozen=True)
class Option:
    """One setting as every front end needs it.

    Attributes:
        name: the field's name: also the nodes' widget name and the ``parameter`` of errors about it.
        kind: ``int``, ``float``, ``bool`` or ``str``.
        default: the library's default (the dataclass field's).
        help: what it does and which way it pushes the dream (the ``--help`` text and the widget tooltip).
        flag: the command line's flag.
        minimum: smallest valid value (numbers), included.
        maximum: largest valid value (numbers), included.
        choices: the valid values of a ``str`` setting.
        step: the nodes' widget increment (numbers).
        schedulable: keyframed schedules may change it frame by frame.
        look: a preset decides it.
        front_default: the command line's and the nodes' default (differs from ``default`` where the
            library keeps a neutral value, e.g. ``colour_coherence``).
    """

    name: str
    kind: type
    default: Any
    help: str
    flag: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple[str, ...] = ()
    step: Optional[float] = None
    schedulable: bool = False
    look: bool = False
    front_default: Any = None

    @property
    def range_text(self) -> str:
        """``"1..32"``, ``"one of lapnorm, plain"``, ``"true or false"``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        return f"{_number(self.minimum)}..{_number(self.maximum)}"

    def check(self, value: Any) -> None:
        """Raise :class:`InvalidParameterError` (naming this setting) unless ``value`` is valid.

        Every message starts with the setting's name and says what was expected and what was given.
        """
        name = self.name
        if self.kind is bool:
            if not isinstance(value, bool):
                raise InvalidParameterError(f"{name} must be true or false; got {value!r}.", parameter=name)
            return
        if self.kind is str:
            if value not in self.choices:
                raise InvalidParameterError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}.",
                                            parameter=name)
            return
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise InvalidParameterError(f"{name} must be an integer; got {value!r}.", parameter=name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InvalidParameterError(f"{name} must be a finite number; got {value!r}.", parameter=name)
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= value <= high:
            raise InvalidParameterError(f"{name} must be in {self.range_text}; got {_number(value)}.", parameter=name)


def _number(x: Optional[float]) -> str:
    if x is None:
        return "any"
    return str(x) if isinstance(x, numbers.Integral) else f"{x:g}"


def setting(default: Any, *, help: str, flag: str, minimum: Optional[float] = None,
            maximum: Optional[float] = None, choices: tuple[str, ...] = (), step: Optional[float] = None,
            schedulable: bool = False, look: bool = False, front_default: Any = _SAME) -> Any:
    """A dataclass field declaring a setting (see :class:`Option` for the arguments); its name and
    type come from the field itself."""
    spec = {"help": help, "flag": flag, "minimum": minimum, "maximum": maximum, "choices": tuple(choices),
            "step": step, "schedulable": schedulable, "look": look,
            "front_default": default if front_default is _SAME else front_default}
    return dataclasses.field(default=default, metadata={_KEY: spec})


@functools.lru_cache(maxsize=None)
def options(cls: type) -> Mapping[str, Option]:
    """Field name -> :class:`Option` of every field of dataclass ``cls`` declared with :func:`setting`,
    in field order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if _KEY in f.metadata:
            out[f.name] = Option(name=f.name, kind=hints[f.name], default=f.default, **f.metadata[_KEY])
    return MappingProxyType(out)


def check_options(settings: Any) -> None:
    """Check every declared field of the dataclass instance ``settings`` (:meth:`Option.check`), in field order.

    Raises:
        InvalidParameterError: the first invalid field, named.
    """
    for option in options(type(settings)).values():
        option.check(getattr(settings, option.name))
