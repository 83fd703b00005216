"""DeepDream Settings: the less-used dream and video settings, as one input for the dream nodes."""

from __future__ import annotations

from typing import Any

from .common import CATEGORY, SETTINGS, SETTINGS_TYPE, explained, merge_settings, setting_inputs

#: The settings every dream node shows itself (with ``preset``): the Settings node leaves them out.
EVERYDAY = ("learning_rate", "seed", "mode")


def settings_inputs() -> dict[str, tuple]:
    """The Settings node's widgets: every dream and video setting but :data:`EVERYDAY`, in the core's order."""
    return setting_inputs(*(name for name in SETTINGS if name not in EVERYDAY))


class DDVSettings:
    """The advanced settings as a ``DEEPDREAM_SETTINGS`` dict; the dream nodes merge it with
    :func:`~.common.merge_settings` (it wins over their own widgets)."""

    DESCRIPTION = (
        "The less-used settings of DeepDream Image, Video and Zoom Animation: octaves, iterations, jitter, "
        "smoothing, the step rule, tiles, precision, and the video mode's carry, temporal weight and occlusion "
        "feather. Connect 'settings' to a dream node's 'settings' input; without it the nodes use these defaults. "
        "A named preset on the dream node decides the look settings (octaves, iterations, smoothing, step rule, "
        "colour decorrelation, Laplacian levels); its 'custom' runs them as set here."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SETTINGS_TYPE,)
    RETURN_NAMES = ("settings",)
    OUTPUT_TOOLTIPS = ("Setting name -> value, for the 'settings' input of the DeepDream dream nodes.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": settings_inputs()}

    @explained
    def build(self, **widgets: Any) -> tuple[dict[str, Any]]:
        merge_settings({}, widgets)  # each value in range, tile_overlap below half tile_size: checked here
        return (dict(widgets),)
