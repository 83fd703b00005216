"""Named bundles of dream settings: ``gentle``, ``classic`` (the defaults), ``intense``, ``legacy``.

A preset fixes some :class:`~dream_core.dream.DreamSettings` fields; everything it
does not name keeps the default, and settings given explicitly (a CLI flag, a node
widget moved off its default, a keyword here) override the preset's value::

    settings = preset_settings("intense", seed=3)       # intense, with seed 3
    settings = preset_settings("classic")                # == DreamSettings()

Figures in the descriptions are from ``benchmarks/look.py`` on the offline default
model (mean ``|out - in|`` in ``0..1`` RGB on the shared photos).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .dream import DreamSettings
from .errors import InvalidParameterError, did_you_mean


@dataclass(frozen=True)
class Preset:
    """A documented bundle of :class:`DreamSettings` values.

    Attributes:
        name: what users type (``--preset NAME``, the nodes' ``preset`` widget).
        description: one line saying what the preset looks like.
        values: ``DreamSettings`` field -> value; fields not named keep their defaults.
    """

    name: str
    description: str
    values: Mapping[str, Any]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "gentle",
            "Soft patterns over a clearly readable scene: fewer, lighter steps (strength about 0.05).",
            {"learning_rate": 0.007, "num_iterations": 8},
        ),
        Preset(
            "classic",
            "The defaults: creatures and patterns in the picture's own colours, the scene still readable, "
            "no colour static (strength about 0.07).",
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
    """``base`` with preset ``name``'s values, then ``overrides`` (explicit settings win).

    Raises:
        InvalidParameterError: unknown preset, an override that is not a
            ``DreamSettings`` field, or a resulting value out of range.
    """
    preset = get_preset(name)
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise InvalidParameterError(
            f"Not dream settings: {', '.join(unknown)}. Valid names: {', '.join(sorted(_FIELDS))}."
        )
    settings = base.with_(**preset.values).with_(**overrides)
    settings.validate()
    return settings


def preset_values(name: str) -> dict[str, Any]:
    """Every ``DreamSettings`` field's value under preset ``name`` (for help texts and UIs)."""
    settings = preset_settings(name)
    return {f: getattr(settings, f) for f in sorted(_FIELDS)}
