"""Private modes for the files socd keeps: files 0640, folders 0750, whatever the umask.

Under the systemd unit ``UMask=0077`` keeps socd's files private, but run by hand (umask
022, a container, a test) SQLite, ``open()`` and ``os.makedirs`` would create world-
readable stores of alerts, notes and exchange logs. Every store, queue, spool, dead-letter
file, audit anchor and sink file is therefore created through these helpers, with an
explicit mode the umask can only narrow. A file found with a looser mode (copied in, or
written by an earlier version) is tightened when socd opens it, and that is logged once
per file and process. Existing folders are left alone: they may be the operator's (an
absolute sink path), and socd only narrows what it owns.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import IO, Final

from socd.log import get_logger

log = get_logger("socd.filemode")

FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750

_reported: set[str] = set()
_reported_lock = threading.Lock()


def _first_report(path: str) -> bool:
    with _reported_lock:
        if path in _reported:
            return False
        _reported.add(path)
        return True


def ensure_dir(path: str) -> None:
    """Create ``path`` and any missing parent as 0750 folders (existing ones untouched).

    ``os.makedirs(mode=...)`` applies the mode to the last folder only; the parents it
    creates get 0777 minus the umask."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        ensure_dir(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def tighten(path: str) -> None:
    """Remove the permission bits beyond 0640 from an existing file (no-op if missing).

    A file socd cannot chmod (owned by someone else) is reported, not an error: the store
    still opens, and the operator learns why its mode stayed."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if not mode & ~FILE_MODE:
        return
    narrowed = mode & FILE_MODE
    try:
        os.chmod(path, narrowed)
    except OSError as exc:
        if _first_report(path):
            log.warning("file mode too loose and cannot be changed", path=path,
                        mode=f"{mode:04o}", error=str(exc))
        return
    if _first_report(path):
        log.warning("file mode tightened", path=path, mode_was=f"{mode:04o}",
                    mode=f"{narrowed:04o}")


def create_private(path: str) -> None:
    """Make sure ``path`` exists as a private file: created 0640 (its folder 0750) when
    missing, tightened when it exists with a looser mode."""
    ensure_dir(os.path.dirname(os.path.abspath(path)))
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        tighten(path)


def open_private(path: str, *, append: bool = True) -> IO[bytes]:
    """A binary file opened for appending (or truncated), created 0640 in a 0750 folder;
    an existing file with a looser mode is tightened first."""
    ensure_dir(os.path.dirname(os.path.abspath(path)))
    tighten(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, "ab" if append else "wb")
