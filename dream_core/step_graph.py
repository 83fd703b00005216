"""The dream step as a CUDA graph: captured once per octave shape, then one replay per step.

A step launches about 400 kernels (forward, backward, step rule) from Python; at
720p on an H200 the GPU was busy about a quarter of the wall time (docs: gpu-facts).
A captured graph replays them all with one launch.

What is captured is :func:`dream_core.dream_step.dream_step` itself, the one step
recipe, reading the image from a static buffer and the jitter offset from a static
device tensor (:class:`~dream_core.dream_step.DeviceShift`), and writing the next
image back into the buffer. Per octave the image, the step scale (the learning rate, or a mask
times it) and the
anchor are copied into the static buffers (:meth:`OctaveGraph.load`); per step
that step's offset is copied in and the graph replayed: no host synchronisation
inside an octave. The first step of a new graph runs eagerly on a side stream
(PyTorch's required warm-up; it is a real step), then the capture follows.

Graphs live in the :class:`~dream_core.features.FeatureHooks`' ``cache`` (dropped
when the hooks are removed), so the frames of a clip, which share one set of hooks
(:class:`~dream_core.clip.frame_dreamer.FrameDreamer`), capture once and replay for
every later frame. A graph is reused only for the same octave shape, objective
object and step settings (:func:`graph_key`); at most :data:`MAX_GRAPHS` are kept
per hooks, sharing one memory pool (they never run at the same time, and every
tensor that outlives a replay lives outside the pool).

Where capture fails (an objective that reads a value on the host, an operation
that copies host data to the device, out of memory) the key is remembered as not
capturable for these hooks and the dream goes on step by step from where it is;
:func:`wanted` decides where capture is tried at all (CUDA, ``DreamSettings.cuda_graphs``). An octave
larger than ``tile_size`` is captured with its tiles (:func:`~dream_core.dream_step.tiled_gradient`:
the tile grid depends only on the shape, the roll is read on the device), so the full-size octave of
a 720p frame (1280 px wide, two tiles of the default 1024) replays like the smaller ones; an
out-of-memory error in its warm-up step sends it step by step, where the tiles shrink.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import torch

from .dream_step import DeviceShift, StepTerms, autocast_context, dream_step, gradient_at, tiled_gradient
from .settings import DreamSettings

if TYPE_CHECKING:  # pragma: no cover
    from .features import FeatureHooks
    from .objectives import Objective

log = logging.getLogger(__name__)

#: Captured graphs kept per :class:`~dream_core.features.FeatureHooks` (least recently used dropped).
MAX_GRAPHS = 16
_CACHE_KEY = "step_graphs"


class Capturer(Protocol):
    """How a step is warmed up, captured and replayed (:class:`CudaCapture`; tests bring their own)."""

    def warm_up(self, body: Callable[[], None], device: torch.device) -> None: ...

    def capture(self, body: Callable[[], None], device: torch.device) -> Callable[[], None]: ...


#: Device types whose dreams are captured (the tests add the CPU, with a stand-in :class:`Capturer`).
CAPTURE_DEVICES = ("cuda",)


def wanted(image: torch.Tensor, settings: DreamSettings) -> bool:
    """Whether to try a CUDA graph for an octave of ``image`` ``[B,3,h,w]``: on CUDA, with
    ``settings.cuda_graphs`` (whole or in tiles: the tile grid depends only on the shape)."""
    return settings.cuda_graphs and image.device.type in CAPTURE_DEVICES


def _tiles_of(image: torch.Tensor, settings: DreamSettings) -> Optional[tuple[int, int]]:
    """``(tile_size, tile_overlap)`` when ``image``'s gradient is computed in tiles, else ``None``."""
    h, w = image.shape[-2:]
    return None if h <= settings.tile_size and w <= settings.tile_size else (settings.tile_size, settings.tile_overlap)


def graph_key(objective: "Objective", image: torch.Tensor, settings: DreamSettings,
              amp_dtype: Optional[torch.dtype], terms: StepTerms) -> tuple:
    """What a captured step depends on besides the static buffers' contents."""
    # The step scale's value (the learning rate, schedulable) and the anchor's are read from static
    # buffers, so a scheduled learning rate replays the same graph; only their kind is fixed. (A
    # half-precision image keeps the rate as a number, baked into the graph: see OctaveGraph.)
    baked = None if isinstance(terms.scale, torch.Tensor) or _rate_in_buffer(image) else terms.scale
    return (id(objective), tuple(image.shape), image.dtype, image.device, amp_dtype, settings.step_rule,
            settings.gradient_smoothing, settings.colour_decorrelation, settings.laplacian_levels,
            isinstance(terms.scale, torch.Tensor), baked, terms.anchor_target is not None, _tiles_of(image, settings))


def _rate_in_buffer(image: torch.Tensor) -> bool:
    """Whether a learning rate (a number) can live in a 0-d buffer of ``image``'s dtype and step exactly as the
    number does: in float32 and float64 (a half-precision buffer would round the rate first)."""
    return image.dtype in (torch.float32, torch.float64)


class OctaveGraph:
    """Static buffers and the captured step for one octave shape (see the module docstring).

    Args:
        hooks: the entered feature hooks the step runs the network through.
        objective: what the step maximises (kept alive: the key holds its ``id``).
        settings: the step rule's settings.
        amp_dtype: autocast dtype of the forward pass (``None``: float32).
        image: an image of the octave's shape, dtype and device ``[B,3,h,w]``.
        terms: the octave's :class:`~dream_core.dream_step.StepTerms` (their shapes are kept).
        capturer: how the step is warmed up, captured and replayed (:class:`Capturer`).
    """

    def __init__(self, hooks: "FeatureHooks", objective: "Objective", settings: DreamSettings,
                 amp_dtype: Optional[torch.dtype], image: torch.Tensor, terms: StepTerms,
                 capturer: Capturer) -> None:
        self.hooks, self.objective, self.settings, self.amp_dtype = hooks, objective, settings, amp_dtype
        self.capturer = capturer
        #: ``(tile_size, tile_overlap)`` when the octave's gradient is computed in tiles.
        self.tiles = _tiles_of(image, settings)
        self.x = torch.empty_like(image, memory_format=torch.contiguous_format)
        self.offset = torch.zeros(2, dtype=torch.long, device=image.device)
        self.shift = DeviceShift(self.offset, (int(image.shape[-2]), int(image.shape[-1])))
        # A learning rate without a mask lives in a 0-d buffer (in float32/float64, ``x + lr * d`` computes
        # the same with it as with the Python number), so its value can change between replays.
        scale: float | torch.Tensor = terms.scale
        if isinstance(terms.scale, torch.Tensor):
            scale = torch.empty_like(terms.scale)
        elif _rate_in_buffer(image):
            scale = torch.empty((), dtype=image.dtype, device=image.device)
        self.terms = StepTerms(
            scale,
            None if terms.anchor_target is None else torch.empty_like(terms.anchor_target),
            None if terms.anchor_weight is None else torch.empty_like(terms.anchor_weight),
        )
        #: Replays the captured step (``None`` until captured).
        self.replay: Optional[Callable[[], None]] = None
        #: ``False`` once capture failed: the graph is never used again.
        self.usable = True

    def load(self, image: torch.Tensor, terms: StepTerms) -> None:
        """Copy the octave's starting image and terms into the static buffers."""
        self.x.copy_(image)
        for mine, given in ((self.terms.scale, terms.scale), (self.terms.anchor_target, terms.anchor_target),
                            (self.terms.anchor_weight, terms.anchor_weight)):
            if isinstance(given, torch.Tensor):
                mine.copy_(given)
            elif given is not None and isinstance(mine, torch.Tensor):  # the rate: written on the device
                mine.fill_(given)

    def _gradient(self, image: torch.Tensor) -> torch.Tensor:
        amp = autocast_context(self.x.device.type, self.amp_dtype, cache=False)
        if self.tiles is None:
            return gradient_at(self.hooks, self.objective, image, self.shift, amp)[0]
        return tiled_gradient(self.hooks, self.objective, image, *self.tiles, self.shift, amp)[0]

    def _step(self) -> None:
        self.x.copy_(dream_step([self.x], self._gradient, self.settings, self.terms))

    def step(self, offset: torch.Tensor) -> bool:
        """Make one step with jitter ``offset`` (``[2]`` int64 ``(ox, oy)`` on the device); ``self.x`` then
        holds the new image. Returns ``False`` when the step was *not* made (out of memory in the
        eager warm-up step: the caller makes it step by step); :attr:`usable` tells whether
        later steps may come here.
        """
        self.offset.copy_(offset, non_blocking=True)
        if self.replay is not None:
            self.replay()
            return True
        try:
            self.capturer.warm_up(self._step, self.x.device)
        except torch.OutOfMemoryError:
            self.usable = False
            return False
        try:
            self.replay = self.capturer.capture(self._step, self.x.device)
        except Exception as exc:  # anything not capturable: go on step by step
            log.info("The dream step at %s could not be captured as a CUDA graph (%s: %s); stepping instead.",
                     tuple(self.x.shape[-2:]), type(exc).__name__, (str(exc).splitlines() or [""])[0])
            self.usable = False
        return True


class CudaCapture:
    """Warm-up and capture with ``torch.cuda.CUDAGraph``; the graphs of one :class:`StepGraphs` share a pool."""

    def __init__(self) -> None:
        self.pool: Optional[object] = None

    def warm_up(self, body: Callable[[], None], device: torch.device) -> None:
        """Run ``body`` once for real on a side stream (what PyTorch asks before a capture)."""
        main = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            body()
        main.wait_stream(side)

    def capture(self, body: Callable[[], None], device: torch.device) -> Callable[[], None]:
        """Capture ``body`` (nothing runs); returns what replays it. Raises where it cannot be captured."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        main = torch.cuda.current_stream(device)
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                body()
        except BaseException:
            # A capture that ends in an error can leave the capture stream current: put ours back.
            torch.cuda.set_stream(main)
            raise
        return graph.replay


class StepGraphs:
    """The captured steps of one :class:`~dream_core.features.FeatureHooks` (see the module docstring)."""

    def __init__(self, capturer: Optional[Capturer] = None) -> None:
        self._graphs: "OrderedDict[tuple, Optional[OctaveGraph]]" = OrderedDict()
        #: How steps are captured and replayed (one shared pool).
        self.capturer: Capturer = capturer if capturer is not None else CudaCapture()

    @classmethod
    def of(cls, hooks: "FeatureHooks", capturer: Optional[Capturer] = None) -> "StepGraphs":
        """The graphs kept with ``hooks``, made on first use (with ``capturer`` when given)."""
        graphs = hooks.cache.get(_CACHE_KEY)
        if not isinstance(graphs, StepGraphs):
            graphs = hooks.cache[_CACHE_KEY] = StepGraphs(capturer)
        return graphs

    def __len__(self) -> int:
        """Keys known (captured or known not to capture)."""
        return len(self._graphs)

    def captured(self) -> int:
        """Graphs captured and usable."""
        return sum(1 for g in self._graphs.values() if g is not None and g.replay is not None)

    def held(self) -> int:
        """Graphs held with their static buffers (captured or about to be)."""
        return sum(1 for g in self._graphs.values() if g is not None)

    def drop_failed(self) -> None:
        """Let go of the buffers of graphs that could not be made (their keys stay known as not capturable):
        called when a dream falls back to stepping, often short of memory."""
        for key, graph in self._graphs.items():
            if graph is not None and not graph.usable:
                self._graphs[key] = None

    def for_octave(self, hooks: "FeatureHooks", objective: "Objective", settings: DreamSettings,
                   amp_dtype: Optional[torch.dtype], image: torch.Tensor, terms: StepTerms,
                   steps: int) -> Optional[OctaveGraph]:
        """The graph for this octave, loaded with ``image`` and ``terms``; ``None`` where the key is known
        not to capture, or no graph exists and ``steps < 2`` (a capture would never be replayed)."""
        key = graph_key(objective, image, settings, amp_dtype, terms)
        if key in self._graphs:
            graph = self._graphs[key]
            self._graphs.move_to_end(key)
        else:
            if steps < 2:
                return None
            graph = OctaveGraph(hooks, objective, settings, amp_dtype, image, terms, self.capturer)
            self._graphs[key] = graph
            while len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        if graph is None or not graph.usable:
            self._graphs[key] = None
            return None
        graph.load(image, terms)
        return graph
