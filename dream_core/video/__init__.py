"""Video files and the flow-warped video dream.

Dreaming: :mod:`.settings` (:class:`VideoSettings`, the modes), :mod:`.frame_dreamer`
(:class:`FrameDreamer`: one frame after another), :mod:`.loop` (:func:`dream_clip`,
the one frame loop every front end drives).

Files (PyAV): :mod:`.probe` (facts of a file), :mod:`.reader` (streaming
decode), :mod:`.encoder` (H.264), :mod:`.journal` (crash-safe work folder),
:mod:`.mux` (joining segments, audio), :mod:`.output` (output checks),
:mod:`.writer` (:class:`VideoWriter`).

Convention: frames on the file side are ``numpy`` ``(H, W, 3)`` ``uint8`` RGB;
frame ``i`` is the ``i``-th frame in display order, counting from 0.
"""

from .encoder import X264_PRESETS
from .frame_dreamer import FrameDreamer
from .journal import file_identity
from .loop import (
    ClipState,
    DreamedFrame,
    EstimatedFlows,
    FlowSource,
    PrecomputedFlows,
    check_clip_flows,
    dream_clip,
    dream_frames,
    frame_range,
)
from .output import OUTPUT_FORMATS, check_output_writable
from .probe import MIN_FLOW_FRAMES, VideoInfo, check_frame_count, probe_video
from .reader import read_frames
from .settings import DEFAULT_VIDEO_MODE, VIDEO_MODES, VideoSettings
from .writer import DEFAULT_SEGMENT_FRAMES, ResumePoint, VideoWriter

__all__ = [
    "DEFAULT_SEGMENT_FRAMES", "DEFAULT_VIDEO_MODE", "MIN_FLOW_FRAMES", "OUTPUT_FORMATS", "VIDEO_MODES", "X264_PRESETS",
    "ClipState", "DreamedFrame", "EstimatedFlows", "FlowSource", "FrameDreamer", "PrecomputedFlows", "ResumePoint",
    "VideoInfo", "VideoSettings", "VideoWriter", "check_clip_flows", "check_frame_count", "check_output_writable",
    "dream_clip", "dream_frames", "file_identity", "frame_range", "probe_video", "read_frames",
]
