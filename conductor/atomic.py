"""Writing a small file whole or not at all: written aside, then renamed (or linked) into place.

A reader of the target sees the old content or the new, never a torn file, and a writer killed
at any point (``kill -9``) leaves the target as it was plus, at worst, a temporary file named
``TMP_PREFIX<pid>-<random>`` in the same directory. A directory scan skips such names; whoever
serialises the directory's writers removes them (``writer_pid`` tells whose they are).

Without ``durable`` the new content survives ``kill -9`` of any process (it is in the page
cache once the call returns), not a power loss; with it the file and then its directory are
fsynced, so it survives that too. The bus has its own publishing protocol (``conductor.bus``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TMP_PREFIX = ".tmp-"
"""How every temporary file of ``write_atomic`` is named: ``.tmp-<pid>-<random>``."""


def write_atomic(
    path: Path,
    data: str | bytes,
    *,
    mode: int = 0o600,
    replace: bool = True,
    durable: bool = False,
) -> None:
    """Publish ``data`` (text is UTF-8) at ``path`` whole, with permissions ``mode``.

    The temporary file is created beside ``path`` (``O_EXCL|O_NOFOLLOW``, never through a
    symbolic link). ``replace=True`` renames it over ``path``; ``replace=False`` links it
    into place and raises ``FileExistsError`` if ``path`` exists (nothing is overwritten).
    The temporary file is gone when this returns or raises.
    """
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits ``mode`` asks for
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path, follow_symlinks=False)
        if durable:
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def writer_pid(name: str) -> int | None:
    """The pid of the process that made temporary file ``name``; None if it is not one."""
    if not name.startswith(TMP_PREFIX):
        return None
    pid, _, rest = name[len(TMP_PREFIX) :].partition("-")
    return int(pid) if pid.isdigit() and rest else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
