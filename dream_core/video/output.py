"""Where a video may be written, and at what rate: checked before any work starts.

:data:`OUTPUT_FORMATS` maps output extensions to FFmpeg containers;
:func:`check_output_writable` refuses an output that cannot be written (or is
the input); :func:`parse_rate` keeps frame rates exact.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError, VideoError
from ..paths import same_file
from .probe import first_line

#: Output file extensions and the FFmpeg container each one selects.
OUTPUT_FORMATS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}



def check_output_writable(path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> Path:
    """Check, before any work starts, that a video can be written to ``path``.

    Checks the extension (one of :data:`OUTPUT_FORMATS`), that the output is not
    the ``source`` file, that the folder exists, and that a file can be created
    in it (a temporary probe file is created and removed).

    Args:
        path: the output video file.
        source: the input video, if any; writing over it is refused.

    Returns:
        ``path`` as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidParameterError: unsupported extension, or output equals input.
        VideoError: the folder is missing or not writable, or ``path`` is a folder.
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise VideoError(f"Output '{out}' is a folder; give a file name such as '{out / 'dream.mp4'}'.")
    ext = out.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise InvalidParameterError(
            f"Output '{out}' has extension '{ext or '(none)'}'; supported video outputs: "
            f"{', '.join(OUTPUT_FORMATS)}. Change the file name, e.g. to '{out.with_suffix('.mp4').name}'."
        )
    if source is not None and same_file(out, Path(source)):
        raise InvalidParameterError(
            f"Output '{out}' is the input file; refusing to overwrite the source. Choose another output name."
        )
    folder = out.parent
    if not folder.is_dir():
        raise VideoError(f"Cannot write '{out}': the folder '{folder}' does not exist. Create it first.")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dream-write-test-"):
            pass
    except OSError as exc:
        raise VideoError(
            f"Cannot write '{out}': the folder '{folder}' is not writable ({first_line(exc)})."
        ) from exc
    return out


def parse_rate(frame_rate: Any) -> Fraction:
    """``frame_rate`` as an exact :class:`~fractions.Fraction` in ``(0, 1000]``; floats are refused.

    Raises:
        InvalidParameterError: a float, an unreadable value, or out of range.
    """
    if isinstance(frame_rate, bool) or isinstance(frame_rate, float):
        raise InvalidParameterError(
            f"frame_rate must be exact (an int, a Fraction or a 'num/den' string such as '30000/1001'), "
            f"got the float {frame_rate!r}; pass probe_video(src).frame_rate."
        )
    try:
        rate = Fraction(frame_rate)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"frame_rate must be a Fraction, int or 'num/den' string, got {frame_rate!r}."
        ) from exc
    if rate <= 0 or rate > 1000:
        raise InvalidParameterError(f"frame_rate must be in (0, 1000] frames per second, got {rate}.")
    return rate
