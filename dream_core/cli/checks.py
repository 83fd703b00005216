"""Checks every command runs before any work, and what the command line says about the machine and interrupts.

Kept apart from :mod:`.args` (the flags) so each command calls them with one line:
:func:`check_run_arguments` (the device), :func:`warn_if_busy` (other work on the
CPU cores), :func:`interrupted_message` (how to continue a stopped run).
:data:`REMEDIES` adds the flags of the core parameters these checks raise about.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..devices import check_device
from ..video.journal import WORK_SUFFIX

log = logging.getLogger("dream_core")

#: Core parameter -> the command line's remedy, for parameters :data:`.args.REMEDIES` does not name.
REMEDIES = {
    "device": "Set it with --device (cpu, cuda, cuda:N, mps), or leave it out to use a GPU when there is one.",
    "guide": "Give another image with --guide.",
    "ray_address": "Set it with --ray-address, or leave it out to start a local Ray runtime.",
}

#: A 1-minute load average this far above zero counts as other work on the machine.
_BUSY_LOAD = 0.75


def check_run_arguments(args: argparse.Namespace) -> None:
    """What every dreaming command checks before reading any file: the ``--device`` name.

    Raises:
        InvalidParameterError: a device this machine does not have (``parameter="device"``).
    """
    if getattr(args, "device", None):
        check_device(args.device)


def cpu_load() -> Optional[float]:
    """The 1-minute load average (runnable processes), or ``None`` where the system does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def warn_if_busy(threads: Optional[int], device: Optional[str], load: Callable[[], Optional[float]] = cpu_load) -> bool:
    """Say once, at the start, when other work already keeps the CPU cores busy.

    torch starts one thread per core; when other processes hold some of those
    cores, its threads wait for each other at every operator and a dream can be
    several times slower than with fewer threads. Only for CPU runs with the
    default thread count (``--threads`` not given).

    Returns:
        Whether the notice was given.
    """
    if threads is not None or (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith(("cuda", "mps")):
        return False
    busy = load()
    cores = os.cpu_count() or 1
    if busy is None or busy < _BUSY_LOAD or busy + torch.get_num_threads() <= cores + 0.5:
        return False
    free = max(1, cores - round(busy))
    log.warning(
        "Other work keeps this machine's CPU busy (load %.1f on %d cores): torch's %d threads would compete with it "
        "and can be several times slower. Add --threads %d for this run.", busy, cores, torch.get_num_threads(), free,
    )
    return True


def interrupted_message(args: argparse.Namespace, argv: Sequence[str], prog: str) -> str:
    """What the command line says after Ctrl-C: for a resumable command, where the work is and how to continue."""
    return "Interrupted." + _resume_hint(args, argv, prog, "to continue from there")


def filesystem_message(exc: OSError, args: argparse.Namespace, argv: Sequence[str], prog: str) -> str:
    """What the command line says when the file system refuses a read or write mid-run (a full disk, a folder
    made read-only, a disk unmounted): what failed, what to check, and for a resumable command how to go on."""
    where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
    if isinstance(exc, ConnectionError):
        what = f"A connection failed{where}: {exc.strerror or exc}. Check the network and the Ray cluster."
    else:
        what = (f"The file system refused{where}: {exc.strerror or exc}. Check the free space, the permissions and "
                "that the disk is still there.")
    return what + _resume_hint(args, argv, prog, "once that is fixed, to continue")


def _resume_hint(args: argparse.Namespace, argv: Sequence[str], prog: str, when: str) -> str:
    output = getattr(args, "output", None)
    if output is None or not hasattr(args, "no_resume"):
        return ""
    work = Path(output).with_name(Path(output).name + WORK_SUFFIX)
    again = [a for a in argv if a != "--no-resume"]
    return f" The frames finished so far are kept in '{work}'; {when}, run the same command again: {prog} {shlex.join(again)}"
