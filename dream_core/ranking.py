"""Ranking a layer's channels by what a picture excites, and when ranked picks are ranked.

A ranked pick (``block10_dw:strong8``, :mod:`dream_core.channel_select`) is turned into listed
channels when a dream starts (:func:`bind_ranks`, called by :func:`~dream_core.dream.dream_image`):

* ``/clip`` (the default): ranked once and kept in a :class:`ChannelRanks` for as long as it is
  used. A :class:`~dream_core.clip.frame_dreamer.FrameDreamer` holds one for its clip, so every
  frame of a clip dreams the same channels; a single image (no memory given) is ranked on itself.
* ``/frame``: ranked again on the image each dream starts from (a video: every frame; in ``stable``
  and ``seed`` mode that image is the frame with the carried dream).
* ``/step``: left ranked; the term ranks on the features of every gradient step (with tiles: of
  every tile).

Which image a clip is ranked on: before any frame is dreamed, the front ends call
:func:`rank_clip` with every objective of the run's plan (a schedule's keys included) and the raw
first frame of the run's range at the dream size (the ``video`` command and its Ray workers:
frame ``--start`` of the file; the DeepDream Video node: ``start_frame``; ``animate`` and the Zoom
Animation node: the start image). A resumed run and every segment of a distributed run read that
same frame, so they rank the same channels as an uninterrupted run on the same kind of device (a
mean that differs by float round-off between devices could swap two nearly equal channels); the
run's identity needs nothing more than the objective text it already holds. Without that call
(the library's :func:`~dream_core.clip.loop.dream_frames`), a pick is ranked on the first frame
dreamed with it.

Ranking reads the activations of a no-gradient forward of the image shrunk to at most
:data:`RANK_MAX_SIDE` pixels on its longer side (bounded memory for large pictures).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

import torch

from .channel_select import channel_means, rank_order
from .features import FeatureHooks, grad_enabled_outside_inference
from .image_ops import fit_max_side, to_rgb
from .objectives import LayerObjective, Objective, ScaledObjective, SumObjective

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import DreamModel

log = logging.getLogger(__name__)

#: Pictures are ranked at most this many pixels on their longer side (larger ones are shrunk first).
RANK_MAX_SIDE = 1024

#: A ranked pick's identity in a clip's memory: ``(layer, mode, count)``.
PickKey = tuple[str, str, int]


def ranked_terms(objective: Objective, captures: Iterable[str] = ("clip", "frame", "step")) -> list[LayerObjective]:
    """The ranked terms of ``objective`` whose ranking time is one of ``captures``, in order."""
    wanted = set(captures)
    return [t for t in _layer_terms(objective) if t.rank is not None and t.rank.capture in wanted]


def _layer_terms(objective: Objective) -> Iterator[LayerObjective]:
    if isinstance(objective, LayerObjective):
        yield objective
    elif isinstance(objective, ScaledObjective):
        yield from _layer_terms(objective.inner)
    elif isinstance(objective, SumObjective):
        for term in objective.terms:
            yield from _layer_terms(term)


def layer_means(model: "DreamModel", image: torch.Tensor, layers: Iterable[str], *,
                optimize: bool = True) -> dict[str, torch.Tensor]:
    """Each channel's mean activation at ``layers`` for ``image`` RGB ``[B,3,H,W]`` in ``0..1``.

    The image is shrunk to :data:`RANK_MAX_SIDE` first; the forward runs without gradients on the
    model's device, on its execution copy as the dream does (``optimize=False``: on ``model.net``,
    which spares a one-off forward the building and checking of that copy; the means agree up to
    float round-off).

    Returns:
        ``{layer: [C] float32}`` on the model's device (means over the batch and positions).
    """
    names = list(dict.fromkeys(layers))
    x = fit_max_side(to_rgb(image).to(device=model.device, dtype=model.dtype), RANK_MAX_SIDE)
    with grad_enabled_outside_inference(), torch.no_grad(), FeatureHooks(model, names, optimize=optimize) as hooks:
        feats = hooks.run(x.clone())
        return {name: channel_means(feats[name]) for name in names}


def strongest_channels(model: "DreamModel", image: torch.Tensor, top: int = 8,
                       layers: Optional[Iterable[str]] = None) -> dict[str, list[tuple[int, float]]]:
    """The ``top`` channels of each layer that ``image`` excites most, with their mean activations.

    For listings: the forward runs on ``model.net`` (:func:`layer_means` with ``optimize=False``).

    Args:
        image: RGB ``[B,3,H,W]`` in ``0..1`` (shrunk as :func:`layer_means` does).
        top: how many per layer (fewer where a layer has fewer channels).
        layers: which layers (default: all of the model's, shallow to deep).

    Returns:
        ``{layer: [(channel, mean), ...]}``, strongest first (equal means: lower index first).
    """
    names = list(layers) if layers is not None else list(model.layer_names)
    means = layer_means(model, image, names, optimize=False)
    out: dict[str, list[tuple[int, float]]] = {}
    for name in names:
        values = means[name].cpu()
        order = torch.sort(values, descending=True, stable=True).indices[:top].tolist()
        out[name] = [(c, float(values[c])) for c in order]
    return out


def _key(term: LayerObjective) -> PickKey:
    assert term.rank is not None
    return term.layer, term.rank.mode, term.rank.count


class ChannelRanks:
    """The channels a clip's ranked picks were given: taken once, then the same on every frame.

    Keyed by ``(layer, mode, count)``: two objectives of a clip (a schedule's keys) asking for
    ``block10_dw:strong8`` share one ranking. Not thread-safe: one per clip.
    """

    def __init__(self) -> None:
        self._picks: dict[PickKey, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._picks)

    def get(self, term: LayerObjective) -> Optional[tuple[int, ...]]:
        """The channels kept for ranked ``term``, or ``None`` when it has not been ranked yet."""
        return self._picks.get(_key(term))

    def items(self) -> list[tuple[str, tuple[int, ...]]]:
        """``("layer:strong8", channels)`` for every kept pick (for logs and tests)."""
        return [(f"{layer}:{mode}{count}", chans) for (layer, mode, count), chans in self._picks.items()]

    def take(self, model: "DreamModel", objectives: Iterable[Objective], image: torch.Tensor) -> None:
        """Rank, on ``image``, every ``/clip`` pick of ``objectives`` that has no channels yet.

        Args:
            image: RGB ``[B,3,H,W]`` in ``0..1``: a clip's first frame at the dream size.
        """
        terms = [t for o in objectives for t in ranked_terms(o, ("clip",)) if self.get(t) is None]
        if terms:
            means = layer_means(model, image, [t.layer for t in terms])
            for t in terms:
                self._keep(t, means[t.layer])

    def _keep(self, term: LayerObjective, means: torch.Tensor) -> tuple[int, ...]:
        chans = tuple(rank_order(means, term.rank, term.layer).tolist())  # type: ignore[arg-type]
        self._picks[_key(term)] = chans
        log.info("Ranked channels of %s: %s", term.to_string(), list(chans))
        return chans


def rank_clip(ranks: ChannelRanks, model: "DreamModel", objectives: Iterable[Objective],
              first_frame: Callable[[], torch.Tensor]) -> None:
    """Before a clip is dreamed: rank its ``/clip`` picks on its first frame (see the module's notes).

    Args:
        ranks: the clip's memory (:attr:`FrameDreamer.ranks <dream_core.clip.frame_dreamer.FrameDreamer.ranks>`).
        objectives: every objective of the clip (:attr:`ClipPlan.objectives
            <dream_core.clip.plan.ClipPlan.objectives>`).
        first_frame: gives the raw first frame of the run's range, RGB ``[1,3,H,W]`` in ``0..1`` at the
            dream size; called only when some pick needs it (a file is not decoded for nothing).
    """
    objectives = list(objectives)
    if any(t for o in objectives for t in ranked_terms(o, ("clip",)) if ranks.get(t) is None):
        ranks.take(model, objectives, first_frame())


def bind_ranks(model: "DreamModel", objective: Objective, image: torch.Tensor,
               ranks: Optional[ChannelRanks] = None) -> Objective:
    """``objective`` with its ``/clip`` and ``/frame`` picks turned into listed channels for a dream of ``image``.

    ``/clip`` picks take their channels from ``ranks`` (ranked on ``image`` and kept there when it has
    none yet); without ``ranks`` they are ranked on ``image`` like ``/frame`` picks. ``/step`` picks,
    other terms and objectives without ranked picks come back as they are (the same object when
    nothing changes). One forward of ``image`` serves every pick that needs ranking.

    Args:
        image: RGB ``[B,3,H,W]`` in ``0..1``, the image the dream starts from.
    """
    terms = ranked_terms(objective, ("clip", "frame"))
    if not terms:
        return objective
    memory = ranks if ranks is not None else ChannelRanks()
    todo = [t for t in terms if t.rank.capture == "frame" or memory.get(t) is None]  # type: ignore[union-attr]
    means = layer_means(model, image, [t.layer for t in todo]) if todo else {}

    def listed(term: LayerObjective) -> LayerObjective:
        if term.rank is None or term.rank.capture == "step":
            return term
        if term.rank.capture == "clip":
            chans = memory.get(term) or memory._keep(term, means[term.layer])
        else:
            chans = tuple(rank_order(means[term.layer], term.rank, term.layer).tolist())
            log.debug("Ranked channels of %s on this frame: %s", term.to_string(), list(chans))
        return LayerObjective(term.layer, chans, loss=term.loss)

    return _map_terms(objective, listed)


def _map_terms(objective: Objective, fn: Callable[[LayerObjective], LayerObjective]) -> Objective:
    """``objective`` with ``fn`` applied to each :class:`LayerObjective` inside sums and weights."""
    if isinstance(objective, LayerObjective):
        return fn(objective)
    if isinstance(objective, ScaledObjective):
        inner = _map_terms(objective.inner, fn)
        return objective if inner is objective.inner else ScaledObjective(inner, objective.factor)
    if isinstance(objective, SumObjective):
        terms = [_map_terms(t, fn) for t in objective.terms]
        return objective if all(a is b for a, b in zip(terms, objective.terms)) else SumObjective(terms)
    return objective
