"""Typed errors raised by ``dream_core``, and how front ends add their own remedies.

Every error is a :class:`ValueError` subclass (so callers that only know
``ValueError`` still catch them) whose message says what was expected, what was
given, and how to fix it *in terms of the library*: function arguments and
settings fields, never a command-line flag, a ComfyUI node or a folder.

Each error may name the core ``parameter`` it is about (a function argument or
settings field such as ``"num_octaves"``, ``"max_side"``, ``"objective"``,
``"flow"``). A front end keeps a table from those names to its own remedy (the
CLI: a flag; the nodes: a node or widget) and hands users
:func:`with_remedy`'s message: that is the one mechanism, no front end rewrites
core messages.

Example::

    try:
        ...
    except DreamError as exc:
        raise with_remedy(exc, {"max_side": "Shrink the input with --max-side."}) from exc
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Optional


class DreamError(ValueError):
    """Base class of every error ``dream_core`` raises for bad input.

    Args:
        message: what is wrong, what was expected and the library-level fix.
        parameter: the core parameter the error is about, or ``None``.
    """

    def __init__(self, message: str = "", *, parameter: Optional[str] = None) -> None:
        super().__init__(message)
        self.parameter = parameter


def with_remedy(exc: DreamError, remedies: Mapping[str, str]) -> DreamError:
    """``exc`` with a front end's remedy for ``exc.parameter`` appended.

    Args:
        exc: a core error.
        remedies: the front end's table, core parameter -> one sentence (e.g.
            ``{"num_octaves": "Set it with --octaves."}``).

    Returns:
        A new error of the same type and parameter whose message ends with the
        remedy, or ``exc`` itself when the table has none for its parameter.
    """
    remedy = remedies.get(exc.parameter or "")
    if not remedy:
        return exc
    text = str(exc).rstrip()
    return type(exc)(f"{text} {remedy}" if text else remedy, parameter=exc.parameter)


class UnknownModelError(DreamError):
    """A model name that is not in the registry."""


class UnknownLayerError(DreamError):
    """A layer name that the chosen model does not have."""


class ChannelOutOfRangeError(DreamError):
    """A channel index outside ``0 .. channels-1`` of its layer."""


class ObjectiveSyntaxError(DreamError):
    """An objective string that cannot be parsed."""


class ScheduleSyntaxError(DreamError):
    """A keyframed schedule string that cannot be parsed (the message names the position)."""


class WeightsError(DreamError):
    """A weights file that is missing, unreadable, or for another architecture."""


class InvalidImageError(DreamError):
    """An image tensor or file of the wrong shape, size, channel count or values."""


class InvalidParameterError(DreamError):
    """A dream, flow or video parameter outside its valid range."""


class FlowError(DreamError):
    """Optical flow of the wrong shape, method or frame count."""


class VideoError(DreamError):
    """A video file that cannot be read or written."""


class ClusterError(DreamError):
    """A compute cluster (Ray) that cannot be reached or joined: the message names what to check."""


class DeviceMemoryError(DreamError):
    """The compute device ran out of memory even after the dream had shrunk its tiles as far as it can."""


class MissingDependencyError(DreamError):
    """An optional dependency a feature needs is not installed (the message gives the install command)."""


class DreamCancelled(RuntimeError):
    """Raised by a progress callback to stop a dream between two steps."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` entries of ``candidates`` that look like ``name``.

    Matching is case-insensitive; exact prefixes come first, then
    :func:`difflib.get_close_matches` suggestions.
    """
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    key = name.lower().strip()
    prefix = [c for c in pool if c.lower().startswith(key) and key]
    fuzzy = [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=n, cutoff=0.5)]
    out: list[str] = []
    for c in prefix + fuzzy:
        if c not in out:
            out.append(c)
    return out[:n]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Format a "did you mean" clause (empty string when nothing is close)."""
    matches = close_matches(name, candidates)
    if not matches:
        return ""
    return " Did you mean: " + ", ".join(repr(m) for m in matches) + "?"
