"""Checksums of the TFDS records: sealed when written, verified whenever they are loaded.

TFDS writes a data set's version folder (``dataset_info.json``,
``features.json``, one ``<name>-<split>.tfrecord-…`` file per shard) but
never checks it again: a truncated or altered record file used to fail only
mid-epoch (``DataLossError``), a damaged ``dataset_info.json`` when the
builder was made. :func:`seal` runs once the records are written: it reads
every record back (TFRecord's CRCs), checks the number of examples of each
split, rewrites each record with a deterministic serialization (TFDS
serializes the ``tf.train.Example`` feature map in an order that changes from
process to process; the same map in key order makes the files byte-identical
between two runs of the same data set) and writes :data:`MANIFEST`, the
SHA-256 of every file (its temporary files are opened by
:func:`.files.open_owned`, never through a planted link). :func:`check` compares the folder with its manifest;
any difference (a file missing, altered or truncated, the manifest missing or
unreadable) is a reason to rewrite the records, which
``kml.datasets.prepare`` gives and acts on.
"""

import hashlib
import json
import os
import pathlib

from . import files

MANIFEST = "kml-sha256.json"
_RECORDS = "*.tfrecord-*"


class Damaged(RuntimeError):
    """Records that do not read back as the data set they should hold."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder):
    """``None`` when the version folder ``folder`` matches its manifest, else what is wrong (a sentence)."""
    folder = pathlib.Path(folder)
    try:
        listed = json.loads((folder / MANIFEST).read_text())["sha256"]
    except FileNotFoundError:
        return f"{folder} has no {MANIFEST} (written by an older version, or interrupted as it finished)"
    except (ValueError, KeyError, TypeError) as error:
        return f"{folder / MANIFEST} is unreadable ({type(error).__name__})"
    for name, expected in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if _sha256(path) != expected:
            return f"{path} does not match its checksum (truncated or altered)"
    return None


def digest(folder):
    """One SHA-256 for the whole data set: of its manifest (every file's SHA-256, in name order)."""
    return _sha256(pathlib.Path(folder) / MANIFEST)


def seal(folder, split_sizes):
    """Verifies freshly written records, makes them byte-reproducible and writes the manifest.

    Args:
        folder: TFDS' version folder of the data set.
        split_sizes: ``{split: number of examples}`` the records must hold.

    Raises:
        Damaged: a record does not read back (bad CRC, truncated) or a
            split does not hold its number of examples.
    """
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    folder = pathlib.Path(folder)
    counts = dict.fromkeys(split_sizes, 0)
    for path in sorted(path for path in folder.glob(_RECORDS) if not path.name.startswith(".")):
        split = path.name.split(".tfrecord-")[0].rsplit("-", 1)[1]
        temporary = path.with_name(f".{path.name}.canonical")
        os.close(files.open_owned(temporary, truncate=True))  # a planted link is refused before TensorFlow opens it
        try:
            with tf.io.TFRecordWriter(str(temporary)) as writer:
                for record in tf.data.TFRecordDataset(str(path)):
                    example = example_pb2.Example.FromString(record.numpy())
                    writer.write(example.SerializeToString(deterministic=True))
                    counts[split] += 1
        except tf.errors.DataLossError as error:
            temporary.unlink(missing_ok=True)
            raise Damaged(f"{path} does not read back as written ({error.message})") from None
        os.replace(temporary, path)
    if counts != split_sizes:
        raise Damaged(f"{folder} holds {counts} examples per split instead of {split_sizes}")
    hashed = sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")
                    and path.name != MANIFEST)
    manifest = json.dumps({"sha256": {path.name: _sha256(path) for path in hashed}}, indent=1, sort_keys=True)
    temporary = folder / f".{MANIFEST}.tmp"
    with open(temporary, "w", opener=files.opener) as file:
        file.write(manifest + "\n")
    os.replace(temporary, folder / MANIFEST)
