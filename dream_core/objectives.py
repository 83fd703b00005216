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

from .channel_select import (
    DEFAULT_CAPTURE,
    Rank,
    channel_means,
    check_channel_count,
    format_channels,
    parse_selection,
    rank_order,
)
from .errors import ChannelOutOfRangeError, InvalidParameterError, ObjectiveSyntaxError
from .loss_modes import DEFAULT_LOSS, check_loss_mode, loss_value

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
    """One layer's activations (optionally only some channels) turned into a value by a loss mode.

    With the default loss ``l2``: ``value[b] = mean_{c in channels, y, x} act[b, c, y, x]^2``, the
    classic DeepDream objective, whose gradient amplifies whatever the layer already sees (other
    modes: :mod:`dream_core.loss_modes`).

    Which channels (:mod:`dream_core.channel_select`): all (``channels`` and ``rank`` ``None``), the
    listed ``channels``, every channel but them (``exclude``), or a pick by mean activation
    (``rank``). A ranked term is ranked when a dream starts (:func:`dream_core.rank_binding.bind_ranks`
    turns it into a listed term); called directly on features, or with ``capture="step"``, it ranks
    on the features it is given.
    """

    layer: str
    channels: Optional[tuple[int, ...]] = None
    exclude: bool = False
    rank: Optional[Rank] = None
    loss: str = DEFAULT_LOSS
    # Index tensors per (device, channel count), made once: the objective runs every gradient step.
    _index: dict[tuple[torch.device, int], torch.Tensor] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", check_loss_mode(self.loss, self.layer))
        if self.rank is not None and self.channels is not None:
            raise InvalidParameterError(f"Layer '{self.layer}': give listed channels or a ranked pick, not both.",
                                        parameter="objective")
        if self.exclude and not self.channels:
            raise InvalidParameterError(f"Layer '{self.layer}': 'all but' needs the channels to leave out.",
                                        parameter="objective")

    def layers(self) -> list[str]:
        return [self.layer]

    def __call__(self, features: Features) -> torch.Tensor:
        act = features[self.layer]
        if self.rank is not None:
            act = act.index_select(1, rank_order(channel_means(act), self.rank, self.layer))
        elif self.channels is not None:
            act = self._select(act)
        return loss_value(act, self.loss)

    def _select(self, act: torch.Tensor) -> torch.Tensor:
        chans = self.channels
        assert chans is not None
        if not self.exclude and chans == tuple(range(chans[0], chans[0] + len(chans))):
            return act[:, chans[0]: chans[0] + len(chans)]  # a contiguous range: a view, no copy
        key = (act.device, act.shape[1])
        idx = self._index.get(key)
        if idx is None:
            kept = self._kept(act.shape[1]) if self.exclude else chans
            idx = self._index[key] = torch.tensor(kept, device=act.device)
        return act.index_select(1, idx)

    def _kept(self, count: int) -> tuple[int, ...]:
        """With ``exclude``: the layer's channels but the listed ones (checked: some are left, all exist)."""
        left_out = set(self.channels or ())
        bad = sorted(c for c in left_out if c >= count)
        if bad:
            raise ChannelOutOfRangeError(
                f"Layer '{self.layer}' has channels 0..{count - 1}; cannot leave out "
                f"{', '.join(map(str, bad[:5]))}. Use indices from 0 to {count - 1} "
                "(model.layer_channels() gives every layer's channel count).", parameter="objective")
        kept = tuple(c for c in range(count) if c not in left_out)
        if not kept:
            raise ChannelOutOfRangeError(
                f"'{self.to_string()}' leaves out all {count} channels of layer '{self.layer}'; leave out fewer.",
                parameter="objective")
        return kept

    def validate(self, model: "DreamModel") -> None:
        model.module_for(self.layer)
        if self.channels is None and self.rank is None:
            return
        count = model.channels(self.layer)
        if self.rank is not None:
            self.rank.check_count(count, self.layer)
            return
        if self.exclude:
            self._kept(count)
            return
        bad = [c for c in self.channels or () if c < 0 or c >= count]
        if bad:
            raise ChannelOutOfRangeError(
                f"Layer '{self.layer}' of model '{model.name}' has channels 0..{count - 1}; "
                f"got {', '.join(map(str, bad[:5]))}. Use indices from 0 to {count - 1} "
                "(model.layer_channels() gives every layer's channel count).",
                parameter="objective",
            )

    def to_string(self) -> str:
        text = self.layer
        if self.rank is not None:
            text += f":{self.rank.to_string()}"
        elif self.channels is not None:
            text += f":{'!' if self.exclude else ''}{format_channels(self.channels)}"
        return text if self.loss == DEFAULT_LOSS else f"{text}@{self.loss}"


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


def layer(name: str, weight: float = 1.0, *, loss: str = DEFAULT_LOSS) -> Objective:
    """Objective maximising all channels of layer ``name`` (``loss``: :mod:`dream_core.loss_modes`)."""
    obj: Objective = LayerObjective(name, loss=loss)
    return obj if weight == 1.0 else weight * obj


def channel(name: str, channels: Union[int, Sequence[int]], weight: float = 1.0, *,
            loss: str = DEFAULT_LOSS) -> Objective:
    """Objective maximising only ``channels`` (an index or a list) of layer ``name``."""
    chans = (channels,) if isinstance(channels, int) else tuple(int(c) for c in channels)
    obj: Objective = LayerObjective(name, chans, loss=loss)
    return obj if weight == 1.0 else weight * obj


def all_but(name: str, channels: Union[int, Sequence[int]], weight: float = 1.0, *,
            loss: str = DEFAULT_LOSS) -> Objective:
    """Objective maximising every channel of layer ``name`` except ``channels`` (``"name:![...]"``)."""
    chans = (channels,) if isinstance(channels, int) else tuple(int(c) for c in channels)
    obj: Objective = LayerObjective(name, chans, exclude=True, loss=loss)
    return obj if weight == 1.0 else weight * obj


def ranked(name: str, mode: str, count: int, weight: float = 1.0, *, capture: str = DEFAULT_CAPTURE,
           loss: str = DEFAULT_LOSS) -> Objective:
    """Objective maximising the ``count`` channels of layer ``name`` that the picture excites most
    (``mode="strong"``), least (``"weak"``) or around the median (``"avg"``), e.g. ``"name:strong8"``.

    ``capture`` says when the ranking is taken: ``"clip"`` (once per clip or image), ``"frame"`` or
    ``"step"`` (:mod:`dream_core.channel_select`).
    """
    obj: Objective = LayerObjective(name, rank=Rank(mode, count, capture), loss=loss)
    return obj if weight == 1.0 else weight * obj


_TERM = re.compile(
    r"^\s*(?:(?P<weight>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?"
    r"(?P<layer>[A-Za-z_][\w./-]*?)\s*(?::(?P<chans>[^@]*))?(?:@\s*(?P<loss>\S*))?\s*$"
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


def check_objective_size(text: str) -> None:
    """Refuse, in microseconds, an objective text (or a schedule of them) too large to be worth parsing:
    over :data:`MAX_OBJECTIVE_TEXT` characters, or naming too many channels in all
    (:func:`~dream_core.channel_select.check_channel_count`).

    Raises:
        ObjectiveSyntaxError: too long; ChannelOutOfRangeError: too many channels (``parameter="objective"``).
    """
    if len(text) > MAX_OBJECTIVE_TEXT:
        raise ObjectiveSyntaxError(
            f"The objective text is {len(text)} characters long; at most {MAX_OBJECTIVE_TEXT} are read. "
            "Use channel ranges (10-20) instead of listing every index.", parameter="objective",
        )
    check_channel_count(text)


def parse_objective(text: str, model: Optional["DreamModel"] = None) -> Objective:
    """Parse the objective shorthand.

    Grammar: terms separated by ``,`` or ``+``; each term is
    ``[weight*]layer[:channels][@loss]`` where channels is ``12``, ``10-20``,
    ``[3,7,10-20]``, all but some (``!12``, ``![3,7]``) or a pick by rank
    (``strong8``, ``avg16``, ``weak4``, optionally ``/frame`` or ``/step``:
    :mod:`dream_core.channel_select`), and loss is a loss mode
    (:mod:`dream_core.loss_modes`; default ``l2``). Layer names may contain
    ``/`` and ``.`` (Caffe and torchvision names, e.g. ``inception_4c/output``).

    Examples:
        ``"block10_dw"``, ``"block8:12, block11"``, ``"inception4c + 0.5*inception4d:[1,5-9]"``,
        ``"block10_dw:strong8@norm, 0.5*block8_dw:![3,7]"``.

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
                "'0.5*layer:[3,7]', 'layer:![3,7]', 'layer:strong8', 'layer@norm' separated by ',' or '+'.",
                parameter="objective",
            )
        name = m.group("layer")
        if model is not None:
            model.module_for(name)  # UnknownLayerError with close matches and the model's layers
        chans, exclude, rank = parse_selection(m.group("chans"), term) if m.group("chans") is not None else (
            None, False, None)
        loss = DEFAULT_LOSS if m.group("loss") is None else check_loss_mode(m.group("loss"), term)
        obj: Objective = LayerObjective(name, chans, exclude, rank, loss)
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
