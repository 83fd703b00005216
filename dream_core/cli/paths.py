"""No file of a run may overwrite another's: the output and its work folder against every input flag.

:func:`check_distinct_paths` runs before any work in every command that writes a file: the output must not be
the ``--mask``, ``--guide``, ``--start-image`` or a weights file (the input itself is checked by the output
checks), and no input may lie in the output's work folder, which is removed when the run finishes.
:func:`output_key` is how two outputs that do not exist yet are compared (``batch``): case-folded where the
folder's disk ignores case (:func:`ignores_case`: macOS and Windows disks), so ``B.mp4`` and ``b.mp4`` are one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterator

from ..errors import InvalidParameterError
from ..paths import same_file
from ..video.journal import WORK_SUFFIX

#: The flags (argparse dests) that name files a run reads, and how the messages name them.
INPUT_FLAGS = {"input": "input", "mask": "--mask", "guide": "--guide", "start_image": "--start-image",
               "weights": "--weights", "flow_weights": "--flow-weights"}


def given_inputs(args: argparse.Namespace) -> Iterator[tuple[str, Path]]:
    """``(flag, absolute path)`` of every input file the flags name."""
    for dest, flag in INPUT_FLAGS.items():
        value = getattr(args, dest, None)
        if value:
            yield flag, Path(value).expanduser().absolute()


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every file flag (:data:`INPUT_FLAGS`) and the output as absolute paths: what Ray workers,
    whose working folder is not the driver's, are given."""
    paths = {dest: str(Path(getattr(args, dest)).expanduser().absolute())
             for dest in (*INPUT_FLAGS, "output") if getattr(args, dest, None)}
    return argparse.Namespace(**{**vars(args), **paths})


def ignores_case(folder: Path) -> bool:
    """Whether the disk of ``folder`` (which exists and is writable) takes ``A`` and ``a`` for one name: a
    probe file is made and looked up with its case swapped."""
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".dream-case-probe-") as probe:
        name = Path(probe.name).name
        return (folder / name.swapcase()).exists()


def output_key(path: Path, fold_case: bool) -> str:
    """What two outputs are compared by: the absolute path, case-folded when ``fold_case``."""
    key = os.path.normcase(str(path.expanduser().absolute()))
    return key.casefold() if fold_case else key


def check_distinct_paths(args: argparse.Namespace, output: Path | None = None) -> None:
    """Refuse, before any work, an output (``args.output`` or ``output``) that is one of the run's input files,
    or a work folder that holds one.

    Raises:
        InvalidParameterError: naming the two (``parameter="output"``).
    """
    target = output if output is not None else getattr(args, "output", None)
    if not target:
        return
    out = Path(target).expanduser().absolute()
    work = out.with_name(out.name + WORK_SUFFIX)
    for flag, path in given_inputs(args):
        if same_file(out, path):  # a case-insensitive disk: the same file once either exists
            raise InvalidParameterError(
                f"The output '{out}' is the {flag} file; the run would overwrite it. Choose another output name.",
                parameter="output",
            )
        if path.resolve().is_relative_to(work.resolve()):
            raise InvalidParameterError(
                f"The {flag} file '{path}' lies in '{work}', the work folder of the output, which is removed when "
                "the run finishes. Move it elsewhere or choose another output name.", parameter="output",
            )
