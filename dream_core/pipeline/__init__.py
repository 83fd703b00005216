"""The pipeline: frames from a source, through the one frame loop, into a sink, the same for every front end.

* :mod:`.render`: :func:`render_range`, the pipeline the command line, the Ray workers, the nodes and the
  benchmarks run;
* :mod:`.sources`: where frames come from (:class:`VideoFileSource`, :class:`IndexedFrames`);
* :mod:`.sinks`: where dreamed frames go (:class:`WriterSink`, :class:`TensorSink`);
* :mod:`.overlap`: decoding ahead, the next frame's flow and encoding behind, on threads;
* :mod:`.files`: the run's output file (:func:`open_writer`, the one place a writer is made) and resuming;
* :mod:`.check`: :func:`check_video_run`, a video run checked before any frame is dreamed.

This package sits above the clip wing (:mod:`dream_core.clip`), the file wing (:mod:`dream_core.video`)
and :mod:`dream_core.animation`, and joins them; :mod:`dream_core.distributed` and :mod:`dream_core.cli`
build on it. Conventions are the clip wing's: frame ``i`` is the source's ``i``-th frame (its global
index); tensors are RGB ``[1,3,H,W]`` in ``0..1``.
"""

from .check import ModelLoader, PlanFactory, VideoRequest, VideoRun, check_video_run
from .files import OutputOptions, open_writer, resume_state
from .render import FrameCallback, render_range
from .sinks import FrameSink, TensorSink, WriterSink
from .sources import EVEN, FrameSource, IndexedFrames, VideoFileSource

__all__ = [
    "EVEN", "FrameCallback", "FrameSink", "FrameSource", "IndexedFrames", "ModelLoader", "OutputOptions",
    "PlanFactory", "TensorSink", "VideoFileSource", "VideoRequest", "VideoRun", "WriterSink", "check_video_run",
    "open_writer", "render_range", "resume_state",
]
