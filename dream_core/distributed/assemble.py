"""Joining dreamed segments into the output, in order, through the resumable writer's journal.

The output of a segment plan is a sequence of *pieces*, each committed to the
:class:`~dream_core.video.writer.VideoWriter` as one journal segment::

    body(0), join(0|1), body(1), join(1|2), ..., body(last)

``body(s)`` is segment ``s``'s body as its worker encoded it (committed as it
is); ``join(s|s+1)`` is segment ``s``'s ``blend_out`` cross-faded with segment
``s+1``'s ``blend_in`` (the same frames) by :func:`crossfade` and encoded here.
With ``body(s)`` the journal saves segment ``s``'s ``blend_out`` frames as the
carry, so a run resumed right before ``join(s|s+1)`` needs only segments from
``s+1`` on. Results may arrive in any order; :class:`Assembler` holds them until
the pieces before them are committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np

from ..errors import VideoError
from ..video.writer import VideoWriter
from .job import SegmentResult, encode_segment
from .segments import Segment, crossfade_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """One journal segment of the output: ``kind`` ``"body"`` or ``"join"`` of ``segment`` (a join
    follows its segment's body), holding global frames ``frames``."""

    kind: str
    segment: int
    frames: range


def output_pieces(plan: list[Segment]) -> list[Piece]:
    """The pieces of ``plan``'s output in order (joins only where segments overlap)."""
    pieces = []
    for seg in plan:
        pieces.append(Piece("body", seg.number, seg.body))
        if seg.overlap_out:
            pieces.append(Piece("join", seg.number, seg.blend_out))
    return pieces


def crossfade(previous: np.ndarray, following: np.ndarray) -> np.ndarray:
    """Blend the previous segment's ``blend_out`` with the next one's ``blend_in`` of the same frames.

    Args:
        previous, following: ``(K,H,W,3) uint8``, frame ``j`` of both the same global frame.

    Returns:
        ``(K,H,W,3) uint8``: frame ``j`` is ``(1-w_j) * previous + w_j * following`` (rounded) with
        ``w = crossfade_weights(K)``, a ramp from the previous segment's dream towards the next one's.
    """
    if previous.shape != following.shape:
        raise VideoError(f"Overlap frames differ in shape: {previous.shape} and {following.shape}.")
    w = np.asarray(crossfade_weights(len(previous)), np.float32).reshape(-1, 1, 1, 1)
    mixed = (1.0 - w) * previous.astype(np.float32) + w * following.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


class Assembler:
    """Commits segment results to ``writer`` in output order; knows which segments a (resumed) run needs.

    Args:
        writer: the run's writer (its ``start_frame`` is ``plan[0].keep.start``).
        plan: the segment plan of the run.
        rate, crf: the encoding of the joins (as the workers encode bodies).
    """

    def __init__(self, writer: VideoWriter, plan: list[Segment], rate: Fraction, crf: float) -> None:
        self.writer = writer
        self.plan = plan
        self.rate = rate
        self.crf = crf
        self.pieces = output_pieces(plan)
        self.next_piece = self._resume_piece()
        self._results: dict[int, SegmentResult] = {}
        self._blend_out: dict[int, np.ndarray] = {}
        #: Segments committed by this run (bodies), in order.
        self.committed: list[int] = []
        if self.next_piece < len(self.pieces) and self.pieces[self.next_piece].kind == "join":
            saved = writer.resume_point().carry or {}
            seg = self.pieces[self.next_piece].segment
            if "blend_out" in saved and int(saved.get("segment", -1)) == seg:
                self._blend_out[seg] = saved["blend_out"]

    def _resume_piece(self) -> int:
        done = self.writer.frames_done
        total = 0
        for k, piece in enumerate(self.pieces):
            if total == done:
                return k
            total += len(piece.frames)
        if total == done:
            return len(self.pieces)
        raise VideoError(
            f"The unfinished run of '{self.writer.path}' holds {done} frames, which is not a piece boundary of this "
            "segment plan; start over (resume=False).", parameter="resume",
        )

    @property
    def done(self) -> bool:
        """Every piece is committed."""
        return self.next_piece >= len(self.pieces)

    def needed(self) -> list[int]:
        """Numbers of the segments still to dream (in order): those with a piece not committed yet."""
        need: set[int] = set()
        for piece in self.pieces[self.next_piece:]:
            need.add(piece.segment)
            if piece.kind == "join":
                need.add(piece.segment + 1)
        if self.next_piece < len(self.pieces) and self.pieces[self.next_piece].segment in self._blend_out:
            need.discard(self.pieces[self.next_piece].segment)  # its blend_out was saved with its body
        return sorted(need)

    def add(self, result: SegmentResult) -> int:
        """Take a segment's result and commit every piece that has become possible.

        Returns:
            The number of frames committed by this call.
        """
        self._results[result.number] = result
        before = self.writer.frames_done
        while not self.done:
            piece = self.pieces[self.next_piece]
            if piece.kind == "body":
                result = self._results.get(piece.segment)
                if result is None:
                    break
                carry = None
                if len(result.blend_out):
                    carry = {"blend_out": result.blend_out, "segment": np.asarray(piece.segment)}
                    self._blend_out[piece.segment] = result.blend_out
                self.writer.commit_encoded(result.body, result.body_frames, result.size, carry)
                self.committed.append(piece.segment)
                del self._results[piece.segment]
            else:
                following = self._results.get(piece.segment + 1)
                previous = self._blend_out.get(piece.segment)
                if following is None or previous is None:
                    break
                frames = crossfade(previous, following.blend_in)
                data, count = encode_segment(frames, self.rate, self.crf)
                height, width = frames.shape[1:3]
                self.writer.commit_encoded(data, count, (width, height))
                del self._blend_out[piece.segment]
            self.next_piece += 1
        return self.writer.frames_done - before

    def pending(self) -> Optional[int]:
        """The segment the next piece waits for, or ``None`` when done."""
        if self.done:
            return None
        piece = self.pieces[self.next_piece]
        if piece.kind == "join" and piece.segment in self._blend_out:
            return piece.segment + 1
        return piece.segment
