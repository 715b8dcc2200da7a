"""Shard files: a range of examples, written atomically, with a checksum.

A shard holds examples ``start <= index < stop`` as one NumPy structured
array (the record of :mod:`.problems`). File layout: the 8-byte magic
``KMLSHRD1``, the 32-byte SHA-256 of the payload, then the payload, the
``.npy`` serialization of the array (no timestamps: the same examples give
the same bytes). It is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the final name (``os.replace`` is
atomic on POSIX), so a killed writer leaves either no shard or a whole one;
the temporary file is opened by :func:`.files.open_owned` (never through a
link another user planted).
:func:`read` re-checks magic, checksum, dtype and indices; any mismatch is a
:class:`CorruptShard`, which the generator answers by regenerating the shard.
"""

import hashlib
import io
import os
import pathlib
import socket

import numpy as np

from . import files

MAGIC = b"KMLSHRD1"
SUFFIX = ".shard"
TEMPORARY = ".tmp"  # a shard being written: .<name><TEMPORARY>-<host>-<pid>


class CorruptShard(Exception):
    """A shard file that is truncated, altered or not the expected examples."""


def name(start, stop):
    """File name of the shard holding examples ``start <= index < stop``."""
    return f"examples-{start:08d}-{stop:08d}{SUFFIX}"


def write(path, records):
    """Writes ``records`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = pathlib.Path(path)
    buffer = io.BytesIO()
    np.save(buffer, records, allow_pickle=False)
    payload = buffer.getvalue()
    temporary = path.with_name(owned_name(f".{path.name}{TEMPORARY}"))
    file = open(temporary, "wb", opener=files.opener)  # refuses, and leaves, a link planted at the name
    try:
        with file:
            file.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # a full disk or an interrupt: the partial file, ours, would only take space
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def owned_name(stem):
    """``<stem>-<host>-<pid>``: the name of a file that this process, on this host, owns while it runs."""
    return f"{stem}-{socket.gethostname()}-{os.getpid()}"


def remove_orphans(directory, stem_pattern):
    """Deletes the files ``<stem>-<host>-<pid>`` (:func:`owned_name`) of this host whose process is gone.

    ``stem_pattern`` is a glob of the stems (``".*.shard.tmp"``: the temporary
    files of killed shard writers; ``".worker-*.log"``: the logs of killed
    generation workers). Files of other hosts and of live processes are kept.
    """
    for orphan in pathlib.Path(directory).glob(f"{stem_pattern}-{socket.gethostname()}-*"):
        pid = int(orphan.name.rsplit("-", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            orphan.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def read(path, dtype, start, stop):
    """The verified records of a shard; raises :class:`CorruptShard` on any mismatch."""
    data = pathlib.Path(path).read_bytes()
    if data[: len(MAGIC)] != MAGIC:
        raise CorruptShard(f"{path}: not a shard file (bad magic)")
    digest, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptShard(f"{path}: checksum mismatch (truncated or altered)")
    try:
        records = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError as error:
        raise CorruptShard(f"{path}: unreadable payload ({error})") from None
    if records.dtype != dtype or not np.array_equal(records["index"], np.arange(start, stop)):
        raise CorruptShard(f"{path}: not the examples {start}..{stop - 1} of this data set")
    return records
