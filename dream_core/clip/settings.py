"""How the frames of a clip are chained: :class:`VideoSettings` and the three modes.

Three modes (:data:`VIDEO_MODES`):

``stable`` (default, ours)
    The dream *difference* of frame ``t-1`` (dreamed minus raw) is warped onto
    frame ``t`` with the backward flow and multiplied by ``carry`` (< 1, so old
    dreams fade instead of compounding). Where the flow is unreliable
    (occlusions, motion boundaries, regions entering the frame) the carried
    difference is dropped and the frame starts from its raw pixels. Frame
    ``t`` is dreamed from ``raw_t + carry * reliable * warped_diff`` with fewer
    iterations (``later_iterations``), and after every step its reliable pixels
    are pulled towards ``raw_t + warped_diff`` (``temporal_weight``), which keeps
    patterns attached to the scene.
``seed``
    Exactly the original tool's rule (zhuyuezx/neural-dream): warp the dream
    difference with the backward flow (zeros outside the frame), add it to raw
    frame ``t`` unchanged (no decay, no occlusion test), dream that.
``independent``
    Every frame dreamed from its raw pixels, no flow: the flicker baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError

VIDEO_MODES = ("stable", "seed", "independent")
DEFAULT_VIDEO_MODE = "stable"

#: ``colour_coherence`` of the command line and the nodes. The library's default stays 0, so a mode
#: is exactly its rule (``seed`` the original tool's, a zoom of 1 plain re-dreaming); at 0.5 a
#: feedback zoom's colour cast drifts 1.6 instead of 16.4 (a*b*) over 64 frames and the shared clip's
#: 1.3 instead of 5.2, with the same flicker (``benchmarks/animation.py colour``).
RECOMMENDED_COLOUR_COHERENCE = 0.5


@dataclass(frozen=True)
class VideoSettings:
    """How frames are chained.

    Attributes:
        mode: one of :data:`VIDEO_MODES`.
        carry: ``stable``: fraction of the warped previous dream difference kept as the next
            frame's start (``0..1``). Higher -> steadier but slower to adapt to new content.
        temporal_weight: ``stable``: per-step pull of reliable pixels towards the warped
            previous dream (``0..1``). Higher -> less flicker, less new detail.
        later_iterations: ``stable``: iterations for frames after the first, as a fraction
            of ``num_iterations`` (the carried dream already holds most of the pattern).
        occlusion_feather: ``stable``: blur (pixels) of the reliability mask edge, so
            occluded regions blend in without seams.
        colour_coherence: every mode: how far each dreamed frame's colour balance (lightness
            mean and contrast, colour cast) is pulled to its source frame's - or, in a feedback
            animation, the start image's - so colours do not drift over a long clip
            (``0..1``; 0 = off; :func:`dream_core.colour.match_colour_balance`; the CLI and the
            nodes start at :data:`RECOMMENDED_COLOUR_COHERENCE`).
    """

    mode: str = DEFAULT_VIDEO_MODE
    carry: float = 0.95
    temporal_weight: float = 0.3
    later_iterations: float = 0.4
    occlusion_feather: float = 2.0
    colour_coherence: float = 0.0

    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` naming the bad field and its valid range."""
        if self.mode not in VIDEO_MODES:
            raise InvalidParameterError(f"Unknown video mode {self.mode!r}; choose one of {', '.join(VIDEO_MODES)}.",
                                        parameter="mode")
        for name in ("carry", "temporal_weight", "colour_coherence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"{name} must be in 0..1; got {v}.", parameter=name)
        if not 0.0 < self.later_iterations <= 1.0:
            raise InvalidParameterError(f"later_iterations must be in (0, 1]; got {self.later_iterations}.",
                                        parameter="later_iterations")
        if self.occlusion_feather < 0:
            raise InvalidParameterError(f"occlusion_feather must be >= 0; got {self.occlusion_feather}.",
                                        parameter="occlusion_feather")

    def unused(self, cadence: int = 1, feedback: bool = False) -> tuple[str, ...]:
        """The fields this mode never reads (a value or schedule given for them would do nothing).

        ``stable`` reads them all; ``seed`` only ``occlusion_feather``, and only for a cadence's in-between
        frames; ``independent`` none, except ``later_iterations`` in a feedback animation (``feedback``:
        frames after the first, :func:`dream_core.animation.feedback_plan`). ``colour_coherence``: every mode.
        """
        if self.mode == "stable":
            return ()
        unused = ["carry", "temporal_weight", "later_iterations", "occlusion_feather"]
        if self.mode == "seed" and cadence > 1:
            unused.remove("occlusion_feather")
        if self.mode == "independent" and feedback:
            unused.remove("later_iterations")
        return tuple(unused)

    @property
    def needs_flow(self) -> bool:
        """Whether frames after the first need the optical flow (every mode but ``independent``)."""
        return self.mode != "independent"
