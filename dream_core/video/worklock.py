"""One run per work folder: :class:`WorkLock`, an exclusive lock file held for the length of a run.

Two runs writing one output at once would share a work folder: the second
would adopt the first's segments and the first would fail when its files
changed under it. The lock is an OS file lock (``flock`` on POSIX, ``msvcrt``
on Windows) on ``run.lock`` in the work folder: the system drops it when its
process ends however it ends, so a lock left by a crashed or killed run is
never in the way. The file holds the owner's process id and host, for the
message a second run gets.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO, Optional

from ..errors import VideoError

#: The lock file's name inside a work folder.
LOCK_NAME = "run.lock"

try:  # POSIX
    import fcntl

    def _try_lock(fh: IO[str]) -> bool:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fh: IO[str]) -> bool:
        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True


class WorkLock:
    """The exclusive lock on a work folder (``folder/run.lock``); :meth:`acquire` and :meth:`release`.

    Args:
        folder: the work folder (must exist when acquiring).
        output: the output file the folder belongs to, for messages.
    """

    def __init__(self, folder: Path, output: Path) -> None:
        self.path = folder / LOCK_NAME
        self.output = output
        self._fh: Optional[IO[str]] = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        """Take the lock, or refuse because another live run holds it.

        Raises:
            VideoError: another process (or another writer in this one) is writing the same output.
        """
        if self._fh is not None:
            return
        for _ in range(3):  # the file can be replaced between opening and locking it (a run finishing)
            fh = open(self.path, "a+", encoding="utf-8")
            if not _try_lock(fh):
                fh.seek(0)
                owner = fh.read().strip() or "unknown"
                fh.close()
                raise VideoError(
                    f"Another run ({owner}) is writing '{self.output}' right now; its work folder "
                    f"'{self.path.parent}' is locked. Wait for it to finish, or stop it; two runs writing one output "
                    "would mix their frames."
                )
            try:
                same = os.path.samestat(os.fstat(fh.fileno()), os.stat(self.path))
            except OSError:
                same = False
            if same:
                fh.seek(0)
                fh.truncate()
                fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
                fh.flush()
                self._fh = fh
                return
            fh.close()
        raise VideoError(f"Could not lock the work folder '{self.path.parent}': it keeps being replaced.")

    def release(self) -> None:
        """Let the lock go (idempotent); the file stays for the folder's next run."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # closing the file drops the OS lock
