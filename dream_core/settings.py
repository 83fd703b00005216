"""Every knob of one dream: :class:`DreamSettings` (and the mixed-precision choices, :data:`AUTOCAST_DTYPES`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from .errors import InvalidParameterError
from .options import check_options, setting
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

    Each field is declared once, where it is defined (:func:`~dream_core.options.setting`): its type,
    range, default, help, flag, and whether it is schedulable and part of a preset's look;
    ``options(DreamSettings)`` lists them. Notes the declarations leave out:

    * ``learning_rate`` is in ``0..1`` image units per step, the step direction normalised to mean
      ``|d| = 1``; ``step_rule`` is explained in :mod:`dream_core.step`.
    * ``seed`` takes what :meth:`torch.Generator.manual_seed` takes (``0 .. 2**64-1``).
    * ``tile_size``: on the CPU, images over 8 MP use tiles of at most 512 px at every octave
      (:func:`~dream_core.dream.memory_tiles`: a 1024 px tile's activations alone take ~1.9 GB).
    """

    num_octaves: int = setting(
        4, minimum=1, maximum=32, step=1, flag="--octaves", look=True, schedulable=True,
        help="Number of scales the dream is built over, smallest first (1 = full size only). More -> larger, "
             "coarser patterns; fewer -> fine detail only.")
    octave_scale: float = setting(
        1.4, minimum=1.01, maximum=4.0, step=0.05, flag="--octave-scale", look=True, schedulable=True,
        help="Size ratio between two octaves. Larger -> octaves further apart, bigger patterns; too large and "
             "the smallest octave gets below the model's minimum size.")
    num_iterations: int = setting(
        10, minimum=1, maximum=1000, step=1, flag="--iterations", look=True, schedulable=True,
        help="Gradient steps per octave. More -> a stronger, more developed dream; time grows in proportion.")
    learning_rate: float = setting(
        0.01, minimum=0.0001, maximum=MAX_LEARNING_RATE, step=0.0005, flag="--lr", look=True, schedulable=True,
        help="The dream's strength: step size per iteration in 0..1 image units. Larger -> stronger, harsher "
             "dream; smaller -> subtler.")
    jitter: int = setting(
        32, minimum=0, maximum=MAX_JITTER, step=1, flag="--jitter", schedulable=True,
        help="Largest random shift (pixels) of the image before each step. Larger -> fewer grid artefacts, "
             "softer patterns; 0 disables.")
    gradient_smoothing: float = setting(
        0.5, minimum=0.0, maximum=MAX_SMOOTHING, step=0.1, flag="--smoothing", look=True, schedulable=True,
        help="Gaussian blur (sigma, pixels) of each step. Larger -> smoother, less noisy patterns; 0 disables.")
    step_rule: str = setting(
        DEFAULT_STEP_RULE, choices=STEP_RULES, flag="--step-rule", look=True,
        help="How the gradient becomes a step. lapnorm: colour-decorrelated and Laplacian-normalised -> clean, "
             "painterly, no colour static; plain: per-pixel RGB steps (earlier versions) -> crisper fine detail "
             "covered in red/green/blue speckle.")
    colour_decorrelation: float = setting(
        0.5, minimum=0.0, maximum=1.0, step=0.05, flag="--colour-decorrelation", look=True, schedulable=True,
        help="How much each step favours brightness over colour. Higher -> the picture keeps its own colours; "
             "lower -> more of the network's colours (and, near 0, colour speckle).")
    laplacian_levels: int = setting(
        4, minimum=1, maximum=8, step=1, flag="--laplacian-levels", look=True, schedulable=True,
        help="lapnorm: frequency bands normalised separately. More -> coarse structures get a larger share of "
             "every step (bigger, softer shapes); 1 -> one band.")
    seed: int = setting(
        0, minimum=0, maximum=MAX_SEED, step=1, flag="--seed",
        help="Seeds the jitter. The same seed and inputs give the same result on the same device, PyTorch build "
             "and CPU thread count (another thread count sums floats in another order, and the dream grows that "
             "into visibly different detail); another seed -> a slightly different dream.")
    luminance_only: bool = setting(
        False, flag="--luminance-only",
        help="On -> keep the original colours and dream only brightness; off -> the network's colours appear.")
    autocast: str = setting(
        "none", choices=tuple(AUTOCAST_DTYPES), flag="--autocast",
        help="Mixed precision of the forward pass. bf16/fp16 -> faster with less memory on GPUs, tiny "
             "differences; none -> exact float32 (best on the CPU).")
    tile_size: int = setting(
        1024, minimum=64, maximum=16384, step=32, flag="--tile-size",
        help="Images larger than this (either side, pixels) get their gradient computed tile by tile. Smaller "
             "-> less memory, a little slower; larger -> faster if memory allows. On the CPU, images over 8 MP "
             "use tiles of at most 512 px (memory).")
    tile_overlap: int = setting(
        64, minimum=0, maximum=4096, step=8, flag="--tile-overlap",
        help="Context pixels around each tile (below half the tile_size). Larger -> fewer seams, slower.")

    # How the network runs, not what the dream looks like (the same result up to float round-off): no
    # widget or schedule; the command line's --no-fast-path sets fast_path for its run (see EXECUTION_FIELDS).
    #: ``True``: the network's execution copy (BatchNorm folded, ``channels_last``, ...; see
    #: :mod:`dream_core.fastpath`); ``False``: the network as loaded (debugging, comparison); ``None``: on
    #: unless the environment variable ``DEEPDREAM_FAST_PATH`` is ``0`` (read at call time).
    fast_path: Optional[bool] = None
    #: On CUDA, each octave's step (its tiles included) is captured once as a CUDA graph and replayed (one
    #: launch per step instead of hundreds); ``False``: step by step. The CPU, MPS and out-of-memory retries
    #: always go step by step.
    cuda_graphs: bool = True

    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` naming the bad value and the valid range.

        Every field against its declaration (:func:`~dream_core.options.check_options`: numbers finite,
        integer fields integers, values in range), then the tile overlap against the tile size.
        """
        check_options(self)
        if self.fast_path is not None and not isinstance(self.fast_path, bool):
            raise InvalidParameterError(f"fast_path must be True, False or None; got {self.fast_path!r}.",
                                        parameter="fast_path")
        if not isinstance(self.cuda_graphs, bool):
            raise InvalidParameterError(f"cuda_graphs must be True or False; got {self.cuda_graphs!r}.",
                                        parameter="cuda_graphs")
        if self.tile_overlap >= self.tile_size // 2:
            raise InvalidParameterError(
                f"tile_overlap must be below half the tile_size: {self.tile_overlap} px of overlap need a tile_size "
                f"of at least {2 * self.tile_overlap + 2}, and a tile_size of {self.tile_size} allows an overlap of "
                f"at most {self.tile_size // 2 - 1}; raise tile_size or lower tile_overlap.", parameter="tile_overlap")

    def with_(self, **changes: object) -> "DreamSettings":
        """Copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]
