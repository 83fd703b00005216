"""Every knob of one dream: :class:`DreamSettings` (and the mixed-precision choices, :data:`AUTOCAST_DTYPES`)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Optional

import torch

from .errors import InvalidParameterError
from .step import DEFAULT_STEP_RULE, STEP_RULES

#: Largest ``learning_rate``: a step of 1 moves a pixel across the whole ``0..1`` range.
MAX_LEARNING_RATE = 1.0
#: Largest ``gradient_smoothing`` sigma (pixels); blurs beyond it leave no pattern to dream.
MAX_SMOOTHING = 100.0
#: Largest ``jitter`` (pixels).
MAX_JITTER = 4096
#: Largest ``seed`` (what :meth:`torch.Generator.manual_seed` takes).
MAX_SEED = 2**64 - 1

#: ``autocast`` setting -> the dtype the forward pass runs in (``None``: float32 as loaded).
AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DreamSettings:
    """Every knob of the dream, with defaults that look good on the offline model.

    Attributes:
        num_octaves: number of scales (1 = full size only). More octaves -> larger, coarser patterns.
        octave_scale: size ratio between octaves (> 1). Larger -> octaves further apart.
        num_iterations: gradient steps per octave. More -> stronger dream, slower.
        learning_rate: step size in ``0..1`` image units per step (direction normalised
            to mean |d| = 1). Larger -> stronger, harsher dream.
        jitter: maximum random roll in pixels per step. Larger -> fewer grid artefacts.
        gradient_smoothing: Gaussian sigma (pixels) applied to the step direction; larger ->
            smoother, less noisy patterns. 0 disables.
        step_rule: ``"lapnorm"`` (colour-decorrelated, Laplacian-normalised: clean,
            painterly) or ``"plain"`` (the per-pixel RGB step: crisper, with colour
            speckle); see :mod:`dream_core.step`.
        colour_decorrelation: ``0..1``, how much the step favours the
            luminance direction over chroma. Higher -> colours stay the picture's
            own; lower -> more of the network's colours (and fine colour noise).
        laplacian_levels: ``lapnorm``: frequency bands normalised separately (1..8).
            More -> coarser structures get a larger share of each step.
        seed: seeds the jitter (``0 .. 2**64-1``); same seed + inputs -> same output on the same
            device and PyTorch build with the same CPU thread count (float sums run in another
            order with another count of threads, and a dream amplifies such differences into
            visibly different detail).
        luminance_only: keep the original colours, dream only brightness.
        autocast: ``"none"``, ``"bf16"`` or ``"fp16"``: mixed precision for the forward pass.
        tile_size: images larger than this (either side, pixels) get their gradient
            computed tile by tile with ``tile_overlap`` pixels of context; bounds memory.
            On the CPU, images over 8 MP use tiles of at most 512 px at every octave
            (:func:`~dream_core.dream.memory_tiles`: a 1024 px tile's activations alone take ~1.9 GB).
        tile_overlap: context margin around each tile (pixels).
        fast_path: how the network runs, not what the dream looks like (same result up to float
            round-off): ``True`` its execution copy (BatchNorm folded, ``channels_last``, ...; see
            :mod:`dream_core.fastpath`), ``False`` the network as loaded (debugging, comparison),
            ``None`` on unless the environment variable ``DEEPDREAM_FAST_PATH`` is ``0``.
        cuda_graphs: on CUDA, each octave's step is captured once as a CUDA graph and replayed
            (one launch per step instead of hundreds; same result up to float round-off); ``False``:
            step by step. The CPU, MPS, tiled octaves and out-of-memory retries always go step by step.
    """

    num_octaves: int = 4
    octave_scale: float = 1.4
    num_iterations: int = 10
    learning_rate: float = 0.01
    jitter: int = 32
    gradient_smoothing: float = 0.5
    step_rule: str = DEFAULT_STEP_RULE
    colour_decorrelation: float = 0.5
    laplacian_levels: int = 4
    seed: int = 0
    luminance_only: bool = False
    autocast: str = "none"
    tile_size: int = 1024
    tile_overlap: int = 64
    fast_path: Optional[bool] = None
    cuda_graphs: bool = True

    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` naming the bad value and the valid range.

        Numbers must be finite (``inf``/``nan`` are refused: they dream noise, black or crash);
        integer fields must be integers.
        """
        ints = ("num_octaves", "num_iterations", "jitter", "laplacian_levels", "seed", "tile_size", "tile_overlap")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidParameterError(f"{name} must be an integer; got {value!r}.", parameter=name)
        for name in ("octave_scale", "learning_rate", "gradient_smoothing", "colour_decorrelation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InvalidParameterError(f"{name} must be a finite number; got {value!r}.", parameter=name)
        if self.fast_path is not None and not isinstance(self.fast_path, bool):
            raise InvalidParameterError(f"fast_path must be True, False or None; got {self.fast_path!r}.",
                                        parameter="fast_path")
        if not isinstance(self.cuda_graphs, bool):
            raise InvalidParameterError(f"cuda_graphs must be True or False; got {self.cuda_graphs!r}.",
                                        parameter="cuda_graphs")
        checks = [
            (self.num_octaves >= 1, f"num_octaves must be >= 1; got {self.num_octaves}"),
            (self.octave_scale > 1.0, f"octave_scale must be > 1 (e.g. 1.4); got {self.octave_scale}"),
            (self.num_iterations >= 1, f"num_iterations must be >= 1 (0 would return the input unchanged); got {self.num_iterations}"),
            (0 < self.learning_rate <= MAX_LEARNING_RATE,
             f"learning_rate must be in (0, {MAX_LEARNING_RATE:g}] (e.g. 0.01; a step of 1 moves every pixel across the "
             f"whole 0..1 range: noise); got {self.learning_rate}"),
            (0 <= self.jitter <= MAX_JITTER, f"jitter must be in 0..{MAX_JITTER} pixels; got {self.jitter}"),
            (0 <= self.gradient_smoothing <= MAX_SMOOTHING,
             f"gradient_smoothing must be in 0..{MAX_SMOOTHING:g} pixels; got {self.gradient_smoothing}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED} (2**64 - 1); got {self.seed}"),
            (self.step_rule in STEP_RULES, f"step_rule must be one of {list(STEP_RULES)}; got {self.step_rule!r}"),
            (0.0 <= self.colour_decorrelation <= 1.0,
             f"colour_decorrelation must be in 0..1; got {self.colour_decorrelation}"),
            (1 <= self.laplacian_levels <= 8, f"laplacian_levels must be in 1..8; got {self.laplacian_levels}"),
            (self.autocast in AUTOCAST_DTYPES, f"autocast must be one of {list(AUTOCAST_DTYPES)}; got {self.autocast!r}"),
            (self.tile_size >= 64, f"tile_size must be >= 64 pixels; got {self.tile_size}"),
            (self.tile_overlap >= 0, f"tile_overlap must be >= 0 pixels; got {self.tile_overlap}"),
            (self.tile_overlap < self.tile_size // 2,
             f"tile_overlap must be below half the tile_size: {self.tile_overlap} px of overlap need a tile_size of at "
             f"least {2 * self.tile_overlap + 2}, and a tile_size of {self.tile_size} allows an overlap of at most "
             f"{self.tile_size // 2 - 1}; raise tile_size or lower tile_overlap"),
        ]
        for ok, msg in checks:
            if not ok:
                # Every message starts with its field's name, which is the parameter front ends map.
                raise InvalidParameterError(msg + ".", parameter=msg.split(" ", 1)[0])

    def with_(self, **changes: object) -> "DreamSettings":
        """Copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]
