"""One process per folder: a training run's folder, or an edition runner's runs folder.

Two ``python -m coded_lib.train`` on one ``--run-dir`` would both train every epoch and overwrite
each other's checkpoints; the second one must refuse at once and say who holds the folder. The lock
is ``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when its process ends, however it
ends, so a lock left by a killed process never blocks the next start (a pid file alone would). The
file holds the holder's process id and what it does, for the message. Where ``fcntl`` does not exist (Windows) the
folder is not locked.
"""
from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"


class FolderBusy(RuntimeError):
    """Another living process holds the folder."""


class FolderLock:
    """``with FolderLock(folder, "training"):`` holds ``folder`` for this process, or raises FolderBusy."""

    def __init__(self, folder, what: str = "a process"):
        self.folder, self.what, self._file = Path(folder), what, None

    def __enter__(self) -> "FolderLock":
        if fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        f = open(self.folder / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, _, what = f.read().strip().partition(" ")
            f.close()
            raise FolderBusy(f"{self.folder} is in use by process {pid or 'unknown'} ({what or 'unknown'}); wait for "
                             f"it to end, or stop it (kill {pid}) and run the same command again to resume") from None
        f.truncate(0)
        f.write(f"{os.getpid()} {self.what}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.truncate(0)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
