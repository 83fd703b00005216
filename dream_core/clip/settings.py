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

from ..options import check_options, setting

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

    Each field is declared once, where it is defined (:func:`~dream_core.options.setting`): type, range,
    default, help, flag, schedulable; ``options(VideoSettings)`` lists them. ``colour_coherence``
    is :func:`dream_core.colour.match_colour_balance`, towards the source frame or, in a feedback
    animation, the start image; the library's default 0 keeps each mode exactly its rule, the CLI and
    the nodes start at :data:`RECOMMENDED_COLOUR_COHERENCE`.
    """

    mode: str = setting(
        DEFAULT_VIDEO_MODE, choices=VIDEO_MODES, flag="--mode",
        help="stable: the previous dream is carried along the optical flow, fades (carry), skips occluded "
             "areas and pulls towards the warped dream (least flicker). seed: the original neural-dream rule "
             "(warped dream added unchanged, compounds over time). independent: every frame dreamed alone, no "
             "flow needed (flickers).")
    carry: float = setting(
        0.95, minimum=0.0, maximum=1.0, step=0.01, flag="--carry", schedulable=True,
        help="stable: share of the previous frame's dream carried onto this frame. Higher -> steadier patterns "
             "that follow the scene; lower -> adapts faster to new content, more flicker.")
    temporal_weight: float = setting(
        0.3, minimum=0.0, maximum=1.0, step=0.01, flag="--temporal-weight", schedulable=True,
        help="stable: per-step pull of reliable pixels towards the warped previous dream. Higher -> less "
             "flicker, less new detail; 0 turns the pull off.")
    later_iterations: float = setting(
        0.4, minimum=0.01, maximum=1.0, step=0.05, flag="--later-iterations", schedulable=True,
        help="stable: iterations of the frames after the first, as a fraction of num_iterations. Lower -> "
             "faster (the carried dream already holds the pattern); higher -> more new detail per frame.")
    occlusion_feather: float = setting(
        2.0, minimum=0.0, maximum=64.0, step=0.5, flag="--occlusion-feather", schedulable=True,
        help="stable: blur (pixels) of the edge where the flow is unreliable (occlusions, new content). "
             "Larger -> softer seams; 0 -> hard edges.")
    colour_coherence: float = setting(
        0.0, minimum=0.0, maximum=1.0, step=0.05, flag="--colour-coherence", schedulable=True,
        front_default=RECOMMENDED_COLOUR_COHERENCE,
        help="Every mode: pull each frame's brightness, contrast and colour cast towards its source frame's (a "
             "zoom animation: the start image's), so colours do not drift over a long clip; the dream's own "
             "colours stay. 0 = off, 1 = fully.")

    def validate(self) -> None:
        """Raise :class:`~dream_core.errors.InvalidParameterError` naming the bad field and its valid range
        (:func:`~dream_core.options.check_options`)."""
        check_options(self)

    @property
    def needs_flow(self) -> bool:
        """Whether frames after the first need the optical flow (every mode but ``independent``)."""
        return self.mode != "independent"
