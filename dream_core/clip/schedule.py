"""Keyframed value schedules, written as ComfyUI users write them: ``"0:(0.01), 48:(0.04), 96:(0.02)"``.

Grammar::

    schedule := [interpolation ":"] key ":(" value ")" ("," key ":(" value ")")*
              | value                                   (a constant)
    key      := frame number ("48") or seconds ("2.5s", kept when the frame rate changes)
    value    := number | number "," number (a pair, e.g. a translation) | text (an objective)
    interpolation := "linear" (default) | "smooth" | "hold"

Conventions:
    Keys are frame positions of the clip (global frame indices, 0 = its first
    frame) or seconds (``2.5s`` = frame ``2.5 * fps``). Before the first key the
    first key's value holds, after the last key the last one's. Between two keys:
    ``linear`` interpolates, ``smooth`` eases out of one key and into the next
    (cosine; never overshoots), ``hold`` keeps the earlier key's value (a step).
    Pairs interpolate component-wise; text values (objectives) cross-fade: between
    keys ``A`` and ``B`` at fraction ``t`` the schedule gives ``[(A, 1-t), (B, t)]``
    (``hold``: ``[(A, 1)]``).

Errors name the character position and the expected form
(:class:`~dream_core.errors.ScheduleSyntaxError`).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import ScheduleSyntaxError

INTERPOLATIONS = ("linear", "smooth", "hold")
DEFAULT_INTERPOLATION = "linear"
#: What a schedule's values are: numbers, pairs of numbers, or text (objective shorthands).
KINDS = ("number", "pair", "text")

Value = Union[float, tuple[float, float], str]
#: What :meth:`Schedule.at` gives for a ``text`` schedule: (text, weight) terms whose weights sum to 1.
Blend = list[tuple[str, float]]

_FORM = "'frame:(value), frame:(value), ...', e.g. '0:(0.01), 48:(0.04)' or '0s:(0.01), 2.5s:(0.04)'"
_KEYED = re.compile(r"^\s*(?:(?:linear|smooth|hold)\s*:\s*)?[0-9.]+\s*s?\s*:\s*\(", re.IGNORECASE)
_KEY = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(s?)\s*:\s*\(")
_MODE = re.compile(r"\s*(linear|smooth|hold)\s*:", re.IGNORECASE)
_SPACE = re.compile(r"\s*")

#: Longest schedule text read (a key per frame of a 5-minute clip at 24 fps fits; values between keys are
#: interpolated, so real schedules are far shorter).
MAX_SCHEDULE_TEXT = 100_000


@dataclass(frozen=True)
class Keyframe:
    """One ``key:(value)`` entry: ``at`` frames (or seconds when ``seconds``), its value."""

    at: float
    seconds: bool
    value: Value


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; :meth:`at` evaluates it at a frame.

    Attributes:
        keys: the keyframes in the order written (at least one).
        interpolation: one of :data:`INTERPOLATIONS`.
        kind: one of :data:`KINDS`.
        text: the source string (for messages and the run's identity).
        name: the setting it drives (for messages).
    """

    keys: tuple[Keyframe, ...]
    interpolation: str = DEFAULT_INTERPOLATION
    kind: str = "number"
    text: str = ""
    name: str = "value"

    @property
    def is_constant(self) -> bool:
        """One key, or every key the same value: the same at every frame."""
        return len({k.value for k in self.keys}) == 1

    @property
    def uses_seconds(self) -> bool:
        return any(k.seconds for k in self.keys)

    def values(self) -> list[Value]:
        """Every key's value (e.g. to validate them all before a run)."""
        return [k.value for k in self.keys]

    def positions(self, fps: Optional[float] = None) -> list[float]:
        """Every key's frame position."""
        return [self._frame_of(k, fps) for k in self.keys]

    def _sorted(self, fps: Optional[float]) -> tuple[list[tuple[float, Value]], list[float]]:
        """``(position, value)`` of the keys in frame order and the positions alone, made once per ``fps``
        (:meth:`at` runs for every frame of a clip)."""
        cache = self.__dict__.setdefault("_by_fps", {})
        if fps not in cache:
            keys = sorted(((self._frame_of(k, fps), k.value) for k in self.keys), key=lambda kv: kv[0])
            cache[fps] = (keys, [x for x, _ in keys])
        return cache[fps]

    def check_keys(self, fps: Optional[float] = None) -> None:
        """Check that every key is shown: no two keys land on one frame (``6:(a)`` and ``0.25s:(b)`` at 24 fps,
        ``0:(a)`` and ``0s:(b)``), where the earlier one's value would be dropped without a word.

        A key's value is shown at the whole frames from its position up to the next key's; two keys with no
        whole frame between them (positions ``p`` and ``q`` with ``ceil(p) >= q``) leave the first one unseen.

        Raises:
            ScheduleSyntaxError: two such keys (``parameter`` is the schedule's name), or keys in seconds
                without ``fps``.
        """
        order = sorted(zip(self.positions(fps), self.keys), key=lambda pk: pk[0])
        for (p, a), (q, b) in zip(order, order[1:]):
            if math.ceil(p - 1e-9) >= q - 1e-9:
                at = f"frame {q:g}" if p == q else f"frames {p:g} and {q:g}"
                rate = f" at {fps:g} fps" if (a.seconds or b.seconds) and fps else ""
                raise ScheduleSyntaxError(
                    f"{self.name}: schedule {self.text!r} has two keys on one frame: {_key_text(a)} and "
                    f"{_key_text(b)} land on {at}{rate}, so the value of {_key_text(a)} would never be used. "
                    "Move one of the keys to another frame or drop it.", parameter=self.name,
                )

    def _frame_of(self, key: Keyframe, fps: Optional[float]) -> float:
        if not key.seconds:
            return key.at
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise ScheduleSyntaxError(
                f"Schedule {self.text!r} has keys in seconds ({key.at:g}s), which need the clip's frame rate; "
                "none is known here. Give the frame rate or write the keys as frame numbers.",
                parameter="fps",
            )
        return key.at * fps

    def at(self, frame: float, fps: Optional[float] = None) -> Union[float, tuple[float, float], Blend]:
        """The value at frame position ``frame`` (global index); ``fps`` resolves keys in seconds.

        Returns:
            A number (``number``), a pair (``pair``) or a blend ``[(text, weight), ...]`` (``text``).
        """
        keys, positions = self._sorted(fps)
        if frame <= positions[0]:
            return self._single(keys[0][1])
        if frame >= positions[-1]:
            return self._single(keys[-1][1])
        i = bisect.bisect_right(positions, frame)  # keys[i - 1] <= frame < keys[i]
        (x0, v0), (x1, v1) = keys[i - 1], keys[i]
        t = (frame - x0) / (x1 - x0)
        if self.interpolation == "hold":
            t = 0.0
        elif self.interpolation == "smooth":
            t = (1.0 - math.cos(math.pi * t)) / 2.0
        if self.kind == "text":
            if t <= 0.0 or v0 == v1:
                return [(str(v0), 1.0)]
            return [(str(v0), 1.0 - t), (str(v1), t)]
        if self.kind == "pair":
            return (v0[0] + (v1[0] - v0[0]) * t, v0[1] + (v1[1] - v0[1]) * t)  # type: ignore[index]
        return float(v0) + (float(v1) - float(v0)) * t  # type: ignore[arg-type]

    def _single(self, value: Value) -> Union[float, tuple[float, float], Blend]:
        return [(str(value), 1.0)] if self.kind == "text" else value


def is_keyed(text: str) -> bool:
    """Whether ``text`` is written as keyframes (``"0:(...)"``), as opposed to a plain value."""
    return bool(_KEYED.match(text))


def parse_schedule(text: Union[str, float, int], *, kind: str = "number",
                   interpolation: str = DEFAULT_INTERPOLATION, name: str = "value") -> Schedule:
    """Parse ``text`` (keyframes, or a plain value) into a :class:`Schedule`.

    Args:
        text: the schedule string; a plain number (or pair, or objective) is a constant.
        kind: what the values are (:data:`KINDS`).
        interpolation: used unless the string starts with its own (``"smooth: 0:(1), 30:(2)"``).
        name: the setting's name, for messages.

    Raises:
        ScheduleSyntaxError: malformed text (the message names the character position and the
            expected form), a repeated key, a value that is not a finite number (or pair).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if interpolation not in INTERPOLATIONS:
        raise ScheduleSyntaxError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.", parameter="interpolation"
        )
    if not isinstance(text, str):
        return Schedule((Keyframe(0.0, False, _value(str(text), kind, name, text, 0)),), interpolation, kind, str(text),
                        name)
    source = text
    if not text.strip():
        raise ScheduleSyntaxError(f"{name}: the schedule is empty; expected a value or {_FORM}.", parameter=name)
    if len(text) > MAX_SCHEDULE_TEXT:
        raise ScheduleSyntaxError(
            f"{name}: the schedule is {len(text)} characters long; at most {MAX_SCHEDULE_TEXT} are read. Give keys "
            "only where the value changes direction: values between keys are interpolated.", parameter=name,
        )
    mode = _MODE.match(text)
    pos = 0
    if mode and is_keyed(text):
        interpolation = mode.group(1).lower()
        pos = mode.end()
    if not is_keyed(text):
        return Schedule((Keyframe(0.0, False, _value(text.strip(), kind, name, source, 0)),), interpolation, kind, source,
                        name)
    keys: list[Keyframe] = []
    seen: set[tuple[float, bool]] = set()
    while True:
        m = _KEY.match(text, pos)
        if not m:
            raise _syntax(name, source, pos, "a key like '48:(' or '2.5s:('")
        at, seconds = float(m.group(1)), bool(m.group(2))
        if (at, seconds) in seen:
            raise _syntax(name, source, m.start(1), f"each key once; {m.group(1)}{m.group(2)} is given twice")
        seen.add((at, seconds))
        start = m.end()
        end = _closing_paren(text, start)
        if end < 0:
            raise _syntax(name, source, start - 1, "a ')' closing this value")
        keys.append(Keyframe(at, seconds, _value(text[start:end].strip(), kind, name, source, start)))
        pos = _SPACE.match(text, end + 1).end()  # type: ignore[union-attr]
        if pos == len(text):
            break
        if text[pos] != ",":
            raise _syntax(name, source, pos, "',' between keys")
        pos += 1
        if _SPACE.match(text, pos).end() == len(text):  # type: ignore[union-attr]  # a trailing comma
            break
    return Schedule(tuple(keys), interpolation, kind, source, name)


def _key_text(key: Keyframe) -> str:
    return f"{key.at:g}{'s' if key.seconds else ''}:({key.value})"


def _closing_paren(text: str, start: int) -> int:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _value(raw: str, kind: str, name: str, source: str, pos: int) -> Value:
    if kind == "text":
        if not raw:
            raise _syntax(name, source, pos, "a value inside the parentheses")
        return raw
    parts = [p.strip() for p in raw.strip("()").split(",")] if kind == "pair" else [raw]
    if kind == "pair" and len(parts) == 1:
        parts = parts * 2  # one number: the same on both axes
    expected = "two numbers 'x,y'" if kind == "pair" else "a number"
    if len(parts) != (2 if kind == "pair" else 1):
        raise _syntax(name, source, pos, f"{expected}, got {raw!r}")
    numbers = []
    for part in parts:
        try:
            number = float(part)
        except ValueError:
            raise _syntax(name, source, pos, f"{expected}, got {raw!r}") from None
        if not math.isfinite(number):
            raise _syntax(name, source, pos, f"a finite number, got {raw!r}")
        numbers.append(number)
    return (numbers[0], numbers[1]) if kind == "pair" else numbers[0]


def _syntax(name: str, source: str, pos: int, expected: str) -> ScheduleSyntaxError:
    return ScheduleSyntaxError(
        f"{name}: cannot read schedule {source!r} at character {pos + 1}: expected {expected}. Write it as {_FORM}.",
        parameter=name,
    )
