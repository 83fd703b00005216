"""Whether a dream runs the execution copy: a choice made per call, with a default from the environment.

The dream loop normally runs a rewritten copy of the network (see
:mod:`dream_core.fastpath`). Each dream decides for itself through
``DreamSettings.fast_path``: ``True`` runs the copy, ``False`` runs ``model.net``
as loaded (debugging, comparison; the command line's ``--no-fast-path``), and
``None`` (the default) reads the environment variable ``DEEPDREAM_FAST_PATH``
at that moment: ``0``, ``false``, ``off`` or ``no`` turn the copy off; unset or
anything else leaves it on. There is no process-wide switch: two dreams in one
process (two ComfyUI nodes) can choose differently, and nothing needs resetting.
"""

from __future__ import annotations

import os
from typing import Optional

#: Environment variable giving the default; ``0``/``false``/``off``/``no`` turn the fast path off.
ENV_VAR = "DEEPDREAM_FAST_PATH"

_OFF_WORDS = frozenset({"0", "false", "off", "no"})


def default_enabled() -> bool:
    """The default choice: ``True`` unless :data:`ENV_VAR` says off (read at every call, never cached)."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF_WORDS


def use_fast_path(choice: Optional[bool]) -> bool:
    """``choice`` when given (``True``/``False``), else :func:`default_enabled`."""
    return default_enabled() if choice is None else bool(choice)
