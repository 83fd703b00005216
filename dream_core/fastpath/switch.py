"""The one switch that turns the execution copy off, for debugging and for comparison.

The dream loop normally runs a rewritten copy of the network (see
:mod:`dream_core.fastpath`). With the switch off, ``FeatureHooks(...,
optimize=True)`` runs ``model.net`` itself, exactly as ``optimize=False`` does.

The switch is process-wide. It starts from the environment variable
``DEEPDREAM_FAST_PATH`` (``0``, ``false``, ``off`` or ``no`` turn it off; unset
or anything else leaves it on), read once at import; :func:`set_enabled` changes
it and :func:`disabled` turns it off for a ``with`` block. The command line's
``--no-fast-path`` flag calls ``set_enabled(False)``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

#: Environment variable read at import; ``0``/``false``/``off``/``no`` turn the fast path off.
ENV_VAR = "DEEPDREAM_FAST_PATH"

_OFF_WORDS = frozenset({"0", "false", "off", "no"})
_state = {"enabled": os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF_WORDS}


def enabled() -> bool:
    """Whether the dream loop runs the execution copy (``True`` unless switched off)."""
    return _state["enabled"]


def set_enabled(value: bool) -> None:
    """Turn the execution copy on or off for the whole process."""
    _state["enabled"] = bool(value)


@contextmanager
def disabled() -> Iterator[None]:
    """Run the plain network inside the block; restores the previous setting on exit."""
    before = enabled()
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)
