"""The run folder: its path checked before anything is written, then held by one run at a time.

A run holds RUN_DIR/.lock with an exclusive fcntl.flock for its whole life; the kernel releases it when the
process ends in any way (SIGKILL included), so a killed run never leaves a stale lock to clear by hand. The lock
file itself stays: removing it would let a third run lock a new inode while a second still holds the old one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import RunDirError


def check_folder(path: Path, what: str) -> None:
    """Raise RunDirError unless folder `path` exists writable, or can be created: every name fits the file
    system (NAME_MAX), every existing ancestor is a folder, and the nearest existing one is writable. Writes
    nothing. `what` names the role in the message ("output folder", "cache folder")."""
    path = Path(os.path.abspath(path))
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise RunDirError(f"{what} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"{what} {path}: {existing} is a file, expected a folder")
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    for part in path.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise RunDirError(f"{what} {path}: the name {part[:40]}... is {len(os.fsencode(part))} bytes, longer than this file system allows ({name_max}); shorten run.name or run.output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"{what} {path}: {existing} is not writable" + (" (read-only file system)" if _read_only_fs(existing) else ""))


def check_file(path: Path, what: str) -> None:
    """Raise RunDirError unless a file can be written at `path`: not a folder, and its folder exists writable
    or can be created (check_folder). Writes nothing."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        raise RunDirError(f"{what} {path}: is a folder, expected a file")
    check_folder(path.parent, what)


def _read_only_fs(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


@contextmanager
def hold(run_dir: Path) -> Iterator[Path]:
    """Create `run_dir` and hold it exclusively until the block ends.

    Raises RunDirError("another run is writing RUN_DIR") at once when another process holds it, or naming the
    path and the OS's reason when it cannot be created or locked."""
    lock_path = Path(run_dir) / ".lock"
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunDirError(f"output folder {run_dir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirError(f"another run is writing {run_dir} (it holds {lock_path}); wait for it or set another run.output_dir") from None
            raise RunDirError(f"output folder {run_dir}: cannot lock {lock_path}: {exc.strerror or exc}") from None
        yield Path(run_dir)
    finally:
        os.close(fd)  # releases the lock
