"""Opening the files a run creates in folders that other users may write to, never through a link.

A data folder can be shared (a group's ``$TFDS_DATA_DIR``, a scratch
space): another user who can write there can plant ``.lock ->
~/thesis.tex`` before a run opens its lock, its write probe or a temporary
file, and a plain ``open(path, "w")`` would empty the victim's file.
:func:`open_owned` opens without following a symbolic link
(``O_NOFOLLOW``), checks with ``fstat`` that what it opened is a regular
file of the current user, and only then empties it if asked; anything else
is an :class:`UnsafeFile` naming the path and how to fix it, and nothing was
written. Only the last component is checked: the folders above are the
caller's to choose.
"""

import errno
import os
import stat


class UnsafeFile(PermissionError):
    """A file to be written is a symbolic link, not a regular file, or another user's."""


def _refuse(path, problem):
    return UnsafeFile(
        f"{path} {problem}: refusing to write through it (another user who can write to {os.path.dirname(path)} may "
        "have planted it); remove it if it is yours to remove, or use a folder only you can write to"
    )


def open_owned(path, truncate=False):
    """The descriptor of ``path`` opened for reading and writing, created (mode 0o644) if missing.

    Args:
        path: the file; a symbolic link there is refused, not followed.
        truncate: empty the file, after the checks.

    Raises:
        UnsafeFile: ``path`` is a symbolic link, not a regular file, or
            owned by another user (nothing was written to it).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO cannot hang us
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _refuse(path, "is a symbolic link") from None
        if error.errno == errno.EISDIR:
            raise _refuse(path, "is a folder, not a regular file") from None
        raise
    status = os.fstat(descriptor)
    problem = None
    if not stat.S_ISREG(status.st_mode):
        problem = "is not a regular file"
    elif status.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {status.st_uid}, you are uid {os.geteuid()})"
    if problem is not None:
        os.close(descriptor)
        raise _refuse(path, problem)
    os.set_blocking(descriptor, True)
    if truncate:
        os.ftruncate(descriptor, 0)
    return descriptor


def opener(path, flags):
    """An ``opener`` for :func:`open` in mode ``"w"``, ``"wb"`` or ``"w+"``: :func:`open_owned`, emptied (``flags`` unused)."""
    return open_owned(path, truncate=True)
