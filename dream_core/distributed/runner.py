"""Running segments (or any tasks) on a Ray cluster: local, multi-GPU, or an existing cluster.

Ray is an optional dependency, imported only here and only when a run starts
(:func:`require_ray`); ``import dream_core`` never needs it.

* :func:`start_ray` joins the cluster at ``address``, or starts a local runtime
  (all cores and GPUs of this machine); it leaves a runtime that is already up alone.
* :func:`render_segments` dreams a clip's segments as Ray tasks, at most ``workers``
  at a time, each on one GPU or on ``threads`` CPU cores. A task that dies with its
  process (killed, out of memory, ``os._exit``) is retried by Ray (``max_retries``);
  finished segments are committed as soon as the output order allows
  (:class:`~dream_core.distributed.assemble.Assembler`) and never redone.
  One tqdm bar counts kept frames over the clip, with each worker's frames/s.
* :func:`run_tasks` runs independent callables (a folder of images) the same way.

Transport: workers return the encoded body and the raw overlap frames through
Ray's object store (no shared file system for the output); every worker reads
the *input* itself, so on a cluster the input path must be readable on every node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import ClusterError, DreamError, MissingDependencyError, VideoError
from .assemble import Assembler
from .job import SegmentJob, SegmentResult, dream_segment, worker_name
from .segments import Segment

log = logging.getLogger(__name__)

#: What to run when Ray is missing.
INSTALL_RAY = "pip install 'deepdream-video[ray]'  (or: pip install 'ray>=2.9')"
#: Ray retries of a task whose worker process died.
DEFAULT_MAX_RETRIES = 3
#: Seconds to wait for a cluster's head to accept a connection before saying nothing answers.
CONNECT_TIMEOUT = 3.0
#: Seconds after which a join that has not finished says what it is waiting for (and again as often).
WAIT_NOTICE = 10.0
#: What a cluster address looks like, for messages.
ADDRESS_FORMS = "'host:6379' (the head's address that Ray's 'ray start' prints), 'ray://host:10001' or 'auto'"


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Before joining: a malformed ``address``, or one where nothing listens, is refused within ``timeout``
    seconds (Ray itself waited minutes and then exited the process). ``"auto"`` is left to Ray.

    Raises:
        ClusterError: unreadable, or no connection (``parameter="ray_address"``).
    """
    if address == "auto":
        return
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"Cannot read the Ray address {address!r}; expected {ADDRESS_FORMS}.",
                           parameter="ray_address")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(
            f"Nothing answers at {host}:{port} ({why}, waited up to {timeout:g} s). Check that the Ray head runs "
            "there (Ray's 'ray start' on the head prints its address), the host name and port, and that no "
            "firewall blocks the port.", parameter="ray_address",
        ) from None


def _join(ray: Any, address: str, **options: Any) -> None:
    """``ray.init(address=...)`` with every failure as a :class:`ClusterError` naming what to check, and a
    notice every :data:`WAIT_NOTICE` seconds while it waits."""
    check_address(address)
    started = time.monotonic()
    done = threading.Event()

    def notice() -> None:
        while not done.wait(WAIT_NOTICE):
            log.warning("Still joining the Ray cluster at %s after %.0f s (waiting for its head to answer; "
                        "Ctrl-C stops).", address, time.monotonic() - started)

    threading.Thread(target=notice, name="ray-join-notice", daemon=True).start()
    try:
        ray.init(address=address, **options)
    except (KeyboardInterrupt, MissingDependencyError):
        raise
    except BaseException as exc:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError, SystemExit
        first = ("Ray gave up waiting for the cluster's head to answer" if isinstance(exc, SystemExit)
                 else (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise ClusterError(
            f"Could not join the Ray cluster at {address!r}: {first.rstrip('.')}. Check the address ({ADDRESS_FORMS}); "
            "'auto' needs a cluster started on this machine; a cluster that requires a token or another Ray version "
            "says so above.", parameter="ray_address",
        ) from None
    finally:
        done.set()


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        MissingDependencyError: Ray is not installed (the message gives the install command).
    """
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            f"Rendering on several workers needs Ray, which is not installed ({exc}). Install it with: "
            f"{INSTALL_RAY}. One worker (workers=1) never needs Ray.", parameter="workers",
        ) from exc
    return ray


@dataclass(frozen=True)
class Slots:
    """How each task is placed: ``gpus`` (0 or 1) and ``cpus`` per task; ``threads`` torch threads in it."""

    gpus: float
    cpus: float
    threads: int


def start_ray(workers: int, address: Optional[str] = None, threads: Optional[int] = None,
              use_gpu: bool = True) -> Slots:
    """Join the cluster at ``address`` or start a local runtime; how each of ``workers`` tasks is placed.

    Args:
        workers: tasks run at once (>= 1).
        address: a running cluster's head (``"ray://host:10001"``, ``"host:6379"`` or ``"auto"``);
            ``None`` starts a local runtime with this machine's cores and GPUs (unless Ray is
            already initialised in this process).
        threads: torch threads per task; ``None``: the cluster's CPUs split between the workers.
        use_gpu: give each task one GPU when the cluster has GPUs.

    Raises:
        MissingDependencyError: Ray is not installed.
        ClusterError: ``address`` unreadable, unreachable, or refusing to be joined (within seconds).
    """
    ray = require_ray()
    if not ray.is_initialized():
        package = Path(__file__).resolve().parents[1]  # dream_core/
        if address:
            # The nodes need torch and the other dependencies; this code travels with the job.
            log.info("Joining the Ray cluster at %s.", address)
            _join(ray, address, log_to_driver=True, runtime_env={"py_modules": [str(package)]})
        else:
            import torch

            gpus = torch.cuda.device_count() if use_gpu else 0
            log.info("Starting a local Ray runtime (%d CPUs, %d GPUs).", os.cpu_count() or 1, gpus)
            # Workers import dream_core from where this process found it (installed or not).
            path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=os.cpu_count() or 1, num_gpus=gpus, include_dashboard=False, log_to_driver=True,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 1))
    gpus = float(resources.get("GPU", 0)) if use_gpu else 0.0
    if workers > cpus:
        log.warning("%d workers on a cluster of %d CPUs: workers wait for cores.", workers, cpus)
    per_task = max(1, cpus // max(workers, 1))
    return Slots(gpus=1.0 if gpus >= 1 else 0.0, cpus=float(per_task), threads=threads or per_task)


class _Progress:
    """A Ray actor that counts kept frames per segment and dreamed frames per worker."""

    def __init__(self) -> None:
        self.kept: dict[int, int] = {}
        self.starts: dict[int, int] = {}  # segment -> times a worker began it (retries count again)
        self.workers: dict[str, list[float]] = {}  # worker -> [dreamed, first time, last time]

    def report(self, worker: str, segment: int, kept: int, dreamed: int) -> None:
        self.kept[segment] = max(self.kept.get(segment, 0), kept)  # a retried segment counts once
        now = time.time()
        entry = self.workers.setdefault(worker, [0.0, now, now])
        entry[0] += 1
        entry[2] = now

    def begin(self, segment: int) -> None:
        self.starts[segment] = self.starts.get(segment, 0) + 1

    def started(self) -> dict[int, int]:
        return dict(self.starts)

    def snapshot(self) -> tuple[int, dict[str, float]]:
        rates = {w: (n - 1) / (t1 - t0) if t1 > t0 and n > 1 else 0.0 for w, (n, t0, t1) in self.workers.items()}
        return sum(self.kept.values()), rates


def _task_dream_segment(job: SegmentJob, segment: Segment, threads: int, progress: Any) -> SegmentResult:
    """The Ray task: set torch's threads, dream the segment, report progress to the actor."""
    import ray
    import torch

    torch.set_num_threads(threads)
    me = worker_name()
    ray.get(progress.begin.remote(segment.number))  # waited for: counted even if this process dies next

    def report(number: int, kept: int, dreamed: int) -> None:
        progress.report.remote(me, number, kept, dreamed)

    return dream_segment(job, segment, report)


@dataclass
class RenderStats:
    """What :func:`render_segments` did: segments dreamed (in the order they finished), bodies committed,
    per segment its worker time, frames dreamed (burn-in included) and worker, how many times a worker
    began it (``starts``: 2 for a segment whose first worker died), and the wall time."""

    dreamed: list[int]
    committed: list[int]
    seconds: dict[int, float]
    frames_dreamed: dict[int, int]
    workers: dict[int, str]
    wall: float
    starts: dict[int, int] = field(default_factory=dict)


def render_segments(job: SegmentJob, plan: Sequence[Segment], assembler: Assembler, *, workers: int,
                    address: Optional[str] = None, threads: Optional[int] = None,
                    max_retries: int = DEFAULT_MAX_RETRIES, progress: bool = True) -> RenderStats:
    """Dream the segments ``assembler`` still needs on Ray and commit them in order.

    Args:
        job: the clip's job.
        plan: the segment plan (``assembler``'s).
        assembler: commits results to the run's writer; says which segments are needed (resume).
        workers: segments dreamed at once.
        address: cluster head, or ``None`` for a local runtime (:func:`start_ray`).
        threads: torch threads per worker (``None``: cores / workers).
        max_retries: Ray retries of a segment whose worker process died.
        progress: show the tqdm bar.

    Raises:
        MissingDependencyError: Ray is not installed.
        DreamError: a worker raised one (bad settings, unreadable input): not retried.
        VideoError: a segment's worker died more than ``max_retries`` times.
    """
    ray = require_ray()
    slots = start_ray(workers, address, threads, use_gpu=job.device is None or job.device.startswith("cuda"))
    remote = ray.remote(_task_dream_segment).options(num_cpus=slots.cpus, num_gpus=slots.gpus,
                                                     max_retries=max_retries, retry_exceptions=False)
    tracker = ray.remote(_Progress).options(num_cpus=0).remote()
    queue = list(assembler.needed())
    by_number = {seg.number: seg for seg in plan}
    stats = RenderStats(dreamed=[], committed=[], seconds={}, frames_dreamed={}, workers={}, wall=0.0)
    total = sum(len(seg.keep) for seg in plan)
    already = assembler.writer.frames_done
    bar = _bar(total, already) if progress else None
    skipped_kept = total - already - sum(len(by_number[n].keep) for n in queue)
    t0 = time.perf_counter()
    pending: dict[Any, int] = {}
    log.info("Dreaming %d of %d segments on %d worker(s) (%s each).", len(queue), len(plan), workers,
             "1 GPU" if slots.gpus else f"{slots.threads} thread(s)")
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                number = queue.pop(0)
                pending[remote.remote(job, by_number[number], slots.threads, tracker)] = number
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                number = pending.pop(ref)
                result = _get(ray, ref, number, max_retries)
                stats.dreamed.append(number)
                stats.seconds[number] = result.seconds
                stats.frames_dreamed[number] = result.dreamed
                stats.workers[number] = result.worker
                assembler.add(result)
            if bar is not None:
                kept, rates = ray.get(tracker.snapshot.remote())
                bar.n = min(total, already + max(0, skipped_kept) + kept)
                bar.set_postfix_str(" ".join(f"{w.split(':')[-1]}:{r:.2f}f/s" for w, r in sorted(rates.items())),
                                    refresh=False)
                bar.refresh()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if bar is not None:
            bar.close()
        try:
            stats.starts = ray.get(tracker.started.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - statistics only
            log.debug("Could not read the start counts.", exc_info=True)
        ray.kill(tracker)
    if not assembler.done:
        raise VideoError("Internal error: every segment was dreamed but the output is not complete.")
    stats.committed = list(assembler.committed)
    stats.wall = time.perf_counter() - t0
    return stats


def _bar(total: int, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="frame", desc="dreaming video", dynamic_ncols=True)


def _get(ray: Any, ref: Any, number: int, max_retries: int) -> Any:
    """``ray.get``, with a worker's own error re-raised as it was, and a dead worker as a VideoError."""
    from ray import exceptions as rex

    try:
        return ray.get(ref)
    except rex.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
        if isinstance(cause, (DreamError, KeyboardInterrupt)):
            raise cause from None
        raise
    except (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError) as exc:
        raise VideoError(f"The worker dreaming segment {number} died {max_retries + 1} times ({type(exc).__name__}); "
                         "finished segments are kept: run the same command again to resume.") from exc


def run_tasks(calls: Iterable[Callable[[], Any]], *, workers: int, address: Optional[str] = None,
              threads: Optional[int] = None, max_retries: int = DEFAULT_MAX_RETRIES,
              on_done: Optional[Callable[[int, Any, Optional[BaseException]], None]] = None) -> list[Any]:
    """Run independent picklable callables as Ray tasks, ``workers`` at a time.

    Args:
        calls: the work, e.g. ``functools.partial(dream_image_file, ...)`` per file.
        workers, address, threads, max_retries: as in :func:`render_segments`.
        on_done: ``on_done(index, result, error)`` as each finishes (error: the exception it raised).

    Returns:
        Per call, its result or the exception it raised (a failing task does not stop the others).
    """
    ray = require_ray()
    slots = start_ray(workers, address, threads)
    remote = ray.remote(_task_call).options(num_cpus=slots.cpus, num_gpus=slots.gpus, max_retries=max_retries,
                                            retry_exceptions=False)
    todo = list(enumerate(calls))
    results: list[Any] = [None] * len(todo)
    pending: dict[Any, int] = {}
    while todo or pending:
        while todo and len(pending) < workers:
            index, call = todo.pop(0)
            pending[remote.remote(call, slots.threads)] = index
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            index = pending.pop(ref)
            error: Optional[BaseException] = None
            try:
                results[index] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - reported per task, the others go on
                cause = getattr(exc, "cause", None)
                error = cause if isinstance(cause, BaseException) else exc
                results[index] = error
            if on_done is not None:
                on_done(index, results[index], error)
    return results


def _task_call(call: Callable[[], Any], threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return call()
