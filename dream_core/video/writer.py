"""Encode frames into a video file as they arrive, resumable after a crash: :class:`VideoWriter`.

Typical loop (the dream step is the caller's)::

    info = probe_video(src)
    writer = VideoWriter(dst, info.frame_rate, source=src, settings=settings)
    point = writer.resume_point()                # next_frame=0, carry=None on a fresh run
    carry = point.carry
    with writer:                                 # finish() on success, close() on error
        for frame in read_frames(src, start=point.next_frame):
            out = dream(frame, carry)
            carry = {"prev_raw": frame, "prev_dream": out}
            writer.write(out, carry=carry)

The pieces: :mod:`.encoder` (H.264), :mod:`.journal` (the crash-safe work folder),
:mod:`.mux` (joining segments, audio).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import av
import numpy as np

from ..errors import InvalidImageError, InvalidParameterError, VideoError
from .encoder import SEGMENT_CRF, SEGMENT_PRESET, X264_PRESETS, H264Encoder, check_frame, pad_to_even, segment_crf
from .journal import RunJournal, canonical_settings, fsync_path, run_identity
from .mux import AudioSource, DamagedSegmentError, Encoding, Piece, join_segments
from .output import OUTPUT_FORMATS, check_output_writable, parse_rate
from .probe import first_line, probe_video, scan_packets
from .reader import check_range

logger = logging.getLogger(__name__)

#: Frames per resumable segment: at most this many frames are redone after a hard crash.
DEFAULT_SEGMENT_FRAMES = 30
#: Container of the committed segments; a segment encoded elsewhere (:meth:`VideoWriter.commit_encoded`) uses it too.
SEGMENT_FORMAT = "mp4"


@dataclass
class ResumePoint:
    """Where a :class:`VideoWriter` continues.

    Attributes:
        next_frame: index (in the source) of the first frame still to write:
            ``start_frame + frames_done``.
        frames_done: frames already encoded in finished segments.
        carry: the caller's carry state saved with the last finished frame, as
            a dict of numpy arrays, or ``None`` (fresh run, or none was given).
    """

    next_frame: int
    frames_done: int
    carry: dict[str, np.ndarray] | None = field(default=None, repr=False)


class VideoWriter:
    """Encode frames into a video file as they arrive, resumable after a crash.

    Frames go into H.264 segment files of ``segment_frames`` frames in a work
    folder ``<output>.dream-work/`` next to the output. When a segment is
    full it is closed and committed, together with the caller's latest
    ``carry`` state, by rewriting a small JSON manifest (the commit point,
    replaced atomically). A new writer for the same output, source, start
    frame, segment quality and ``settings`` picks the work up: :meth:`resume_point`
    says which source frame to continue at and hands back the saved carry.
    Segments are near lossless (:func:`~dream_core.video.encoder.segment_crf`);
    :meth:`finish` encodes their pictures once more, as one stream at ``crf``
    (so the output has no quality jump where segments meet), copies the source's
    audio for the written frame range, writes all of it to a temporary file in
    the work folder, checks the frame count, renames it onto the output and
    deletes the work folder. The work folder holds about 3-4x the output's size
    while the run lasts.

    Used as a context manager, a clean exit calls :meth:`finish`; an exception
    calls :meth:`close`, which commits the frames written so far (so nothing
    finished is lost on Ctrl-C) and leaves no output file. After a hard crash
    (killed process) at most the frames of one unfinished segment are redone.

    Odd sizes: ``yuv420p`` needs an even width and height, so a frame with an
    odd side is padded by one pixel, repeating its last column/row, and the
    output is one pixel larger on that side (a warning says so).

    Args:
        path: output file; the extension picks the container (:data:`OUTPUT_FORMATS`).
        frame_rate: exact output rate (``Fraction``, ``int`` or ``"num/den"``);
            pass ``probe_video(source).frame_rate``. Floats are refused.
        source: the input video: its audio is copied and its identity (path,
            size, modification time) guards a resume. ``None`` for no audio.
        start_frame: index in ``source`` of the first frame that will be
            written (audio is cut to the same window).
        settings: the caller's dream settings (JSON-serialisable mapping); a
            resume with different settings is refused.
        crf: x264 constant rate factor of the output, 0 (lossless) .. 51; 18 is
            visually near lossless, higher = smaller file. A resume may change it
            (the segments do not depend on it above :data:`SEGMENT_CRF`).
        x264_preset: x264 preset of the output, one of :data:`X264_PRESETS`;
            slower = smaller file.
        segment_frames: frames per committed segment (what a hard crash can lose).
        resume: continue a matching unfinished run. ``False`` deletes an
            existing work folder and starts over.
        audio: copy the source's audio (when it has any).

    Raises:
        InvalidParameterError: a parameter is out of range, the output is the
            source, or an unfinished run with other settings exists.
        VideoError: the output cannot be written (checked at construction),
            or the source cannot be read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        frame_rate: Fraction | int | str,
        *,
        source: str | os.PathLike[str] | None = None,
        start_frame: int = 0,
        settings: Mapping[str, Any] | None = None,
        crf: float = 18,
        x264_preset: str = "medium",
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        resume: bool = True,
        audio: bool = True,
    ) -> None:
        self.rate = parse_rate(frame_rate)
        if isinstance(crf, bool) or not isinstance(crf, (int, float)) or not 0 <= crf <= 51:
            raise InvalidParameterError(f"crf must be a number in 0..51 (18 = near lossless), got {crf!r}.",
                                        parameter="crf")
        if x264_preset not in X264_PRESETS:
            raise InvalidParameterError(
                f"x264_preset must be one of {', '.join(X264_PRESETS)}; got {x264_preset!r}.", parameter="x264_preset")
        if isinstance(segment_frames, bool) or not isinstance(segment_frames, int) or segment_frames < 1:
            raise InvalidParameterError(f"segment_frames must be an int >= 1, got {segment_frames!r}.",
                                        parameter="segment_frames")
        check_range(start_frame, None)
        self.path = check_output_writable(path, source)
        self.format = OUTPUT_FORMATS[self.path.suffix.lower()]
        self.crf = float(crf)
        self.x264_preset = x264_preset
        self.segment_frames = segment_frames
        self.start_frame = int(start_frame)
        self.copy_audio = audio
        self.source_info = probe_video(source) if source is not None else None
        if self.source_info is not None and self.start_frame >= self.source_info.num_frames:
            raise InvalidParameterError(
                f"start_frame {self.start_frame} is past the end of '{self.source_info.path}' "
                f"({self.source_info.num_frames} frames, indices 0..{self.source_info.num_frames - 1}).",
                parameter="start",
            )
        settings_json = canonical_settings(settings)
        encoder = {"codec": "libx264", "pix_fmt": "yuv420p", "segment_crf": segment_crf(self.crf),
                   "segment_preset": SEGMENT_PRESET}
        identity = run_identity(self.source_info, self.start_frame, self.rate, encoder, settings_json)
        self._journal = RunJournal(self.path, identity, settings_json)
        self.work_dir = self._journal.work_dir
        self._encoder: H264Encoder | None = None
        self._segment_container: av.container.OutputContainer | None = None
        self._pending_carry: Mapping[str, Any] | None = None
        self._broken = False
        self._finished = False
        self._warned_odd = False
        self._journal.open(resume)
        if self._journal.segments:
            logger.info("Resuming %s at frame %d (%d frames done).", self.path, self.next_frame, self.frames_done)

    # -- state ---------------------------------------------------------------------------

    @property
    def frames_done(self) -> int:
        """Frames in committed segments."""
        return self._journal.frames_done

    @property
    def frames_written(self) -> int:
        """Frames written so far, including those of the segment being encoded."""
        return self.frames_done + (self._encoder.count if self._encoder is not None else 0)

    @property
    def next_frame(self) -> int:
        """Source index of the next frame :meth:`write` expects."""
        return self.start_frame + self.frames_written

    def resume_point(self) -> ResumePoint:
        """Where to continue: the next source frame and the carry state saved with the last one.

        On a fresh run this is ``ResumePoint(start_frame, 0, None)``. It
        describes committed work only, so call it before writing frames.

        Raises:
            VideoError: the saved carry file cannot be read.
        """
        return ResumePoint(next_frame=self.start_frame + self.frames_done, frames_done=self.frames_done,
                           carry=self._journal.load_carry())

    # -- writing -------------------------------------------------------------------------

    def write(self, frame: Any, carry: Mapping[str, Any] | None = None) -> None:
        """Encode one frame; commit a segment every ``segment_frames`` frames.

        Args:
            frame: ``(H, W, 3)`` ``uint8`` RGB array (a CPU torch tensor of that
                shape and dtype is accepted too). All frames must share one size.
            carry: state the caller needs to continue after this frame (e.g. the
                last raw and dreamed frames), a mapping of names to numpy
                arrays. Only a reference is kept; it is saved (``np.savez``)
                when the segment containing this frame is committed, so pass
                arrays that are not modified in place afterwards. Pass it with
                every frame: a segment saves the carry given with its last frame.

        Raises:
            InvalidImageError: wrong shape/dtype, or a size different from the
                earlier frames.
            VideoError: the writer is finished or encoding failed.
        """
        if self._finished:
            raise VideoError(f"The writer for '{self.path}' is finished; make a new one to write more frames.")
        if self._broken:
            raise VideoError(f"The writer for '{self.path}' failed earlier; make a new one to resume.")
        index = self.next_frame
        arr = check_frame(frame, index)
        size = (arr.shape[1], arr.shape[0])
        known = self._journal.size
        if known is None:
            self._journal.size = size
        elif size != known:
            raise InvalidImageError(
                f"Frame {index} is {size[0]}x{size[1]} but the video is {known[0]}x{known[1]}; "
                "all frames of a video must have the same size."
            )
        if carry is not None and not isinstance(carry, Mapping):
            raise InvalidParameterError(f"carry must be a mapping of names to arrays, got {type(carry).__name__}.")
        arr = self._pad_even(arr)
        try:
            if self._encoder is None:
                self._open_segment(arr.shape[1], arr.shape[0])
            assert self._encoder is not None and self._segment_container is not None
            for packet in self._encoder.encode(arr):
                self._segment_container.mux(packet)
        except av.FFmpegError as exc:
            self._broken = True
            raise VideoError(f"Encoding frame {index} for '{self.path}' failed: {first_line(exc)}.") from exc
        except BaseException:
            # e.g. Ctrl-C between encoding a frame and muxing its packets: the open
            # segment may miss packets, so close() must drop it rather than commit it.
            self._broken = True
            raise
        self._pending_carry = carry
        if self._encoder.count >= self.segment_frames:
            self._commit_segment()

    def commit_encoded(self, data: bytes, frames: int, size: tuple[int, int],
                       carry: Mapping[str, Any] | None = None) -> None:
        """Commit a segment encoded elsewhere (e.g. by a distributed worker) as the next ``frames`` frames.

        Args:
            data: a :data:`SEGMENT_FORMAT` file holding one H.264 ``yuv420p`` stream at the writer's rate,
                :func:`~dream_core.video.encoder.segment_crf` quality and ``SEGMENT_PRESET``.
            frames: how many frames it holds (checked against its packets before the commit).
            size: ``(width, height)`` of its frames (even sides); all segments of a run share one size.
            carry: the state saved with it, as in :meth:`write`.

        Raises:
            VideoError: frames written with :meth:`write` are not committed yet, the writer is finished or
                broken, or ``data`` does not hold ``frames`` frames.
            InvalidImageError: ``size`` differs from the earlier segments'.
        """
        if self._finished or self._broken or self._encoder is not None:
            raise VideoError(f"The writer for '{self.path}' cannot take an encoded segment now: it is "
                             f"{'finished' if self._finished else 'broken' if self._broken else 'encoding frames'}.")
        known = self._journal.size
        if known is not None and tuple(size) != known:
            raise InvalidImageError(f"The segment is {size[0]}x{size[1]} but the video is {known[0]}x{known[1]}.")
        self._journal.size = (int(size[0]), int(size[1]))
        self._journal.lock()  # held since construction, unless close() let it go
        tmp = self._journal.segment_path(len(self._journal.segments), partial=True)
        tmp.write_bytes(data)
        count = len(scan_packets(tmp)[0])
        if count != frames:
            tmp.unlink(missing_ok=True)
            raise VideoError(f"An encoded segment for '{self.path}' holds {count} frames, expected {frames}.")
        self._journal.commit(tmp, frames, carry)

    def _pad_even(self, arr: np.ndarray) -> np.ndarray:
        padded = pad_to_even(arr)
        if padded is not arr and not self._warned_odd:
            h, w = arr.shape[:2]
            logger.warning(
                "Frames are %dx%d; H.264 yuv420p needs even sides, so the output is padded to %dx%d by "
                "repeating the last column/row.", w, h, padded.shape[1], padded.shape[0],
            )
            self._warned_odd = True
        return padded

    def _open_segment(self, width: int, height: int) -> None:
        self._journal.lock()  # held since construction, unless close() let it go
        tmp = self._journal.segment_path(len(self._journal.segments), partial=True)
        try:
            self._segment_container = av.open(str(tmp), "w", format=SEGMENT_FORMAT)
            self._encoder = H264Encoder(self._segment_container, self.rate, width, height,
                                        segment_crf(self.crf), SEGMENT_PRESET)
        except (av.FFmpegError, OSError) as exc:
            self._broken = True
            raise VideoError(f"Could not start encoding into '{tmp}': {first_line(exc)}.") from exc

    def _commit_segment(self) -> None:
        """Close the current segment and make it (and the carry) part of the run, atomically."""
        assert self._encoder is not None and self._segment_container is not None
        tmp = self._journal.segment_path(len(self._journal.segments), partial=True)
        frames = self._encoder.count
        try:
            for packet in self._encoder.flush():
                self._segment_container.mux(packet)
            self._segment_container.close()
        except av.FFmpegError as exc:
            self._broken = True
            raise VideoError(f"Finishing segment '{tmp}' failed: {first_line(exc)}.") from exc
        finally:
            self._encoder = None
            self._segment_container = None
        self._journal.commit(tmp, frames, self._pending_carry)
        self._pending_carry = None

    def close(self) -> None:
        """Stop without producing the output; keep finished work for a resume.

        Frames written since the last commit are committed as a shorter segment
        (with the carry given with the last of them), unless encoding had
        failed, in which case they are dropped. Safe to call twice.
        """
        if self._encoder is not None and not self._finished:
            if self._broken or self._encoder.count == 0:
                self._discard_segment()
            else:
                pending = self._encoder.count
                try:
                    self._commit_segment()
                except Exception:  # noqa: BLE001 - cleanup must not hide the caller's original error
                    logger.exception("Could not save the last %d frames; a resume will redo them.", pending)
                    self._discard_segment()
        self._journal.close()  # unlocks; a folder without committed work is deleted

    def _discard_segment(self) -> None:
        if self._segment_container is not None:
            try:
                self._segment_container.close()
            except av.FFmpegError:
                pass
        self._encoder = None
        self._segment_container = None
        self._journal.segment_path(len(self._journal.segments), partial=True).unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc_type is None and not self._finished:
                self.finish()
        finally:
            self.close()  # after an error (finish's too): keep the work, let the folder's lock go

    # -- finishing -----------------------------------------------------------------------

    def finish(self) -> Path:
        """Encode the segments' pictures once at ``crf``, add the audio, move the result onto the output path.

        One stream of exactly ``frames_done`` frames at ``frame_rate``; see
        :func:`~dream_core.video.mux.join_segments`. The result is counted before it
        replaces the output.

        Returns:
            The output path.

        Raises:
            VideoError: no frame was written, or joining/muxing failed (the
                output path is then left untouched and the work folder kept).
        """
        if self._finished:
            return self.path
        if self._encoder is not None:
            if self._broken:
                raise VideoError(f"Encoding for '{self.path}' failed earlier; make a new writer to resume.")
            self._commit_segment()
        total = self.frames_done
        if total == 0:
            raise VideoError(f"No frames were written for '{self.path}'; nothing to save.")
        tmp = self.work_dir / f"final.partial{self.path.suffix.lower()}"
        assert self._journal.size is not None
        w, h = self._journal.size
        encoding = Encoding(self.format, self.rate, (w + w % 2, h + h % 2), self.crf, self.x264_preset)
        pieces = [Piece(self.work_dir / s.file, s.start, s.frames) for s in self._journal.segments]
        audio = None
        if self.copy_audio and self.source_info is not None and self.source_info.has_audio:
            t0 = self.source_info.start_time + float(self.start_frame / self.rate)
            audio = AudioSource(self.source_info, (t0, t0 + float(total / self.rate)))
        try:
            join_segments(tmp, pieces, encoding, audio, name=self.path)
        except DamagedSegmentError as exc:  # found only now that its pictures were decoded: redo it next run
            self._journal.drop_segments([s.file for s in self._journal.segments].index(exc.segment), str(exc))
            raise VideoError(f"{exc} It and the segments after it were dropped from the work folder; running "
                             "again dreams their frames again and finishes the output.") from exc
        return self._publish(tmp, total)

    def _publish(self, tmp: Path, total: int) -> Path:
        pts, _, _ = scan_packets(tmp)
        if len(pts) != total:
            tmp.unlink(missing_ok=True)
            raise VideoError(f"Internal error: '{tmp}' has {len(pts)} frames, expected {total}; output not written.")
        fsync_path(tmp)
        os.replace(tmp, self.path)
        fsync_path(self.path.parent)
        self._journal.remove()
        self._finished = True
        logger.info("Wrote %s: %d frames at %s fps.", self.path, total, self.rate)
        return self.path
