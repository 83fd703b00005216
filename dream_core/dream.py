"""The DeepDream loop: octaves with detail carried between scales, jittered normalised gradient ascent.

Recipe for one step at one octave (the image ``x`` is RGB ``[B,3,h,w]`` in ``0..1``):

1. jitter: roll ``x`` by a random offset (seeded), so artefacts of the
   network's stride grid do not accumulate;
2. forward up to the deepest requested layer only (on the execution copy:
   :func:`dream_core.fastpath.execution_net`) and evaluate the objective;
3. gradient of the objective with respect to the rolled image (tile by tile
   with an overlap margin when the image is larger than ``tile_size``), rolled back;
4. turn the gradient into a step direction (:mod:`dream_core.step`): by default
   colour-decorrelated and Laplacian-pyramid normalised (no colour static), then
   smoothed by ``gradient_smoothing`` pixels and normalised to mean ``|d| = 1``;
5. step by ``learning_rate``;
6. optional temporal pull towards an anchor image on reliable pixels (video);
7. clamp to ``0..1``.

Steps 1-7 are one function, :func:`dream_core.dream_step.dream_step`. On CUDA each
octave's step (tiles included) is captured once as a CUDA graph and replayed
(:mod:`dream_core.step_graph`); the CPU, MPS and out-of-memory retries go step
by step. Both jitter by the same offsets, drawn for the whole
dream from the seeded generator. On CUDA the dream runs with cuDNN's benchmark
mode off, restored afterwards (:func:`dream_core.backends.dream_flags`).

Octaves: the start image is shrunk ``num_octaves - 1`` times by
``octave_scale``; dreaming starts at the smallest size and the *detail*
(dreamed minus base) is upscaled and added to the next size's base, as in
Google's original notebook, so coarse structures survive to full size.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .allocator import tiles_on_the_heap
from .backends import dream_flags
from .dream_step import (TILE_ALIGN, HostShift, StepTerms, autocast_context, draw_jitter, dream_step, gradient_at,
                         tiled_gradient)
from .errors import InvalidImageError, InvalidParameterError
from .fastpath import use_fast_path
from .features import FeatureHooks, grad_enabled_outside_inference
from .image_ops import MAX_PIXELS, as_mask, fit_max_side, keep_colours, octave_sizes, resize, to_rgb
from .models.spec import DreamModel
from .objectives import GuideObjective, Objective, SumObjective, resolve_objective
from .ranking import ChannelRanks, bind_ranks
from .settings import AUTOCAST_DTYPES, DreamSettings
from .step_graph import StepGraphs, wanted

log = logging.getLogger(__name__)

#: ``on_step(step, total, current)``: called after every gradient step with the
#: 1-based step count over all octaves, the total, and the current image
#: ``[B,3,h,w]`` (detached; the current octave's size). May raise to cancel.
StepCallback = Callable[[int, int, torch.Tensor], None]

#: Out-of-memory back-off halves ``tile_size`` down to this, then gives up.
_MIN_TILE = 128

#: On the CPU, images of more than this many pixels are dreamed in tiles of at most :data:`CPU_LARGE_TILE` px
#: at every octave. A 1024 px tile's activations take about 1.9 GB there (EfficientNet-Lite0, default layer),
#: a 512 px one's about 1 GB, and the full-size input stays in memory through all octaves: a default dream
#: of a 24 MP photo peaked at 3.2 GB with 1024 px tiles in its smaller octaves (measured with
#: /usr/bin/time on one thread); tiled at 512 px its largest octave is about 15% slower.
CPU_LARGE_IMAGE_PIXELS = 8_000_000
#: The tile size (pixels) for :data:`CPU_LARGE_IMAGE_PIXELS`.
CPU_LARGE_TILE = 512


@dataclass
class TemporalAnchor:
    """Keep reliable pixels near a target image (the warped previous frame's dream).

    After every step, ``x <- x + strength * weight * (target - x)`` where all
    tensors are resized to the current octave.

    Attributes:
        target: ``[B,3,H,W]`` in ``0..1`` at full size.
        weight: ``[B,1,H,W]`` in ``0..1`` (1 = reliable pixel, 0 = occluded / new).
        strength: pull per step, ``0..1``.
    """

    target: torch.Tensor
    weight: torch.Tensor
    strength: float


def guide_objective(model: DreamModel, objective: Objective, guide: torch.Tensor, max_side: int = 512,
                    *, fast_path: Optional[bool] = None) -> Objective:
    """Objective that pulls the dream towards ``guide``'s features at ``objective``'s layers.

    Args:
        guide: RGB ``[1,3,H,W]`` (or ``[B,...]``, first item used) in ``0..1``; shrunk to
            ``max_side`` so its feature map stays small.
        fast_path: read the features on the execution copy (``DreamSettings.fast_path``).

    Raises:
        InvalidImageError: the guide is not an image, or smaller than the network's
            minimum input (``parameter="guide"``).
    """
    try:
        guide = to_rgb(guide)[:1]
    except InvalidImageError as exc:
        raise InvalidImageError(f"The guide image is unusable: {exc}", parameter="guide") from exc
    h, w = guide.shape[-2:]
    if min(h, w) < model.spec.min_size:
        raise InvalidImageError(
            f"The guide image is {w}x{h}; model '{model.name}' needs at least {model.spec.min_size} pixels on its "
            "shorter side to read its features. Use a larger guide image.", parameter="guide",
        )
    guide = fit_max_side(guide.to(device=model.device, dtype=model.dtype), max_side)
    layers = objective.layers()
    with grad_enabled_outside_inference(), torch.no_grad(), \
            FeatureHooks(model, layers, optimize=use_fast_path(fast_path)) as hooks:
        feats = hooks.run(guide.clone())
    terms = [GuideObjective(name, feats[name][0].flatten(1).detach()) for name in layers]
    return terms[0] if len(terms) == 1 else SumObjective(terms)


def _objective_gradient(
    hooks: FeatureHooks,
    objective: Objective,
    image: torch.Tensor,
    settings: DreamSettings,
    amp_dtype: Optional[torch.dtype],
    shift: tuple[int, int] = (0, 0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``objective`` at ``image`` ``[B,3,h,w]`` rolled by ``shift``; returns ``(grad, value [B])``.

    The network sees ``torch.roll(image, shift, dims=(2, 3))`` (the jitter); the
    gradient is returned rolled back, in ``image``'s own frame.

    Images larger than ``tile_size`` go tile by tile
    (:func:`~dream_core.dream_step.tiled_gradient`).
    """
    _, _, h, w = image.shape
    device_type = image.device.type
    amp = autocast_context(device_type, amp_dtype)
    if h <= settings.tile_size and w <= settings.tile_size:
        return gradient_at(hooks, objective, image, HostShift(*shift), amp)
    with tiles_on_the_heap() if device_type == "cpu" else nullcontext():
        return tiled_gradient(hooks, objective, image, settings.tile_size, settings.tile_overlap, HostShift(*shift), amp)


@dataclass
class TileBudget:
    """The tile size that fitted in memory, kept from one dream to the next.

    :func:`dream_image` halves ``tile_size`` after an out-of-memory error and keeps
    the smaller size for the rest of that dream. Give the dreams of a clip's frames
    one budget (as :class:`~dream_core.clip.frame_dreamer.FrameDreamer` does) and
    the halving happens once per clip instead of once per frame. The dream's
    result does not depend on the tile size beyond the tiles' seams.

    Attributes:
        tile_size: the learned size, ``None`` until an out-of-memory error shrank it.
        tile_overlap: the overlap that went with it.
    """

    tile_size: Optional[int] = None
    tile_overlap: Optional[int] = None

    def apply(self, settings: DreamSettings) -> DreamSettings:
        """``settings`` with the learned tile size, when it is smaller than theirs."""
        if self.tile_size is None or self.tile_size >= settings.tile_size:
            return settings
        return settings.with_(tile_size=self.tile_size, tile_overlap=min(settings.tile_overlap, self.tile_overlap))

    def learn(self, used: DreamSettings) -> None:
        """Remember ``used``'s tile size if it is smaller than what is known."""
        if self.tile_size is None or used.tile_size < self.tile_size:
            self.tile_size, self.tile_overlap = used.tile_size, used.tile_overlap


def memory_tiles(settings: DreamSettings, size: tuple[int, int], device: torch.device) -> DreamSettings:
    """The tiles an image of ``size`` ``(h, w)`` is dreamed in: ``settings``' own, or on the CPU for an
    image over :data:`CPU_LARGE_IMAGE_PIXELS`, at most :data:`CPU_LARGE_TILE` px (bounded memory).

    The overlap is kept (the tile grows to fit it when it is large).
    """
    h, w = size
    if device.type != "cpu" or h * w <= CPU_LARGE_IMAGE_PIXELS:
        return settings
    tile = max(CPU_LARGE_TILE, 2 * settings.tile_overlap + TILE_ALIGN)
    return settings if tile >= settings.tile_size else settings.with_(tile_size=tile)


def _gradient_backing_off(
    hooks: FeatureHooks,
    objective: Objective,
    image: torch.Tensor,
    settings: DreamSettings,
    amp_dtype: Optional[torch.dtype],
    shift: tuple[int, int] = (0, 0),
) -> tuple[torch.Tensor, DreamSettings]:
    """:func:`_objective_gradient`, halving ``tile_size`` after an out-of-memory error.

    Returns the gradient and the settings that worked, which the caller keeps for the
    rest of the dream. Gives up (re-raises) below :data:`_MIN_TILE` pixels.
    """
    while True:
        try:
            return _objective_gradient(hooks, objective, image, settings, amp_dtype, shift)[0], settings
        except torch.OutOfMemoryError:
            tile = min(settings.tile_size, max(image.shape[-2:])) // 2
            if tile < _MIN_TILE:
                raise
        # Outside the except block: the failed attempt's tensors are freed before retrying.
        if image.device.type == "cuda":
            torch.cuda.empty_cache()
        log.warning("Out of memory at tile_size %d on %s; retrying with tiles of %d px.",
                    settings.tile_size, image.device, tile)
        settings = settings.with_(tile_size=tile, tile_overlap=min(settings.tile_overlap, tile // 2 - 1))


def check_image_for_dream(image: torch.Tensor, model: DreamModel, settings: DreamSettings, *,
                          check_finite: bool = True) -> torch.Tensor:
    """Validate ``image`` and settings against ``model``; return RGB ``[B,3,H,W]``.

    Raises:
        InvalidImageError: bad shape, channels, values, or too large.
        InvalidParameterError: bad settings, or octaves so many that the smallest
            octave is below the network's minimum input size.
    """
    settings.validate()
    h, w = image.shape[-2:] if isinstance(image, torch.Tensor) and image.dim() == 4 else (0, 0)
    if h * w > MAX_PIXELS:  # before to_rgb reads every value
        raise InvalidImageError(
            f"Image is {w}x{h} = {h * w / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP. Downscale it first.",
            parameter="image",
        )
    image = to_rgb(image, check_finite=check_finite)
    smallest = octave_sizes(h, w, settings.num_octaves, settings.octave_scale)[0]
    if min(smallest) < model.spec.min_size:
        max_oct = 1
        while min(octave_sizes(h, w, max_oct + 1, settings.octave_scale)[0]) >= model.spec.min_size:
            max_oct += 1
        if min(h, w) < model.spec.min_size:
            raise InvalidImageError(
                f"Image {w}x{h} is smaller than model '{model.name}''s minimum side of {model.spec.min_size} pixels; "
                "upscale it first."
            )
        raise InvalidParameterError(
            f"{settings.num_octaves} octaves at scale {settings.octave_scale} shrink this {w}x{h} image to "
            f"{smallest[1]}x{smallest[0]}, below model '{model.name}''s minimum of {model.spec.min_size} pixels. "
            f"Use at most {max_oct} octaves (or a smaller octave_scale).",
            parameter="num_octaves",
        )
    return image


def dream_image(
    model: DreamModel,
    image: torch.Tensor,
    objective: Objective | str | None = None,
    settings: DreamSettings = DreamSettings(),
    *,
    guide: Optional[torch.Tensor] = None,
    anchor: Optional[TemporalAnchor] = None,
    on_step: Optional[StepCallback] = None,
    hooks: Optional[FeatureHooks] = None,
    tiles: Optional[TileBudget] = None,
    mask: Optional[torch.Tensor] = None,
    ranks: Optional[ChannelRanks] = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Dream ``image`` with ``model``.

    Args:
        model: a loaded model (:func:`dream_core.models.load_model`).
        image: RGB ``[B,3,H,W]`` float in ``0..1`` (gray/RGBA are converted). Never modified.
        objective: an :class:`Objective`, a shorthand string, or ``None`` for the model's default.
        settings: see :class:`DreamSettings`.
        guide: optional RGB image whose features the dream should resemble (guided dreaming).
        anchor: optional temporal pull towards a target on reliable pixels (video).
        on_step: progress callback ``(step, total, current)``; raise in it to cancel.
        hooks: already-entered :class:`FeatureHooks` for ``objective``'s layers (video reuses them,
            and the CUDA graphs captured with them). Hooks on the execution copy are not used when
            ``settings.fast_path`` turns the fast path off: the dream then runs ``model.net``.
        tiles: a :class:`TileBudget` shared with other dreams (a clip's frames): starts from
            the tile size it learned and learns a smaller one after an out-of-memory error.
        mask: where to dream, ``[1,1,H,W]`` or ``[H,W]`` in ``0..1`` (1 = dream, fractions scale
            every step, 0 = keep; resized to the image when its size differs): each step is
            multiplied by it, and the result is ``image + mask * (dream - image)``, so pixels
            where it is 0 come back unchanged.
        ranks: the channels a clip's ranked picks (``layer:strong8``) were given, kept from one
            dream to the next (a :class:`~dream_core.ranking.ChannelRanks`); ``None``: ranked on
            ``image`` (:func:`~dream_core.ranking.bind_ranks`).
        check_finite: check that ``image``'s (and ``mask``'s) values are finite; ``False`` where the caller
            checked them (a clip's frames, on the host): on a GPU that check waits for all queued work.

    Returns:
        Dreamed image ``[B,3,H,W]`` in ``0..1`` on ``image``'s device and dtype. Computation
        happens on ``model``'s device. Works inside ``torch.inference_mode()``.
    """
    out_device, out_dtype = image.device, image.dtype
    image = check_image_for_dream(image, model, settings, check_finite=check_finite)
    objective = bind_ranks(model, resolve_objective(model, objective), image, ranks)
    if guide is not None:
        objective = guide_objective(model, objective, guide, fast_path=settings.fast_path)
    amp_dtype = AUTOCAST_DTYPES[settings.autocast]
    with grad_enabled_outside_inference():
        # Never modified in place, so no copy is made unless it is an inference-mode tensor.
        base = image.detach().to(device=model.device, dtype=model.dtype)
        if base.is_inference():
            base = base.clone()
        where = None if mask is None else as_mask(mask, tuple(base.shape[-2:]), check_finite=check_finite).to(base)
        result = _dream_octaves(model, base, objective, settings, amp_dtype, anchor, on_step, hooks, tiles, where)
        if settings.luminance_only:
            result = keep_colours(result, base)
        if where is not None:
            result = torch.lerp(base, result, where)
    return result.to(device=out_device, dtype=out_dtype)


def _dream_octaves(
    model: DreamModel,
    base: torch.Tensor,
    objective: Objective,
    settings: DreamSettings,
    amp_dtype: Optional[torch.dtype],
    anchor: Optional[TemporalAnchor],
    on_step: Optional[StepCallback],
    hooks: Optional[FeatureHooks],
    tiles: Optional[TileBudget] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    h, w = base.shape[-2:]
    sizes = octave_sizes(h, w, settings.num_octaves, settings.octave_scale)
    n = settings.num_iterations
    total = len(sizes) * n
    offsets = draw_jitter(settings, total)  # (ox, oy) of every step, in order
    host_offsets: list[list[int]] = offsets.tolist()  # read by the step-by-step path without a tensor op per step
    device_offsets: Optional[torch.Tensor] = None  # the same on the device, for CUDA graphs (made when needed)
    fast = use_fast_path(settings.fast_path)
    own_hooks = hooks is None or (hooks.optimize and not fast)
    ctx = FeatureHooks(model, objective.layers(), optimize=fast) if own_hooks else nullcontext(hooks)
    step = 0
    detail: Optional[torch.Tensor] = None
    grad_settings = settings if tiles is None else tiles.apply(settings)  # tile_size may shrink after an OOM
    step_settings = memory_tiles(grad_settings, (h, w), base.device)  # the full size: base stays all along

    def gradient(k: int):  # the step-by-step gradient of step k: tiles, out-of-memory back-off
        def at(image: torch.Tensor) -> torch.Tensor:
            nonlocal grad_settings, step_settings
            ox, oy = host_offsets[k]
            grad, used = _gradient_backing_off(active, objective, image, step_settings, amp_dtype, (oy, ox))
            if used is not step_settings:  # an out-of-memory error shrank the tiles: keep that size
                grad_settings = step_settings = used
            return grad
        return at

    with dream_flags(base.device), ctx as active:
        for octave, size in enumerate(sizes):
            octave_base = resize(base, size)
            x = octave_base if detail is None else octave_base + resize(detail, size)
            detail = None  # memory: at most one full-size image besides ``base`` and ``x`` outlives a step
            terms = StepTerms(float(settings.learning_rate) if mask is None else
                              settings.learning_rate * resize(mask, size))
            if anchor is not None:
                terms.anchor_target = resize(anchor.target.to(base), size)
                terms.anchor_weight = resize(anchor.weight.to(base), size) * anchor.strength
            graph = None
            if wanted(x, step_settings):  # step_settings: the dream's, with the tiles in use
                graph = StepGraphs.of(active).for_octave(active, objective, step_settings, amp_dtype, x, terms, n)
            if graph is not None:
                x = graph.x  # the graph's static buffer holds the image from here
                if device_offsets is None:  # one copy per dream, none per step
                    device_offsets = (offsets.pin_memory().to(base.device, non_blocking=True)
                                      if base.device.type == "cuda" else offsets.to(base.device))
            for i in range(n):
                k = octave * n + i
                made = False
                if graph is not None and device_offsets is not None:
                    made = graph.step(device_offsets[k])
                    if not graph.usable:  # not capturable: on step by step from here, its buffers freed
                        x, graph = graph.x.clone(), None
                        StepGraphs.of(active).drop_failed()
                if not made:
                    current = [x]  # handed over: the old image is freed once the update is made
                    del x
                    x = dream_step(current, gradient(k), settings, terms)
                step += 1
                if on_step is not None:
                    on_step(step, total, x if graph is None else x.clone())
            if graph is not None:
                x = x.clone()  # the graph's buffer is overwritten by the next dream
            if octave < len(sizes) - 1:
                detail = x - octave_base
    if tiles is not None and grad_settings is not settings:
        tiles.learn(grad_settings)
    return x


def objective_value(model: DreamModel, image: torch.Tensor, objective: Objective | str | None = None) -> torch.Tensor:
    """Objective of ``image`` ``[B,3,H,W]`` (no jitter), ``[B]`` float32; for tests and diagnostics."""
    objective = resolve_objective(model, objective)
    with grad_enabled_outside_inference(), torch.no_grad(), FeatureHooks(model, objective.layers()) as hooks:
        x = to_rgb(image).to(device=model.device, dtype=model.dtype).clone()
        return objective(hooks.run(x)).float()
