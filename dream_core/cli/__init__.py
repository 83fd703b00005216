"""The command line: ``deepdream-video`` or ``python -m dream_core`` with ``image``, ``video``, ``demo``.

:mod:`.main` parses and runs; :mod:`.args` holds the shared flags and the
remedies added to core errors; :mod:`.image`, :mod:`.video` and :mod:`.demo`
are the commands.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
