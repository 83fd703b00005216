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

One run at a time: the folder is locked (:class:`~dream_core.video.worklock.WorkLock`)
from :meth:`RunJournal.open` to :meth:`RunJournal.close`. A damaged folder is
repaired when it is opened: a committed segment that no longer holds its frames
(a truncated file) is dropped with every segment after it, and an unreadable
carry state is dropped, so the run redoes those frames instead of failing at
the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidParameterError, VideoError
from .probe import VideoInfo, first_line, scan_packets
from .worklock import LOCK_NAME, WorkLock

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
WORK_SUFFIX = ".dream-work"
# Files the journal itself creates inside its work folder; anything else means the folder is not ours.
_WORK_FILE = re.compile(
    r"^(manifest\.json(\.tmp)?|seg_\d{5}(\.partial)?\.mp4|carry_\d{5}(\.tmp)?\.npz|final\.partial\.\w+|run\.lock)$"
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


def file_identity(path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """What identifies a file's content in a run's settings: its path and the SHA-256 of its bytes.

    For the files a run reads besides its source (weights, a start image): one replaced at
    the same path is another model or picture, and a run continued with it would mix two
    in one video. ``None`` for no file.

    Raises:
        VideoError: the file cannot be read.
    """
    if path is None:
        return None
    try:
        st = os.stat(path)
        digest = _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise VideoError(f"Could not read '{path}' to identify it: {first_line(exc)}.") from exc
    return {"path": os.fspath(path), "sha256": digest}


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The SHA-256 of a file, hashed once per process while its size and modification time stay (a batch of
    clips shares one weights file of hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(source: VideoInfo | None, start_frame: int, rate: Fraction, encoder: Mapping[str, Any],
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    """What must match for a resume: the source file (path, size, modification time), the first frame,
    the rate, the segments' encoder, and a digest of the settings."""
    src = None
    if source is not None:
        path = source.path.resolve()
        stat = path.stat()
        src = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    settings_json = json.dumps(settings, sort_keys=True)
    return {
        "version": MANIFEST_VERSION,
        "source": src,
        "start_frame": int(start_frame),
        "frame_rate": f"{rate.numerator}/{rate.denominator}",
        "encoder": dict(encoder),
        "settings_sha256": hashlib.sha256(settings_json.encode("utf-8")).hexdigest(),
    }


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
        self._carry: dict[str, np.ndarray] | None = None  # read (and so checked) when the folder is opened
        self._lock = WorkLock(self.work_dir, output)

    @property
    def frames_done(self) -> int:
        """Frames in committed segments."""
        return sum(s.frames for s in self.segments)

    def segment_path(self, k: int, partial: bool = False) -> Path:
        """Where segment ``k`` is written (``partial``) and where it lies once committed."""
        return self.work_dir / f"seg_{k:05d}{'.partial' if partial else ''}.mp4"

    def open(self, resume: bool) -> None:
        """Lock the work folder, then pick up an unfinished run in it, or start over.

        Committed segments are checked (their packets counted) and the carry
        state read: damaged ones are dropped with a warning, so the run redoes
        their frames (see :meth:`_repair`).

        Raises:
            VideoError: the folder holds foreign files, is not a folder, is locked by
                another run, or is damaged beyond repair.
            InvalidParameterError: an unfinished run made differently exists (and ``resume``).
        """
        if self.work_dir.exists():
            if not self.work_dir.is_dir():
                raise VideoError(f"'{self.work_dir}' exists and is not a folder; remove it so the writer can work.")
            foreign = [p.name for p in self.work_dir.iterdir() if not _WORK_FILE.match(p.name)]
            if foreign:
                raise VideoError(
                    f"Work folder '{self.work_dir}' holds files this writer did not make "
                    f"({', '.join(sorted(foreign)[:5])}); move them away or delete the folder."
                )
        self.work_dir.mkdir(exist_ok=True)
        self._lock.acquire()
        try:
            self._open_locked(resume)
        except BaseException:
            self._lock.release()
            raise

    def lock(self) -> None:
        """Take the folder's lock again after :meth:`close` (a writer that goes on writing)."""
        self.work_dir.mkdir(exist_ok=True)
        self._lock.acquire()

    def close(self) -> None:
        """Unlock the folder (idempotent); a folder without committed work is deleted."""
        if self._lock.held and not self.segments:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self._lock.release()

    def _clear(self) -> None:
        """Delete everything in the folder but the lock this run holds."""
        for path in self.work_dir.iterdir():
            if path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _open_locked(self, resume: bool) -> None:
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
            self._clear()
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
        keep = {MANIFEST, LOCK_NAME} | {s.file for s in self.segments} | ({self.carry_file} if self.carry_file else set())
        for stray in self.work_dir.iterdir():
            if stray.name not in keep:
                stray.unlink()
        missing = [name for name in sorted(keep - {LOCK_NAME}) if not (self.work_dir / name).is_file()]
        if missing:
            raise VideoError(
                f"Work folder '{self.work_dir}' is damaged (missing {', '.join(missing)}); "
                "delete it or pass resume=False.", parameter="resume",
            )
        self._repair()

    def _repair(self) -> None:
        """Drop the first segment that does not hold its committed frames, and all after it; drop an
        unreadable carry. Dropped frames are dreamed again; a warning says which and why."""
        for k, seg in enumerate(self.segments):
            try:
                count = len(scan_packets(self.work_dir / seg.file)[0])
                problem = None if count == seg.frames else f"segment {seg.file} holds {count} of its {seg.frames} frames"
            except VideoError as exc:
                problem = f"segment {seg.file} cannot be read: {exc}"
            if problem is not None:
                self.drop_segments(k, problem)
                return
        if self.carry_file:
            try:
                self._carry = self._read_carry()
            except VideoError as exc:
                first = int(self.identity.get("start_frame", 0)) + self.frames_done
                logger.warning(
                    "Work folder '%s': %s The %d frames already made are kept; the dream restarts at frame %d "
                    "without the state carried from the frame before it, so a cut may show there (start the run "
                    "over for a seamless clip).", self.work_dir, exc, self.frames_done, first,
                )
                (self.work_dir / self.carry_file).unlink(missing_ok=True)
                self.carry_file = None
                self._write_manifest()

    def drop_segments(self, k: int, problem: str) -> None:
        """Drop segment ``k`` (``problem`` says what is wrong with it) and every later one, so their frames are
        made again.

        The carry state goes too (it belongs to the last segment): the run continues at segment ``k``'s
        first frame without it, and the warning says so.
        """
        base = int(self.identity.get("start_frame", 0))
        done, seg = self.frames_done, self.segments[k]
        dropped, self.segments = self.segments[k:], self.segments[:k]
        if self.carry_file:
            (self.work_dir / self.carry_file).unlink(missing_ok=True)
            self.carry_file = None
        self._carry = None
        self._write_manifest()
        for old in dropped:
            (self.work_dir / old.file).unlink(missing_ok=True)
        cut = (f"; the dream restarts at frame {base + seg.start} without the state carried from the frame before "
               "it, so a cut may show there (start the run over for a seamless clip)") if seg.start else ""
        logger.warning(
            "Work folder '%s': %s. Segment %s (frames %d..%d) and the %d after it are dropped: frames %d..%d will be "
            "dreamed again%s.", self.work_dir, problem.rstrip("."), seg.file, base + seg.start,
            base + seg.start + seg.frames - 1, len(dropped) - 1, base + seg.start, base + done - 1, cut,
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
        self._write_manifest()  # the commit point
        fsync_path(self.work_dir)
        if old_carry and old_carry != self.carry_file:
            (self.work_dir / old_carry).unlink(missing_ok=True)
        logger.debug("Committed %s (%d frames, %d done).", final.name, frames, self.frames_done)

    def _write_manifest(self) -> None:
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
        )

    def load_carry(self) -> dict[str, np.ndarray] | None:
        """The carry state saved with the last committed segment, or ``None``.

        Raises:
            VideoError: the carry file cannot be read.
        """
        if not self.carry_file:
            return None
        if self._carry is not None:  # read when the folder was opened
            carry, self._carry = self._carry, None
            return carry
        return self._read_carry()

    def _read_carry(self) -> dict[str, np.ndarray]:
        path = self.work_dir / str(self.carry_file)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise VideoError(f"The saved carry state '{path.name}' cannot be read ({first_line(exc)}).",
                             parameter="resume") from exc

    def remove(self) -> None:
        """Delete the work folder (after the output is complete) and unlock it."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self._lock.release()
