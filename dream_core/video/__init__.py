"""Video files: probing, streaming decode, H.264 encoding, the crash-safe run journal, muxing, writing.

Files (PyAV): :mod:`.probe` (facts of a file), :mod:`.reader` (streaming
decode), :mod:`.encoder` (H.264), :mod:`.journal` (crash-safe work folder),
:mod:`.mux` (joining segments, audio), :mod:`.output` (output checks),
:mod:`.writer` (:class:`VideoWriter`).

Convention: frames on the file side are ``numpy`` ``(H, W, 3)`` ``uint8`` RGB;
frame ``i`` is the ``i``-th frame in display order, counting from 0.
"""

from .encoder import X264_PRESETS
from .output import OUTPUT_FORMATS, check_output_writable
from .probe import MIN_FLOW_FRAMES, VideoInfo, check_frame_count, probe_video
from .reader import read_frames
from .writer import DEFAULT_SEGMENT_FRAMES, ResumePoint, VideoWriter

__all__ = [
    "DEFAULT_SEGMENT_FRAMES", "MIN_FLOW_FRAMES", "OUTPUT_FORMATS", "ResumePoint", "VideoInfo", "VideoWriter",
    "X264_PRESETS", "check_frame_count", "check_output_writable", "probe_video", "read_frames",
]
