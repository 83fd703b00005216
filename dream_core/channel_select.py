"""Which channels of a layer an objective term reads: listed ones, all but listed ones, or a pick by rank.

The text after ``layer:`` in the objective shorthand:

=====================  =================================================================================
``12``, ``10-20``,     the listed channels
``[3,7,10-20]``
``!12``, ``!10-20``,   every channel of the layer except the listed ones
``![3,7]``
``strong8``            the 8 channels with the highest mean activation on the picture
``avg16``              the 16 channels around the median (the middle of the ranking)
``weak4``              the 4 channels with the lowest mean activation
``strong8/frame``      when the ranking is taken: ``/clip`` (the default: once, on the first frame of a
``strong8/step``       clip, or on the image), ``/frame`` (again on every frame's image) or ``/step``
                       (again at every gradient step, on the image being dreamed)
=====================  =================================================================================

Ranking convention: a channel's strength is its mean activation over the batch and every position
(``act.mean(dim=(0, 2, 3))``, float32); a batch is ranked as a whole. ``strong`` takes the
highest means in descending order, ``weak`` the lowest in ascending order, ``avg`` the ``n``
entries starting at ``(C - n) // 2`` of the ascending order. Equal means keep the lower channel
index first (stable sort). The ``ignore`` mode of the original tool (neural-dream's
``-channel_mode ignore``) is written ``![...]`` here; its ``-channel_capture once|iter`` are
``/clip`` and ``/step`` (both accepted under the original names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .errors import ChannelOutOfRangeError, InvalidParameterError, ObjectiveSyntaxError, did_you_mean

#: Largest channel index (and rank count) written in an objective; the widest registered layer has 2048 channels.
MAX_CHANNEL = 65_535

RANK_MODES = ("strong", "avg", "weak")
#: When a ranking is taken: once per clip (or image), on every frame, at every gradient step.
CAPTURES = ("clip", "frame", "step")
DEFAULT_CAPTURE = "clip"
#: Other names accepted for :data:`CAPTURES` (the original tool's ``once``/``iter``).
CAPTURE_ALIASES = {"once": "clip", "image": "frame", "iter": "step"}

#: The accepted forms, for error messages.
SELECTION_FORMS = ("one index (12), a range (10-20), a list ([3,7,10-20]), all but some (!12, ![3,7]) or a pick "
                   "by rank (strong8, avg16, weak4; add /frame or /step to re-rank on every frame or step)")


@dataclass(frozen=True)
class Rank:
    """A pick of ``count`` channels by their mean activation (see the module's ranking convention).

    Attributes:
        mode: ``strong``, ``avg`` or ``weak``.
        count: how many channels, ``1 ..`` the layer's channel count.
        capture: when the ranking is taken: ``clip``, ``frame`` or ``step`` (:data:`CAPTURES`).

    Raises:
        InvalidParameterError: an unknown mode or capture, or a count below 1 (``parameter="objective"``).
    """

    mode: str
    count: int
    capture: str = DEFAULT_CAPTURE

    def __post_init__(self) -> None:
        mode = str(self.mode).lower()
        if mode not in RANK_MODES:
            raise InvalidParameterError(
                f"Unknown channel ranking {self.mode!r}.{did_you_mean(mode, RANK_MODES)} Use strong, avg or weak.",
                parameter="objective")
        capture = str(self.capture).lower()
        capture = CAPTURE_ALIASES.get(capture, capture)
        if capture not in CAPTURES:
            raise InvalidParameterError(
                f"Unknown ranking time {self.capture!r}.{did_you_mean(capture, CAPTURES)} Use clip (once per clip "
                "or image), frame (every frame) or step (every gradient step).", parameter="objective")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_CHANNEL:
            raise InvalidParameterError(
                f"A {mode} pick needs a whole number of channels from 1 to the layer's channel count; got "
                f"{self.count!r}.", parameter="objective")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "capture", capture)

    def to_string(self) -> str:
        """``strong8``, ``weak4/step``: the shorthand of this pick."""
        when = "" if self.capture == DEFAULT_CAPTURE else f"/{self.capture}"
        return f"{self.mode}{self.count}{when}"

    def check_count(self, channels: int, layer: str) -> None:
        """Raise :class:`ChannelOutOfRangeError` when the layer has fewer than ``count`` channels."""
        if self.count > channels:
            raise ChannelOutOfRangeError(
                f"Layer '{layer}' has {channels} channels; '{self.to_string()}' asks for {self.count}. Pick from 1 "
                f"to {channels} channels (model.layer_channels() gives every layer's count).", parameter="objective")


def channel_means(act: torch.Tensor) -> torch.Tensor:
    """Mean activation of each channel of ``act`` ``[B,C,h,w]`` over the batch and positions: ``[C]`` float32."""
    return act.detach().float().mean(dim=(0, 2, 3))


def rank_order(means: torch.Tensor, rank: Rank, layer: str = "layer") -> torch.Tensor:
    """The channels ``rank`` picks given each channel's mean ``[C]``: ``[count]`` int64 on ``means``' device.

    ``strong``: highest first; ``weak``: lowest first; ``avg``: ascending from ``(C - count) // 2``.
    Equal means keep the lower index first.

    Raises:
        ChannelOutOfRangeError: ``count`` exceeds ``C``.
    """
    c = means.numel()
    rank.check_count(c, layer)
    order = torch.sort(means, descending=rank.mode == "strong", stable=True).indices
    start = (c - rank.count) // 2 if rank.mode == "avg" else 0
    return order[start:start + rank.count]


def parse_channels(spec: str, term: str) -> tuple[int, ...]:
    """``12``, ``10-20`` or ``[3,7,10-20]`` as a tuple of distinct indices in the order written.

    Raises:
        ObjectiveSyntaxError: unreadable text; ChannelOutOfRangeError: an index above :data:`MAX_CHANNEL`
        (refused before any range is built).
    """
    body = spec.strip()
    body = body[1:-1] if body.startswith("[") and body.endswith("]") else body
    out: list[int] = []
    for piece in (p.strip() for p in body.split(",")):
        if not piece:
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", piece)
        if not m:
            raise ObjectiveSyntaxError(f"Cannot read channels '{piece}' in '{term}'. Write {SELECTION_FORMS}.",
                                       parameter="objective")
        if len(m.group(1)) > 6 or len(m.group(2) or "") > 6:  # before int(): no huge number is even converted
            raise _beyond(piece, term)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ObjectiveSyntaxError(f"Channel range '{piece}' in '{term}' goes backwards; write {hi}-{lo}.",
                                       parameter="objective")
        if hi > MAX_CHANNEL:  # checked before the range is made: '0-99999999' would take gigabytes
            raise _beyond(piece, term)
        out.extend(range(lo, hi + 1))
    if not out:
        raise ObjectiveSyntaxError(f"No channels given after ':' in '{term}'. Write {SELECTION_FORMS}.",
                                   parameter="objective")
    return tuple(dict.fromkeys(out))


def _beyond(piece: str, term: str) -> ChannelOutOfRangeError:
    return ChannelOutOfRangeError(
        f"Channel '{piece}' in '{term}' is beyond any layer's channels (indices go up to {MAX_CHANNEL} at "
        "most; model.layer_channels() gives every layer's count).", parameter="objective",
    )


_RANK_TEXT = re.compile(r"([a-z]+)\s*(\d*)\s*(?:/\s*([a-z]*))?", re.IGNORECASE)


def parse_selection(spec: str, term: str) -> tuple[Optional[tuple[int, ...]], bool, Optional[Rank]]:
    """The text after ``layer:`` as ``(channels, exclude, rank)`` (see the module's table).

    Raises:
        ObjectiveSyntaxError: unreadable text, naming the accepted forms.
        ChannelOutOfRangeError: an index or count above :data:`MAX_CHANNEL`.
    """
    text = spec.strip()
    if text.startswith("!"):
        return parse_channels(text[1:], term), True, None
    m = _RANK_TEXT.fullmatch(text)
    if m is None:
        return parse_channels(text, term), False, None
    mode, count, capture = m.group(1).lower(), m.group(2), m.group(3)
    if mode not in RANK_MODES:
        raise ObjectiveSyntaxError(
            f"Cannot read channels '{text}' in '{term}'.{did_you_mean(mode, RANK_MODES)} Write {SELECTION_FORMS}.",
            parameter="objective")
    if count and (len(count) > 6 or int(count) > MAX_CHANNEL):  # before int() of a huge number
        raise ChannelOutOfRangeError(
            f"'{text}' in '{term}' asks for more channels than any layer has (at most {MAX_CHANNEL}; "
            "model.layer_channels() gives every layer's count).", parameter="objective")
    if not count or int(count) < 1:
        raise ObjectiveSyntaxError(
            f"'{text}' in '{term}' needs a channel count of at least 1 after '{mode}', e.g. '{mode}8'.",
            parameter="objective")
    if capture is not None:
        when = CAPTURE_ALIASES.get(capture.lower(), capture.lower())
        if when not in CAPTURES:
            raise ObjectiveSyntaxError(
                f"Cannot read when to rank, '/{capture}', in '{term}'.{did_you_mean(when, CAPTURES)} Write "
                f"/clip (once per clip or image, the default), /frame (every frame) or /step (every gradient step).",
                parameter="objective")
        capture = when
    return None, False, Rank(mode, int(count), capture or DEFAULT_CAPTURE)


def format_channels(channels: Sequence[int]) -> str:
    """``channels`` in the shortest shorthand :func:`parse_channels` reads back (``12``, ``10-13``, ``[1,3-5,9]``)."""
    if len(channels) == 1:
        return str(channels[0])
    parts: list[str] = []
    start = prev = channels[0]
    for c in list(channels[1:]) + [None]:  # type: ignore[list-item]
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    if len(parts) == 1 and "-" in parts[0]:
        return parts[0]
    return "[" + ",".join(parts) + "]"


#: Most channel indices one objective (or a schedule of objectives) may name in all, ranges counted in
#: full: every channel of the widest registered layer 32 times over. Checked before any channel set is
#: made: 2,490 repeats of '0-65535' (20 KB) took 7 GB and 20 s before their refusal.
MAX_OBJECTIVE_CHANNELS = 65_536
#: A channel range ``lo-hi`` (not inside a layer name such as ``conv1-2``).
_RANGE = re.compile(r"(?<![\w.])(\d+)\s*-\s*(\d+)")


def check_channel_count(text: str) -> None:
    """Refuse, in microseconds, an objective text (or a schedule of them) naming over
    :data:`MAX_OBJECTIVE_CHANNELS` channels in all (every range counted in full, over every term).

    Raises:
        ChannelOutOfRangeError: too many channels (``parameter="objective"``).
    """
    named = 0
    for m in _RANGE.finditer(text):
        lo, hi = (int(g[:7]) for g in m.groups())  # 7 digits: beyond MAX_CHANNEL already, never huge
        if hi <= MAX_CHANNEL:  # beyond it the parser refuses the range itself, before building it
            named += max(0, hi - lo + 1)
        if named > MAX_OBJECTIVE_CHANNELS:
            raise ChannelOutOfRangeError(
                f"The objective names over {MAX_OBJECTIVE_CHANNELS} channels in all (its ranges, e.g. "
                f"'{m.group(0)}', add up); the widest layer has a few thousand. Name each layer once, with the "
                "channels it needs, or leave the channels out to use them all.", parameter="objective",
            )
