"""Small facts about file paths that several front ends and writers need."""

from __future__ import annotations

import os
from pathlib import Path


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (the same path once resolved, or the same file on disk)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
