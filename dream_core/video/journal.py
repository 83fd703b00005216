"""The crash-safe journal of an unfinished video run: committed segments, the carry state, and who made them.

A :class:`RunJournal` owns a work folder ``<output>.dream-work/`` next to the
output. Each committed segment is an H.264 file there; with it the caller's
latest carry state (a dict of arrays, e.g. the last raw and dreamed frames) is
saved, and a small JSON manifest is rewritten atomically: that rewrite is the
commit point. A later run with the same identity (source file, range,
encoder) and settings picks the work up; a run made differently is refused
with the differences, and ``resume=False`` starts over.

Only files this journal itself makes may be in the folder; anything else means
the folder is not ours, and it is never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidParameterError, VideoError
from .probe import first_line

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
WORK_SUFFIX = ".dream-work"
# Files the journal itself creates inside its work folder; anything else means the folder is not ours.
_WORK_FILE = re.compile(
    r"^(manifest\.json(\.tmp)?|seg_\d{5}(\.partial)?\.mp4|carry_\d{5}(\.tmp)?\.npz|final\.partial\.\w+)$"
)


@dataclass
class Segment:
    """A committed segment: ``file`` (in the work folder) holds output frames ``start .. start+frames-1``."""

    file: str
    start: int
    frames: int


def canonical_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` as plain JSON data (Fractions as ``"num/den"``, paths as strings, tuples as lists).

    Raises:
        InvalidParameterError: not a mapping, or not JSON-serialisable.
    """
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise InvalidParameterError(f"settings must be a mapping (dict), got {type(settings).__name__}.",
                                    parameter="settings")
    try:
        return json.loads(json.dumps(dict(settings), sort_keys=True, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"settings must be JSON-serialisable (numbers, strings, lists, dicts, Fractions, paths): {exc}.",
            parameter="settings",
        ) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (best effort: some file systems refuse)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _save_carry(path: Path, carry: Mapping[str, Any]) -> None:
    arrays = {}
    for name, value in carry.items():
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype == object:
            raise InvalidParameterError(f"carry[{name!r}] is not a numeric array (dtype object).", parameter="carry")
        arrays[str(name)] = arr
    tmp = path.with_name(path.stem + ".tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunJournal:
    """The work folder of one output file and what has been committed in it.

    Args:
        output: the output video file; the folder is ``output`` + ``.dream-work``.
        identity: what must match for a resume (source file, start frame, rate,
            encoder), JSON data.
        settings: the caller's settings, JSON data (see :func:`canonical_settings`).

    Call :meth:`open` once before committing.
    """

    def __init__(self, output: Path, identity: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        self.output = output
        self.work_dir = output.with_name(output.name + WORK_SUFFIX)
        self.identity = dict(identity)
        self.settings = dict(settings)
        self.segments: list[Segment] = []
        self.size: tuple[int, int] | None = None  # (width, height) of the frames
        self.carry_file: str | None = None

    @property
    def frames_done(self) -> int:
        """Frames in committed segments."""
        return sum(s.frames for s in self.segments)

    def segment_path(self, k: int, partial: bool = False) -> Path:
        """Where segment ``k`` is written (``partial``) and where it lies once committed."""
        return self.work_dir / f"seg_{k:05d}{'.partial' if partial else ''}.mp4"

    def open(self, resume: bool) -> None:
        """Pick up an unfinished run in the work folder, or start over.

        Raises:
            VideoError: the folder holds foreign files, is not a folder, or is damaged.
            InvalidParameterError: an unfinished run made differently exists (and ``resume``).
        """
        if not self.work_dir.exists():
            return
        if not self.work_dir.is_dir():
            raise VideoError(f"'{self.work_dir}' exists and is not a folder; remove it so the writer can work.")
        foreign = [p.name for p in self.work_dir.iterdir() if not _WORK_FILE.match(p.name)]
        if foreign:
            raise VideoError(
                f"Work folder '{self.work_dir}' holds files this writer did not make "
                f"({', '.join(sorted(foreign)[:5])}); move them away or delete the folder."
            )
        manifest_path = self.work_dir / MANIFEST
        manifest: dict[str, Any] | None = None
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("Unreadable manifest %s (%s); starting over.", manifest_path, first_line(exc))
        if manifest is None or not resume:
            if manifest is not None:
                logger.warning("resume=False: deleting the unfinished run in %s and starting over.", self.work_dir)
            shutil.rmtree(self.work_dir)
            return
        self._check_same_run(manifest)
        try:
            self.segments = [Segment(**s) for s in manifest["segments"]]
            self.size = (int(manifest["size"][0]), int(manifest["size"][1])) if manifest.get("size") else None
            self.carry_file = manifest.get("carry")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VideoError(
                f"Work folder '{self.work_dir}' has a damaged manifest ({first_line(exc)}); "
                "delete the folder or pass resume=False.", parameter="resume",
            ) from exc
        keep = {MANIFEST} | {s.file for s in self.segments} | ({self.carry_file} if self.carry_file else set())
        for stray in self.work_dir.iterdir():
            if stray.name not in keep:
                stray.unlink()
        missing = [name for name in keep if not (self.work_dir / name).is_file()]
        if missing:
            raise VideoError(
                f"Work folder '{self.work_dir}' is damaged (missing {', '.join(missing)}); "
                "delete it or pass resume=False.", parameter="resume",
            )

    def _check_same_run(self, manifest: Mapping[str, Any]) -> None:
        saved = _flatten(manifest.get("identity", {}))
        saved.update(_flatten(manifest.get("settings", {}), "settings."))
        current = _flatten(self.identity)
        current.update(_flatten(self.settings, "settings."))
        differences = [
            f"{key}: {saved.get(key, '(unset)')!r} then, {current.get(key, '(unset)')!r} now"
            for key in sorted(set(saved) | set(current))
            if key != "settings_sha256" and saved.get(key) != current.get(key)
        ]
        if differences or saved.get("settings_sha256") != current.get("settings_sha256"):
            raise InvalidParameterError(
                f"'{self.work_dir}' holds an unfinished run ({manifest.get('frames_done', 0)} frames done) made "
                f"differently ({'; '.join(differences[:6]) or 'settings differ'}). Rerun with the same source, "
                "range, encoder and settings to resume, or start over with resume=False or by deleting that folder.",
                parameter="resume",
            )

    def commit(self, partial: Path, frames: int, carry: Mapping[str, Any] | None) -> None:
        """Make the closed segment file ``partial`` (``frames`` frames) and ``carry`` part of the run, atomically."""
        k = len(self.segments)
        final = self.segment_path(k)
        fsync_path(partial)
        os.replace(partial, final)
        old_carry = self.carry_file
        self.carry_file = None
        if carry is not None:
            self.carry_file = f"carry_{k:05d}.npz"
            _save_carry(self.work_dir / self.carry_file, carry)
        self.segments.append(Segment(file=final.name, start=self.frames_done, frames=frames))
        _write_json_atomic(
            self.work_dir / MANIFEST,
            {
                "identity": self.identity,
                "settings": self.settings,
                "output": str(self.output),
                "size": list(self.size) if self.size else None,
                "segments": [vars(s) for s in self.segments],
                "frames_done": self.frames_done,
                "carry": self.carry_file,
            },
        )  # the commit point
        fsync_path(self.work_dir)
        if old_carry and old_carry != self.carry_file:
            (self.work_dir / old_carry).unlink(missing_ok=True)
        logger.debug("Committed %s (%d frames, %d done).", final.name, frames, self.frames_done)

    def load_carry(self) -> dict[str, np.ndarray] | None:
        """The carry state saved with the last committed segment, or ``None``.

        Raises:
            VideoError: the carry file cannot be read.
        """
        if not self.carry_file:
            return None
        path = self.work_dir / self.carry_file
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise VideoError(f"Could not read the saved carry state '{path}': {first_line(exc)}.") from exc

    def remove(self) -> None:
        """Delete the work folder (after the output is complete)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
