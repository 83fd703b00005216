"""dream_core.allocator: glibc malloc tuning for long CPU dreams."""

import platform

from dream_core.allocator import keep_freed_memory


def test_keep_freed_memory_applies_on_glibc():
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected
