"""Named looks: ``gentle``, ``classic`` (the defaults), ``intense``, ``legacy``.

A preset decides the *look* fields of :class:`~dream_core.dream.DreamSettings`
(:data:`LOOK_FIELDS`: octaves, iterations, learning rate, smoothing and the step
rule); the rest (seed, jitter, tiling, autocast, luminance_only) comes from the
base settings. Settings given explicitly (a CLI flag, a keyword here) override the
preset's value::

    settings = preset_settings("intense", seed=3)       # intense, with seed 3
    settings = preset_settings("classic")                # == DreamSettings()

Strengths in the descriptions are from ``benchmarks/look.py`` on the offline default
model (mean ``|out - in|`` in ``0..1`` RGB on the shared photos).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .options import options
from .settings import DreamSettings
from .errors import InvalidParameterError, did_you_mean


@dataclass(frozen=True)
class Preset:
    """A documented bundle of :class:`DreamSettings` values.

    Attributes:
        name: what users type (``--preset NAME``, the nodes' ``preset`` widget).
        description: one line saying what the preset looks like.
        values: the :data:`LOOK_FIELDS` where it differs from ``classic`` (the defaults).
    """

    name: str
    description: str
    values: Mapping[str, Any]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "gentle",
            "Soft patterns over a clearly readable scene: fewer, lighter steps (strength about 0.045).",
            {"learning_rate": 0.006, "num_iterations": 8},
        ),
        Preset(
            "classic",
            "The defaults: creatures and patterns in the picture's own colours, the scene still readable, "
            "no colour static (strength about 0.08).",
            {},
        ),
        Preset(
            "intense",
            "Crowded, vivid and more of the network's own colours: larger steps, one more octave, less colour "
            "decorrelation (strength about 0.12).",
            {"learning_rate": 0.014, "num_octaves": 5, "num_iterations": 12, "colour_decorrelation": 0.3},
        ),
        Preset(
            "legacy",
            "The step of earlier versions: per-pixel RGB gradient, crisp but covered in fine colour speckle "
            "(strength about 0.11).",
            {"step_rule": "plain", "colour_decorrelation": 0.0, "learning_rate": 0.02},
        ),
    )
}
DEFAULT_PRESET = "classic"

_FIELDS = {f.name for f in fields(DreamSettings)}

#: The fields a preset decides (declared ``look``, :mod:`dream_core.options`); the others always come from the
#: base settings.
LOOK_FIELDS = tuple(name for name, option in options(DreamSettings).items() if option.look)


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        InvalidParameterError: unknown name (with close matches and the list).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidParameterError(
            f"Unknown preset {name!r}.{did_you_mean(name, PRESETS)} Presets: {', '.join(PRESETS)}."
        ) from None


def preset_settings(name: str = DEFAULT_PRESET, base: DreamSettings = DreamSettings(), **overrides: Any) -> DreamSettings:
    """``base`` with preset ``name``'s look (:data:`LOOK_FIELDS`), then ``overrides`` (explicit settings win).

    Raises:
        InvalidParameterError: unknown preset, an override that is not a
            ``DreamSettings`` field, or a resulting value out of range.
    """
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise InvalidParameterError(
            f"Not dream settings: {', '.join(unknown)}. Valid names: {', '.join(sorted(_FIELDS))}."
        )
    settings = base.with_(**preset_look(name)).with_(**overrides)
    settings.validate()
    return settings


def preset_look(name: str) -> dict[str, Any]:
    """Every :data:`LOOK_FIELDS` value of preset ``name`` (for help texts and UIs)."""
    classic = DreamSettings()
    look = {f: getattr(classic, f) for f in LOOK_FIELDS}
    look.update(get_preset(name).values)
    return look
