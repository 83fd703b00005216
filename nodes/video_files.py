"""Files behind ComfyUI's VIDEO values, for the streaming video node: where a VIDEO's frames can be
read from, where our output goes, and a file-backed VIDEO outside ComfyUI.

Core's VIDEO is an object with ``get_stream_source()`` (``comfy_api.input.VideoInput``): a file path
for ``LoadVideo``'s ``VideoFromFile``, an in-memory ``io.BytesIO`` for others, and for a video made
from an IMAGE batch (``CreateVideo``) a file encoded on request with ``save_to``. Nothing here imports
ComfyUI: VIDEO values are used through those methods only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..dream_core import InvalidParameterError, VideoError
from ..dream_core.video.journal import canonical_settings

#: Characters kept in a file name taken from the source's name; others become ``_``.
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Hex digits of the run key in an output name (48 bits: a collision needs ~16 million runs of one source).
KEY_DIGITS = 12


class FileVideo:
    """A VIDEO value backed by a file, standing in for core's ``VideoFromFile`` outside ComfyUI (tests, a
    notebook). It has the methods our nodes and core's SaveVideo call on a file video.

    Args:
        path: the video file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def get_stream_source(self) -> str:
        return self.path

    def get_dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of the picture as shown."""
        from ..dream_core.video import probe_video

        info = probe_video(self.path)
        return info.width, info.height

    def save_to(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        """Copy the file (core's VideoFromFile copies its streams when format and codec are 'auto')."""
        shutil.copyfile(self.path, path)

    def __repr__(self) -> str:
        return f"FileVideo({self.path!r})"


def video_file(video: Any, spool_dir: Path, name: str = "video") -> Path:
    """A file holding ``video``'s frames, to stream from.

    A VIDEO loaded from a file gives its path; one held in memory (``io.BytesIO``) or made from
    images (only ``save_to``) is written once to ``spool_dir`` under a name from its content, so the
    same video gives the same file (and a resumable run) while the file stays there.

    Args:
        video: core's VIDEO (``get_stream_source()`` / ``save_to()``), or a path.
        spool_dir: where in-memory videos are written (ComfyUI's temp folder).
        name: the input's name, for messages.

    Raises:
        InvalidParameterError: not a VIDEO.
        VideoError: its file does not exist or cannot be written.
    """
    if isinstance(video, (str, os.PathLike)):
        source: Any = os.fspath(video)
    elif hasattr(video, "get_stream_source"):
        source = video.get_stream_source()
    elif hasattr(video, "save_to"):
        source = None
    else:
        raise InvalidParameterError(
            f"'{name}' must be a VIDEO (e.g. from Load Video); got {type(video).__name__}.", parameter=name)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"The video file of '{name}' does not exist: '{path}'.", parameter=name)
        return path
    spool_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, io.IOBase):
        source.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
        target = spool_dir / f"video_{digest.hexdigest()[:KEY_DIGITS * 2]}.mp4"
        if not target.is_file():
            source.seek(0)
            tmp = target.with_name(target.name + ".partial")
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(source, fh)
            os.replace(tmp, target)
        return target
    # Only save_to (a subclass of VideoInput without a stream source): encode it once, name it by content.
    tmp = spool_dir / "video_encoding.partial.mp4"
    try:
        video.save_to(str(tmp))
    except Exception as exc:  # noqa: BLE001 - the host's encoder, any error: say which input
        raise VideoError(f"Could not write the video of '{name}' to '{tmp}': {exc}.", parameter=name) from exc
    target = spool_dir / f"video_{_file_sha256(tmp)[:KEY_DIGITS * 2]}.mp4"
    if target.is_file():
        tmp.unlink()
    else:
        os.replace(tmp, target)
    return target


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_key(identity: Mapping[str, Any]) -> str:
    """A short stable digest of a run's identity (its settings as JSON data), for the output's name."""
    text = json.dumps(canonical_settings(identity), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]


def output_path(root: Path, prefix: str, source: Path, key: str, suffix: str = ".mp4") -> Path:
    """``root/<prefix>_<source stem>_<key><suffix>``: one file per source and run key.

    ``prefix`` may name sub-folders (``"deepdream/stream"``) and must stay inside ``root``.

    Raises:
        InvalidParameterError: an empty prefix, or one that leads outside ``root``.
    """
    prefix = prefix.strip().replace("\\", "/")
    if not prefix or prefix.endswith("/"):
        prefix += "stream"
    folder, _, stem = prefix.rpartition("/")
    base = root.resolve()
    target_dir = (base / folder).resolve() if folder else base
    if os.path.isabs(prefix) or (target_dir != base and base not in target_dir.parents):
        raise InvalidParameterError(
            f"filename_prefix {prefix!r} leads outside the output folder '{base}'; give a relative name such as "
            "'deepdream/stream'.", parameter="filename_prefix")
    source_stem = _SAFE.sub("_", source.stem)[:40] or "video"
    return target_dir / f"{_SAFE.sub('_', stem)}_{source_stem}_{key}{suffix}"
