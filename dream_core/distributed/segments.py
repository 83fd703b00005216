"""Splitting a clip into segments that can be dreamed in parallel and joined without a visible seam.

The stable mode's carried dream fades by ``carry`` per frame, so a segment that
starts ``burn_in`` frames before its first kept frame reaches nearly the same
state as an unbroken run by the time it gets there. What remains of the
difference is hidden by cross-fading: the last ``overlap`` kept frames of a
segment are blended with the next segment's own (burn-in) dream of the same
frames, with weights that ramp from one to the other.

Layout of segment ``s`` (global frame indices)::

    dream:        [keep.start - burn_in, keep.stop)          what its worker dreams
    keep:         [keep.start, keep.stop)                    frames it owns in the output
    body:         [keep.start, keep.stop - overlap)          written as the worker dreamed them
    blend_out:    [keep.stop - overlap, keep.stop)           blended with segment s+1's dream of them
    blend_in:     [keep.start - overlap, keep.start)         its own dream of segment s-1's blend_out

The first segment starts at the range's first frame with no burn-in (exactly
like an unbroken run); the last has no ``blend_out``. Everything depends on the
plan and global frame indices only, so a segment redone gives the same frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidParameterError

#: Share of a segment's start state that may remain when it reaches its first kept frame.
DEFAULT_REMAINING_SHARE = 0.05


@dataclass(frozen=True)
class Segment:
    """One parallel piece of a clip (see the module docstring for the ranges)."""

    number: int
    keep: range
    burn_in: int
    overlap_in: int
    overlap_out: int

    @property
    def dream(self) -> range:
        """The frames its worker dreams, burn-in first."""
        return range(self.keep.start - self.burn_in, self.keep.stop)

    @property
    def body(self) -> range:
        """Kept frames written as dreamed."""
        return range(self.keep.start, self.keep.stop - self.overlap_out)

    @property
    def blend_out(self) -> range:
        """Kept frames blended with the next segment's dream of them."""
        return range(self.keep.stop - self.overlap_out, self.keep.stop)

    @property
    def blend_in(self) -> range:
        """The previous segment's ``blend_out``, which this one dreams during its burn-in."""
        return range(self.keep.start - self.overlap_in, self.keep.start)


def burn_in_for(carry: float, share: float = DEFAULT_REMAINING_SHARE) -> int:
    """Frames after which ``carry ** frames`` falls below ``share`` (the start state has faded).

    ``carry`` 0.95 -> 59 frames, 0.9 -> 29. Raises for ``carry >= 1`` (a dream that never fades
    never forgets its start: segments cannot reproduce an unbroken run).
    """
    if not 0.0 <= carry < 1.0:
        raise InvalidParameterError(
            f"With carry {carry} the carried dream never fades, so a segment cannot catch up with an unbroken run; "
            "give the burn-in explicitly, or a carry below 1.", parameter="carry",
        )
    if not 0.0 < share < 1.0:
        raise InvalidParameterError(f"share must be in (0, 1); got {share}.", parameter="share")
    return 0 if carry == 0.0 else max(0, math.ceil(math.log(share) / math.log(carry)))


def plan_segments(frames: range, segment_length: int, burn_in: int, overlap: int) -> list[Segment]:
    """Split ``frames`` into segments of ``segment_length`` kept frames (the last may be shorter).

    Args:
        frames: global indices to dream (a range with step 1).
        segment_length: kept frames per segment (>= 1); ``overlap`` of them are blended.
        burn_in: frames dreamed before each segment's first kept frame (>= ``overlap``: the
            blended frames are part of the burn-in); capped at the frames that exist before it.
        overlap: frames cross-faded at each join (< ``segment_length``).

    Raises:
        InvalidParameterError: lengths out of range.
    """
    if frames.step != 1 or len(frames) == 0:
        raise InvalidParameterError(f"frames must be a non-empty range of consecutive frames; got {frames}.",
                                    parameter="frames")
    if segment_length < 1:
        raise InvalidParameterError(f"segment_length must be >= 1; got {segment_length}.", parameter="segment_length")
    if not 0 <= overlap < segment_length:
        raise InvalidParameterError(f"overlap must be in 0..{segment_length - 1} (below the segment length); "
                                    f"got {overlap}.", parameter="overlap")
    if burn_in < overlap:
        raise InvalidParameterError(f"burn_in ({burn_in}) must cover the overlap ({overlap}): the blended frames "
                                    "are dreamed during the burn-in.", parameter="burn_in")
    starts = list(range(frames.start, frames.stop, segment_length))
    segments = []
    for number, start in enumerate(starts):
        stop = min(start + segment_length, frames.stop)
        last = number == len(starts) - 1
        first = number == 0
        segments.append(Segment(
            number=number,
            keep=range(start, stop),
            burn_in=0 if first else min(burn_in, start - frames.start),
            overlap_in=0 if first else overlap,
            overlap_out=0 if last else overlap,
        ))
    return segments


def crossfade_weights(overlap: int) -> list[float]:
    """Weight of the *next* segment at each of ``overlap`` blended frames: a ramp strictly between 0 and 1."""
    return [(k + 1) / (overlap + 1) for k in range(overlap)]
