"""First-use costs paid before the first frame: one dream step at every octave shape of a frame size.

The first step at a new input shape pays for setup that later steps do not: the
execution copy's build and probe check, cuDNN's engine choice per convolution
shape, kernels loaded on first use. On an H200 that made the first EfficientNet-Lite0
720p frame take 12-17 s (docs: gpu-facts; the native depthwise kernels of
:mod:`dream_core.fastpath.depthwise` are the other cure). :func:`warm_up` runs one
step (forward, backward, step rule) at every octave of a frame size, with the same
settings, so the first real frame finds all of that ready;
:func:`warm_up_in_background` does it in a daemon thread while the caller opens its
input and decodes the first frame.

While it runs, the warm-up holds the model (:func:`dream_core.features.model_lock`):
a dream started meanwhile waits for it rather than interleaving with it.
"""

from __future__ import annotations

import logging
import threading
import time
import torch

from .dream import dream_image
from .models.spec import DreamModel
from .objectives import Objective
from .settings import DreamSettings

log = logging.getLogger(__name__)


def warm_up(model: DreamModel, size: tuple[int, int], settings: DreamSettings = DreamSettings(),
            objective: Objective | str | None = None) -> float:
    """Run one dream step at every octave shape of an image of ``size`` ``(h, w)``; returns the seconds taken.

    The steps use ``settings`` (octaves, tiles, autocast, fast path: what decides the shapes and
    kernels) with one iteration per octave, on a smooth test pattern on the model's device; the result
    is thrown away. Call it with the settings and frame size the dream will use.
    """
    h, w = size
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, max(2, h // 32), max(2, w // 32), generator=gen)
    with torch.inference_mode(False):
        pattern = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    t0 = time.perf_counter()
    dream_image(model, pattern.to(model.device), objective, settings.with_(num_iterations=1, cuda_graphs=False))
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - t0
    log.debug("Warmed up %s at %dx%d in %.2f s.", model.name, w, h, seconds)
    return seconds


def warm_up_in_background(model: DreamModel, size: tuple[int, int], settings: DreamSettings = DreamSettings(),
                          objective: Objective | str | None = None) -> threading.Thread:
    """:func:`warm_up` in a daemon thread, started before returning; ``join()`` it to wait.

    An error in the thread is logged (a warning) and otherwise ignored: the first frame then pays the
    first-use costs itself, and raises whatever is really wrong.
    """
    def run() -> None:
        try:
            warm_up(model, size, settings, objective)
        except Exception as exc:  # the dream that follows reports real problems
            log.warning("Warming up %s failed (%s: %s); the first frame pays for its setup.",
                        model.name, type(exc).__name__, exc)

    thread = threading.Thread(target=run, name=f"warm-up {model.name}", daemon=True)
    thread.start()
    return thread
