"""One run at a time per data set: an exclusive lock on a file in the data set's folder.

The TFDS records of a config are written by one process: two runs writing
the same config at once used to collide on TFDS' final rename (a
``FileExistsError``). :func:`holding` takes an exclusive, non-blocking
``flock`` on ``<data_dir>/<name>/<config>/.lock`` (the folder that holds the
version folder) and writes the holder's host and pid into it; a second run
gets :class:`Busy`, whose message names the holder. The kernel drops the lock
when its process ends, however it ends (a ``kill -9`` included), so a stale
lock file is harmless and is never deleted. The lock file is opened by
:func:`.files.open_owned`: a symbolic link planted there, or a file of another
user, is refused (:class:`~.files.UnsafeFile`) and never written. The lock is reentrant within a
process (the command holds it while it generates, then prepares the records,
which takes it again). ``flock`` locks are local to a host on most network
file systems: runs on two hosts sharing a folder are not kept apart.
"""

import contextlib
import fcntl
import os
import pathlib
import socket

from . import files

LOCK_NAME = ".lock"
_held = set()  # lock paths held by this process


class Busy(RuntimeError):
    """Another run holds the data set's lock."""


def dataset_folder(data_dir):
    """The folder a data set's lock lives in: the parent of TFDS' version folder ``data_dir``."""
    return pathlib.Path(data_dir).parent


@contextlib.contextmanager
def holding(folder):
    """Holds the exclusive lock of the data set in ``folder`` (created if missing).

    Raises :class:`Busy` when another run holds it, :class:`~.files.UnsafeFile`
    when the lock file is a symbolic link, not a regular file or another user's.
    """
    path = pathlib.Path(folder) / LOCK_NAME
    if path in _held:  # this process holds it already (the outer holder releases it)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = files.open_owned(path)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise Busy(
            f"another run ({holder}) is writing the data set in {path.parent}: wait until it ends, or stop it, "
            "then run this again"
        ) from None
    os.ftruncate(descriptor, 0)  # a verified file of ours, locked by us
    os.pwrite(descriptor, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
    _held.add(path)
    try:
        yield
    finally:
        _held.discard(path)
        os.close(descriptor)  # releases the flock
