"""``python -m dream_core`` entry point."""

import sys

from .cli import main

sys.exit(main(prog="python -m dream_core"))
