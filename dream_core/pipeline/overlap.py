"""The pipeline's background threads: decoding ahead, the next frame's flow, encoding behind.

While the model dreams frame ``t`` on the caller's thread, :class:`ReadAhead` decodes
frames ``t+1, t+2`` on a thread of its own, :class:`FlowAhead` estimates the flow
between frames ``t`` and ``t+1`` on another, and :class:`WriteBehind` encodes frame
``t-1``. Decoding (PyAV), DIS/Farneback (OpenCV) and encoding release the GIL, so on
a machine with a GPU their time hides behind the dream's. Frames and flows cross to the GPU
from pinned memory and dreamed frames come back through pinned buffers
(:mod:`dream_core.transfer`), so the dreaming thread does not wait for the GPU between frames.

Rules every class here keeps:

* **Same output.** Frames go through the same functions in the same order; a thread
  only changes *when* they run (the flow of frame ``t+1`` is computed from exactly the
  values the loop would use, :meth:`FrameDreamer.raw_values`, on the host).
* **Bounded memory.** Each hand-over is a queue of ``depth`` items (default 2).
* **Errors surface as themselves.** An exception in a thread is re-raised in the
  caller's thread, the same object with its original type and traceback: a decoding
  error when the caller reaches that frame, a flow error when it asks for that flow,
  an encoding error at the next frame handed over (or the next gradient step).
* **Nothing outlives the run.** Leaving the ``with`` block (normally, on an error,
  on Ctrl-C or a cancel raised in a callback) stops and joins every thread. Frames
  already dreamed are still written, in order, before the encoder stops (so a
  resumable writer keeps them); a frame being decoded or a flow being estimated is
  finished and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, TypeVar

import torch

from ..clip.loop import ClipState, DreamedFrame
from ..flow.estimate import FlowEstimator
from ..flow.reliability import flow_pair
from ..transfer import staged, to_device

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Items each hand-over queue holds at most.
DEFAULT_DEPTH = 2
#: How often (seconds) a thread waiting on a full queue looks whether it should stop.
_POLL = 0.05


class _Failure:
    """An exception raised in a thread, carried through a queue to the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class ReadAhead(Generic[T]):
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead of the caller.

    Use as a context manager and iterate it once::

        with ReadAhead(decoded_frames) as frames:
            for index, frame in frames:
                ...

    Args:
        items: any iterable; it is iterated (and, for a generator, closed) on the thread only.
        depth: items decoded ahead at most (the queue's size).
        name: the thread's name.
    """

    def __init__(self, items: Iterable[T], depth: int = DEFAULT_DEPTH, name: str = "dream-decode") -> None:
        self._items = items
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "ReadAhead[T]":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the thread (it finishes the item in hand) and wait for it; safe to call twice."""
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(_POLL)
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        iterator = iter(self._items)
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator: its files are closed on this thread, where it ran
                close()


class FlowAhead:
    """A flow source that estimates the flow of frame ``t+1`` while frame ``t`` is dreamed.

    :meth:`feed` wraps the loop's frames: when it hands frame ``t`` to the loop it has frame
    ``t+1`` in hand already and starts ``flow_pair(estimator, raw_values(frame t), frame t+1)`` on
    the flow thread; when the loop then asks for frame ``t+1``'s flow (:meth:`__call__`, a
    :class:`~dream_core.clip.loop.FlowSource`) the result is usually ready. Every estimate
    runs on that one thread, in frame order, so an estimator holding state (OpenCV's DIS
    object, a RAFT network) is never used by two threads at once. A flow the feed did not
    start (the first frame after a resumed run's saved state) is estimated on the thread too,
    from the state's raw frame, exactly as :class:`~dream_core.clip.loop.EstimatedFlows` does.

    Frames come from the decoding thread on the host. A host estimator (DIS, Farneback) works
    on them there: no copy from the GPU, no wait on it; its flows come back pinned
    (:func:`~dream_core.transfer.staged`), so the dreaming thread copies them to the GPU without
    blocking. A GPU estimator (RAFT) gets the frames on ``device``.

    Args:
        estimator: the clip's :class:`~dream_core.flow.estimate.FlowEstimator`.
        raw_values: the values the dreamer keeps of a frame (:meth:`FrameDreamer.raw_values`): the
            previous frame the loop's flow is estimated from.
        device: the dream's device.
        consistency: also estimate the forward flow for the reliability test (as ``EstimatedFlows``).
    """

    def __init__(self, estimator: FlowEstimator, raw_values: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device | str, consistency: bool = True) -> None:
        self.estimator = estimator
        self.raw_values = raw_values
        self.device = torch.device(device)
        self.consistency = consistency
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dream-flow")
        self._ahead: dict[int, tuple[int, Future]] = {}

    def __enter__(self) -> "FlowAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop flows not asked for and wait for the flow thread to end (it finishes the estimate in hand)."""
        self._ahead.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def feed(self, frames: Iterable[tuple[int, torch.Tensor]]) -> Iterator[tuple[int, torch.Tensor]]:
        """``frames`` (``[1,3,H,W]`` tensors, consecutive indices), each handed on after the flow from it to
        the next frame has been started."""
        iterator = iter(frames)
        current = next(iterator, None)
        while current is not None:
            try:
                following = next(iterator, None)
            except BaseException:  # the next frame failed: this one is still dreamed first, as without overlap
                yield current
                raise
            if following is not None:
                (index, frame), (after, raw) = current, following
                self._ahead[after] = (index, self._pool.submit(self._pair, frame, raw, True))
            yield current
            current = following

    def __call__(self, previous: ClipState, index: int, raw: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        for stale in [k for k in self._ahead if k < index]:
            del self._ahead[stale]
        started = self._ahead.pop(index, None)
        if started is not None and started[0] == previous.index:
            return started[1].result()
        return self._pool.submit(self._pair, previous.raw, raw, False).result()

    def _pair(self, prev: torch.Tensor, cur: torch.Tensor,
              convert: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        prev = self.raw_values(prev) if convert else prev
        if not self.estimator.on_host:  # RAFT: on the dream's device
            prev, cur = to_device(prev, self.device), to_device(cur, self.device)
        with torch.no_grad():  # grad mode is per thread: this one never needs a graph
            pair = flow_pair(self.estimator, prev, cur, consistency=self.consistency)
        return staged(pair.backward, self.device), staged(pair.reliable, self.device)


class WriteBehind:
    """Hands dreamed frames to ``sink.write`` on a background thread, in order, at most ``depth`` behind.

    Use as a context manager: a clean exit waits until every frame is written and re-raises the
    thread's error if there was one; an exit on an error writes the frames already handed over
    (they are dreamed work a resumable writer keeps), then stops. After an error in the thread,
    :meth:`write` and :meth:`check` re-raise it in the caller.

    Args:
        sink: what the frames go to (e.g. a :class:`~dream_core.pipeline.sinks.WriterSink`); only
            this thread calls it while the block runs.
        depth: frames waiting at most (the queue's size).
        name: the thread's name.
    """

    def __init__(self, sink: Any, depth: int = DEFAULT_DEPTH, name: str = "dream-encode") -> None:
        self.sink = sink
        #: The caller's inference mode (per thread in torch), kept by the encode thread: a sink filling an
        #: inference tensor (a ComfyUI IMAGE) may only write it in place in inference mode.
        self._inference = torch.is_inference_mode_enabled()
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._failed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "WriteBehind":
        self._thread.start()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        self._put(_END)
        while self._thread.is_alive():
            self._thread.join(_POLL)
        if self._error is not None:
            if exc is None:
                raise self._error
            if exc is not self._error:  # not the error the caller already re-raised (write / check)
                log.error("Writing a frame failed too, after the run had stopped: %r", self._error)

    def check(self) -> None:
        """Re-raise the thread's error, if it had one."""
        if self._error is not None:
            raise self._error

    def write(self, done: DreamedFrame) -> None:
        """Queue one frame (waits while ``depth`` frames are queued).

        Raises:
            the thread's error, if writing an earlier frame failed.
        """
        self.check()
        stage = getattr(self.sink, "stage", None)  # e.g. start a GPU frame's copy to the host, here
        self._put(done if stage is None else stage(done))
        self.check()

    def _put(self, item: Any) -> None:
        while not self._failed.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        with torch.inference_mode(self._inference):
            self._write_all()

    def _write_all(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            try:
                self.sink.write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                self._error = exc
                self._failed.set()
                return
