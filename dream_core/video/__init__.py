"""Video files (PyAV): reading, writing and the crash-safe work folder; no dreaming here.

:mod:`.probe` (facts of a file), :mod:`.reader` (streaming decode), :mod:`.encoder` (H.264),
:mod:`.journal` (crash-safe work folder), :mod:`.worklock` (one run per folder), :mod:`.mux` (joining
segments, audio), :mod:`.output` (output checks), :mod:`.writer` (:class:`VideoWriter`).

How frames are dreamed lives in :mod:`dream_core.clip`, which this package never imports (nor the reverse).
Convention: frames on the file side are ``numpy`` ``(H, W, 3)`` ``uint8`` RGB; frame ``i`` is the ``i``-th
frame in display order, counting from 0.
"""

from .encoder import X264_PRESETS
from .journal import file_identity
from .output import OUTPUT_FORMATS, check_output_writable
from .probe import MIN_FLOW_FRAMES, VideoInfo, check_frame_count, probe_video
from .reader import read_frames
from .writer import DEFAULT_SEGMENT_FRAMES, ResumePoint, VideoWriter

__all__ = [
    "DEFAULT_SEGMENT_FRAMES", "MIN_FLOW_FRAMES", "OUTPUT_FORMATS", "X264_PRESETS", "ResumePoint", "VideoInfo",
    "VideoWriter", "check_frame_count", "check_output_writable", "file_identity", "probe_video", "read_frames",
]
