"""Typed errors raised by ``dream_core``.

Every error is a :class:`ValueError` subclass (so callers that only know
``ValueError`` still catch them) whose message says what was expected, what was
given, and how to fix it. ComfyUI shows these messages verbatim in its error
dialog, so they are written for a person, not a log file.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class DreamError(ValueError):
    """Base class of every error ``dream_core`` raises for bad input."""


class UnknownModelError(DreamError):
    """A model name that is not in the registry."""


class UnknownLayerError(DreamError):
    """A layer name that the chosen model does not have."""


class ChannelOutOfRangeError(DreamError):
    """A channel index outside ``0 .. channels-1`` of its layer."""


class ObjectiveSyntaxError(DreamError):
    """An objective string that cannot be parsed."""


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
