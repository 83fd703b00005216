"""Import the repository root as the ComfyUI node pack, the way ComfyUI does.

ComfyUI loads ``custom_nodes/<folder>/__init__.py`` as a package, so the pack's
modules import each other (and ``dream_core``) relatively. Tests do the same
under the fixed name :data:`PACK_NAME`; the pack's ``dream_core`` is then
``deepdream_video_pack.dream_core``, a separate module from the top-level
``dream_core`` other tests import, so node tests take every core class and
error type from :func:`load_pack` too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_NAME = "deepdream_video_pack"
ROOT = Path(__file__).resolve().parents[1]


def load_pack() -> ModuleType:
    """The pack package (imported once per process)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_NAME]
        raise
    return module
