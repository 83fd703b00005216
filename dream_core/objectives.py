"""What to maximise: composable objectives and their string shorthand.

Objectives are small objects; ``+`` adds them and a number scales them::

    obj = layer("block10_dw") + 0.5 * channel("block12_dw", [3, 7, 10, 11])

A UI holds the same thing as a string (see :func:`parse_objective`)::

    "block10_dw, 0.5*block12_dw:[3,7,10-11]"

Calling an objective on a dict of features (``{layer: [B,C,h,w]}``) returns one
value per batch item, ``[B]``; dreaming maximises its sum.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Union

import torch

from .errors import ChannelOutOfRangeError, InvalidParameterError, ObjectiveSyntaxError

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import DreamModel

Features = dict[str, torch.Tensor]


class Objective:
    """Base class: a differentiable score of features, one value per batch item."""

    def layers(self) -> list[str]:
        """Layer names this objective reads, in first-use order."""
        raise NotImplementedError

    def __call__(self, features: Features) -> torch.Tensor:
        raise NotImplementedError

    def validate(self, model: "DreamModel") -> None:
        """Check layers and channels against ``model``; raise a typed error naming the fix."""
        for name in self.layers():
            model.module_for(name)

    def to_string(self) -> str:
        """The shorthand string that :func:`parse_objective` turns back into this objective."""
        raise NotImplementedError

    def __add__(self, other: "Objective") -> "Objective":
        if not isinstance(other, Objective):
            return NotImplemented
        return SumObjective(_terms(self) + _terms(other))

    def __mul__(self, factor: float) -> "Objective":
        if not isinstance(factor, (int, float)):
            return NotImplemented
        return ScaledObjective(self, float(factor))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return ScaledObjective(self, -1.0)

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.to_string()!r})"


def _terms(obj: Objective) -> list[Objective]:
    return list(obj.terms) if isinstance(obj, SumObjective) else [obj]


@dataclass(frozen=True, repr=False)
class LayerObjective(Objective):
    """Mean squared activation of ``layer`` (optionally only ``channels``).

    ``value[b] = mean_{c in channels, y, x} act[b, c, y, x]^2`` — the classic
    DeepDream "L2" objective, whose gradient amplifies whatever the layer
    already sees.
    """

    layer: str
    channels: Optional[tuple[int, ...]] = None
    # Index tensors per device, made once: the objective runs every gradient step.
    _index: dict[torch.device, torch.Tensor] = field(default_factory=dict, init=False, compare=False, repr=False)

    def layers(self) -> list[str]:
        return [self.layer]

    def __call__(self, features: Features) -> torch.Tensor:
        act = features[self.layer]
        chans = self.channels
        if chans is not None:
            if chans == tuple(range(chans[0], chans[0] + len(chans))):
                act = act[:, chans[0]: chans[0] + len(chans)]  # a contiguous range: a view, no copy
            else:
                idx = self._index.get(act.device)
                if idx is None:
                    idx = self._index[act.device] = torch.tensor(chans, device=act.device)
                act = act.index_select(1, idx)
        return act.float().pow(2).mean(dim=(1, 2, 3))

    def validate(self, model: "DreamModel") -> None:
        model.module_for(self.layer)
        if self.channels is None:
            return
        count = model.channels(self.layer)
        bad = [c for c in self.channels if c < 0 or c >= count]
        if bad:
            raise ChannelOutOfRangeError(
                f"Layer '{self.layer}' of model '{model.name}' has channels 0..{count - 1}; "
                f"got {', '.join(map(str, bad[:5]))}. Use indices from 0 to {count - 1} "
                "(model.layer_channels() gives every layer's channel count).",
                parameter="objective",
            )

    def to_string(self) -> str:
        if self.channels is None:
            return self.layer
        return f"{self.layer}:{_format_channels(self.channels)}"


#: Largest objective weight (in size). The step is normalised, so only the ratio between terms
#: matters; beyond this a term's value or gradient can overflow float32 (a black or NaN dream).
MAX_WEIGHT = 1e6


def check_weight(factor: float, what: str) -> float:
    """``factor`` as a float, checked to be a finite, non-zero objective weight of at most :data:`MAX_WEIGHT`.

    Raises:
        InvalidParameterError: NaN, infinite, zero or too large (``parameter="objective"``).
    """
    value = float(factor)
    if not math.isfinite(value) or not 0 < abs(value) <= MAX_WEIGHT:
        why = ("a weight of 0 removes the term: the dream would return its input unchanged; leave the term out"
               if value == 0 else f"use a finite weight between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g} (e.g. 0.5 or -1)")
        raise InvalidParameterError(f"The weight of '{what}' is {factor!r}; {why}.", parameter="objective")
    return value


@dataclass(frozen=True, repr=False)
class ScaledObjective(Objective):
    """``factor * inner``; ``factor`` is a finite, non-zero weight (:func:`check_weight`)."""

    inner: Objective
    factor: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", check_weight(self.factor, self.inner.to_string()))

    def layers(self) -> list[str]:
        return self.inner.layers()

    def __call__(self, features: Features) -> torch.Tensor:
        return self.factor * self.inner(features)

    def validate(self, model: "DreamModel") -> None:
        self.inner.validate(model)

    def to_string(self) -> str:
        return f"{self.factor:g}*{self.inner.to_string()}"


@dataclass(frozen=True, repr=False)
class SumObjective(Objective):
    """Sum of several objectives."""

    terms: tuple[Objective, ...]

    def __init__(self, terms: Iterable[Objective]) -> None:
        object.__setattr__(self, "terms", tuple(terms))

    def layers(self) -> list[str]:
        return list(dict.fromkeys(name for t in self.terms for name in t.layers()))

    def __call__(self, features: Features) -> torch.Tensor:
        total = self.terms[0](features)
        for t in self.terms[1:]:
            total = total + t(features)
        return total

    def validate(self, model: "DreamModel") -> None:
        for t in self.terms:
            t.validate(model)

    def to_string(self) -> str:
        return ", ".join(t.to_string() for t in self.terms)


class GuideObjective(Objective):
    """Make the image's features resemble a guide image's (Google's guided DeepDream).

    For every spatial position of the dreamed features at ``layer``, take the
    guide feature vector with the largest dot product and maximise that dot
    product: ``value[b] = mean_i max_j <x_i, g_j>``.

    Args:
        layer: layer to compare at.
        guide_features: ``[C, N]`` guide features (``N`` positions, flattened).
    """

    def __init__(self, layer: str, guide_features: torch.Tensor) -> None:
        self.layer = layer
        self.guide = guide_features

    def layers(self) -> list[str]:
        return [self.layer]

    def __call__(self, features: Features) -> torch.Tensor:
        act = features[self.layer].float()
        b, c, h, w = act.shape
        x = act.reshape(b, c, h * w).transpose(1, 2)  # [B, hw, C]
        g = self.guide.to(device=act.device, dtype=act.dtype)  # [C, N]
        sims = x @ g  # [B, hw, N]
        best = sims.argmax(dim=2)  # [B, hw]
        chosen = g.t()[best]  # [B, hw, C]
        return (x * chosen).sum(dim=2).mean(dim=1)

    def to_string(self) -> str:
        return f"guide({self.layer})"


def layer(name: str, weight: float = 1.0) -> Objective:
    """Objective maximising all channels of layer ``name``."""
    obj: Objective = LayerObjective(name)
    return obj if weight == 1.0 else weight * obj


def channel(name: str, channels: Union[int, Sequence[int]], weight: float = 1.0) -> Objective:
    """Objective maximising only ``channels`` (an index or a list) of layer ``name``."""
    chans = (channels,) if isinstance(channels, int) else tuple(int(c) for c in channels)
    obj: Objective = LayerObjective(name, chans)
    return obj if weight == 1.0 else weight * obj


def _format_channels(channels: Sequence[int]) -> str:
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


_TERM = re.compile(
    r"^\s*(?:(?P<weight>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?"
    r"(?P<layer>[A-Za-z_][\w./-]*?)\s*(?::\s*(?P<chans>\[[^\]]*\]|[\d\s-]+))?\s*$"
)


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch in ",+;\n" and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in (s.strip() for s in terms) if t]


#: Longest objective text parsed (a list of every channel of the widest layer fits many times over).
MAX_OBJECTIVE_TEXT = 20_000
#: Largest channel index written in an objective; the widest registered layer has 2048 channels.
MAX_CHANNEL = 65_535
#: Most channel indices one objective (or a schedule of objectives) may name in all, ranges counted in
#: full: every channel of the widest registered layer 32 times over. Checked before any channel set is
#: made: 2,490 repeats of '0-65535' (20 KB) took 7 GB and 20 s before their refusal.
MAX_OBJECTIVE_CHANNELS = 65_536
#: A channel range ``lo-hi`` (not inside a layer name such as ``conv1-2``).
_RANGE = re.compile(r"(?<![\w.])(\d+)\s*-\s*(\d+)")


def check_objective_size(text: str) -> None:
    """Refuse, in microseconds, an objective text (or a schedule of them) too large to be worth parsing:
    over :data:`MAX_OBJECTIVE_TEXT` characters, or naming over :data:`MAX_OBJECTIVE_CHANNELS` channels in
    all (every range counted in full, over every term).

    Raises:
        ObjectiveSyntaxError: too long, or too many channels (``parameter="objective"``).
    """
    if len(text) > MAX_OBJECTIVE_TEXT:
        raise ObjectiveSyntaxError(
            f"The objective text is {len(text)} characters long; at most {MAX_OBJECTIVE_TEXT} are read. "
            "Use channel ranges (10-20) instead of listing every index.", parameter="objective",
        )
    named = 0
    for m in _RANGE.finditer(text):
        lo, hi = (int(g[:7]) for g in m.groups())  # 7 digits: beyond MAX_CHANNEL already, never huge
        if hi <= MAX_CHANNEL:  # beyond it the parser refuses the range itself, before building it
            named += max(0, hi - lo + 1)
        if named > MAX_OBJECTIVE_CHANNELS:
            raise ChannelOutOfRangeError(
                f"The objective names over {MAX_OBJECTIVE_CHANNELS} channels in all (its ranges, e.g. '{m.group(0)}', "
                f"add up); the widest layer has a few thousand. Name each layer once, with the channels it "
                "needs, or leave the channels out to use them all.", parameter="objective",
            )


def _parse_channels(spec: str, term: str) -> tuple[int, ...]:
    body = spec.strip().strip("[]")
    out: list[int] = []
    for piece in (p.strip() for p in body.split(",")):
        if not piece:
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", piece)
        if not m:
            raise ObjectiveSyntaxError(
                f"Cannot read channels '{piece}' in '{term}'. Write one index (12), a range (10-20) "
                "or a list ([3,7,10-20]).", parameter="objective",
            )
        if len(m.group(1)) > 6 or len(m.group(2) or "") > 6:  # before int(): no huge number is even converted
            raise ChannelOutOfRangeError(
                f"Channel '{piece}' in '{term}' is beyond any layer's channels (indices go up to {MAX_CHANNEL} at "
                "most; model.layer_channels() gives every layer's count).", parameter="objective",
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ObjectiveSyntaxError(f"Channel range '{piece}' in '{term}' goes backwards; write {hi}-{lo}.",
                                       parameter="objective")
        if hi > MAX_CHANNEL:  # checked before the range is made: '0-99999999' would take gigabytes
            raise ChannelOutOfRangeError(
                f"Channel '{piece}' in '{term}' is beyond any layer's channels (indices go up to {MAX_CHANNEL} at "
                "most; model.layer_channels() gives every layer's count).", parameter="objective",
            )
        out.extend(range(lo, hi + 1))
    if not out:
        raise ObjectiveSyntaxError(f"No channels given after ':' in '{term}'.", parameter="objective")
    return tuple(dict.fromkeys(out))


def parse_objective(text: str, model: Optional["DreamModel"] = None) -> Objective:
    """Parse the objective shorthand.

    Grammar: terms separated by ``,`` or ``+``; each term is
    ``[weight*]layer[:channels]`` where channels is ``12``, ``10-20`` or
    ``[3,7,10-20]``. Layer names may contain ``/`` and ``.`` (Caffe and
    torchvision names, e.g. ``inception_4c/output``).

    Examples:
        ``"block10_dw"``, ``"block8:12, block11"``, ``"inception4c + 0.5*inception4d:[1,5-9]"``.

    Args:
        text: the shorthand.
        model: when given, layers and channels are validated against it.

    Raises:
        ObjectiveSyntaxError: unreadable text.
        UnknownLayerError, ChannelOutOfRangeError: with ``model``, names/indices that do not exist.
    """
    if not isinstance(text, str) or not text.strip():
        raise ObjectiveSyntaxError(
            "The layer selection is empty. Give at least one layer, e.g. 'block10_dw'.", parameter="objective"
        )
    check_objective_size(text)
    terms: list[Objective] = []
    for term in _split_terms(text):
        m = _TERM.match(term)
        if not m:
            raise ObjectiveSyntaxError(
                f"Cannot read '{term}'. Write terms like 'layer', 'layer:12', 'layer:10-20', "
                "'0.5*layer:[3,7]' separated by ',' or '+'.", parameter="objective",
            )
        name = m.group("layer")
        if model is not None:
            model.module_for(name)  # UnknownLayerError with close matches and the model's layers
        obj: Objective = LayerObjective(name, _parse_channels(m.group("chans"), term) if m.group("chans") else None)
        if m.group("weight") is not None:
            w = check_weight(float(m.group("weight")), term)  # '1e400*layer' reads as inf
            if w != 1.0:
                obj = w * obj
        terms.append(obj)
    result = terms[0] if len(terms) == 1 else SumObjective(terms)
    if model is not None:
        result.validate(model)
    return result


def resolve_objective(model: "DreamModel", objective: "Objective | str | None") -> Objective:
    """What to maximise in ``model``: an :class:`Objective` checked against it.

    Args:
        model: the loaded model.
        objective: an :class:`Objective`, a shorthand string (:func:`parse_objective`), or
            ``None`` for the model's own default objective.

    Raises:
        ObjectiveSyntaxError, UnknownLayerError, ChannelOutOfRangeError: as :func:`parse_objective`.
        InvalidParameterError: ``objective`` is something else.
    """
    if objective is None:
        objective = model.spec.default_objective
    if isinstance(objective, str):
        return parse_objective(objective, model)
    if not isinstance(objective, Objective):
        raise InvalidParameterError(
            f"objective must be an Objective, a shorthand string such as 'block10_dw' or None; "
            f"got {type(objective).__name__}.", parameter="objective",
        )
    objective.validate(model)
    return objective
