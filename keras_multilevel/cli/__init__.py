"""The ``keras-multilevel`` command line: long jobs behind one entry point.

Inside the package (``python -m keras_multilevel`` runs it too), whose root
imports lazily: parsing arguments, ``--help`` and ``--version`` import
neither TensorFlow nor Keras. Each sub-command imports TensorFlow, Keras and
the rest of the library inside the function that runs it (its ``func``,
which returns an exit code). The command owns its process, so :func:`main`
keeps TensorFlow's C++ start-up logging out of the user's face (the library
itself leaves the process alone). The sub-commands:

- ``demo`` (:mod:`.surrogate`): a zoo preset's U-Net grown coarse to fine against one level, to a target accuracy,
- ``bench circles`` (:mod:`.comparison`, training in :mod:`.circles`): single- vs multilevel training,
- ``datasets`` (registered by :mod:`keras_multilevel.pde.cli`),
- ``zoo`` (:mod:`.zoo`).

Every command that reads or writes PDE data takes the folder as
``--data-dir``, by default TFDS' data folder, the one
``kml.datasets.load`` uses. Whichever command meets them, three conditions
of that folder are one line on stderr and an exit status (:func:`main`):
another run holding the data set (``locks.Busy``) exits with 75, a full disk
during generation (``generation.DiskFull``, which says what is kept and how to
resume) with 74, a file planted there that the library refuses to write
through (``files.UnsafeFile``) with 1.
"""

import argparse
import importlib.metadata
import os
import sys

BUSY = 75  # another run holds the data set (EX_TEMPFAIL: try again later)
DISK_FULL = 74  # the disk filled up while a data set was generated (EX_IOERR)
UNSAFE = 1  # a file in the data folder the library refuses to write through
UNAVAILABLE = 69  # a part of the library this installation lacks (EX_UNAVAILABLE), e.g. the data sets' extra

# The Keras backends the command line runs on: its commands train and evaluate with the multilevel
# optimizer, which is TensorFlow code (under other backends only kml.datasets and kml.zoo import).
BACKENDS = ("tensorflow",)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in ``--help``, except ``None`` and ``False`` (the help text says what they mean)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; its sub-parsers are ``Parser`` s too."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser():
    """The parser of every sub-command (imports neither TensorFlow nor Keras)."""
    from keras_multilevel.pde import cli as datasets_cli

    from . import comparison, zoo

    parser = Parser(
        prog="keras-multilevel",
        description="Multilevel training for Keras: demo, benchmarks, PDE datasets, model zoo.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('keras-multilevel')}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    comparison.register(commands)
    datasets_cli.register(commands)
    zoo.register(commands)
    return parser


def check_backend():
    """``None`` when ``KERAS_BACKEND`` is unset or supported, else the one-line error to print."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None or backend in BACKENDS:
        return None
    return (
        f"keras-multilevel: error: KERAS_BACKEND={backend!r} is not supported; keras-multilevel runs on "
        f"{', '.join(BACKENDS)}: set KERAS_BACKEND=tensorflow or unset it."
    )


def _import_tensorflow_quietly():
    """Imports TensorFlow with ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it, and with the C-level stderr
    silenced meanwhile: absl's "All log messages before absl::InitializeLog()" and the oneDNN notice, which no
    environment variable silences (Python errors still raise). Only the command line does this; it owns its process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass  # the command that needs it says so
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the sub-command; returns its exit code.

    A ``KERAS_BACKEND`` other than those in :data:`BACKENDS` exits with 2
    and a one-line error before anything is imported; a data set held by
    another run exits with :data:`BUSY`, a full disk during generation with
    :data:`DISK_FULL` and an unsafe file in the data folder with
    :data:`UNSAFE` and a part of the library this installation lacks (the data sets without
    their extra) with :data:`UNAVAILABLE`, each with a one-line error, whatever the command.
    """
    args = build_parser().parse_args(argv)
    error = check_backend()
    if error:
        print(error, file=sys.stderr)
        return 2
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # not whatever ~/.keras/keras.json says: the commands need it
    from keras_multilevel.pde import files, generation, locks  # after parsing: generation imports NumPy

    _import_tensorflow_quietly()  # every command runs TensorFlow code

    statuses = {locks.Busy: BUSY, generation.DiskFull: DISK_FULL, files.UnsafeFile: UNSAFE}
    try:
        return args.func(args)
    except tuple(statuses) as error:
        print(f"keras-multilevel {args.command}: error: {error}", file=sys.stderr)
        return next(status for kind, status in statuses.items() if isinstance(error, kind))
    except ImportError as error:
        if not getattr(error, "unavailable", False):
            raise
        print(f"keras-multilevel {args.command}: error: {error}", file=sys.stderr)
        return UNAVAILABLE
