"""The ``keras-multilevel datasets`` command: ``list``, ``generate``, ``show``.

``generate`` runs the sharded FEniCSx generation of :mod:`.generation` (over
``--workers`` processes, and over MPI ranks under ``mpirun -n P``), then
writes the TFDS records (rank 0), so that
``kml.datasets.load(NAME, resolution=N, samples=S, seed=SEED, data_dir=DIR)``
finds them. ``show`` writes a PNG of a few examples, generating them first
if they are missing. Both take the folder as ``--data-dir``, by default
TFDS' data folder (``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``), the
one ``kml.datasets.load`` uses when ``data_dir`` is None: data made by
either is found by the other. Arguments are checked by the same validators
as the Python API; a bad one (or a run too large for the memory) prints an
error naming it and what is allowed, and the command exits with status 2.
Every command exits with 75 when another run holds the data set
(:mod:`.locks`; one line, printed by ``keras_multilevel.cli.main``). Other
exit statuses of ``generate``: 130 / 143 on SIGINT / SIGTERM (one line saying what is
saved and how to resume), 1 when freshly written records do not read back.
TensorFlow is imported only when a command runs.
"""

import contextlib
import pathlib
import signal
import sys

from . import locks, problems


def _integer_or_text(text):
    try:
        return int(text)
    except ValueError:
        return text


def register(commands):
    """Adds the ``datasets`` command to an argparse sub-parsers object."""
    datasets = commands.add_parser("datasets", help="PDE data sets of Ponce et al. (2022, §8) (FEniCSx): list, generate, show")
    actions = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the problems, their default sizes and named configs")
    listing.set_defaults(func=_list)

    generate = actions.add_parser("generate", help="generate a data set (resumable, parallel, MPI-aware)")
    generate.add_argument("name", help="poisson or darcy")
    _add_common(generate)
    generate.add_argument("--workers", type=_integer_or_text, default=1, help="processes on this machine (per MPI rank)")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(func=_generate)

    show = actions.add_parser("show", help="write a PNG of a few examples")
    show.add_argument("name", help="poisson or darcy")
    _add_common(show)
    show.add_argument("--split", default="train", help="train, validation or test")
    show.add_argument("--count", type=_integer_or_text, default=3, help="number of examples to draw")
    show.add_argument("--workers", type=_integer_or_text, default=1, help="processes if it must be generated")
    show.add_argument("--png", default=None, help="output file (default: <name>_n<N>.png in the current folder)")
    show.set_defaults(func=_show)


def _add_common(parser):
    parser.add_argument("--resolution", type=_integer_or_text, default=32, help="N >= 4 (N×N mesh and grid)")
    parser.add_argument(
        "--samples", type=_integer_or_text, default=None, help="examples in all splits (default: the problem's, 10000)"
    )
    parser.add_argument("--seed", type=_integer_or_text, default=0, help="non-negative integer")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder of the data set, generated there if missing (default: TFDS' data folder, $TFDS_DATA_DIR "
        "or ~/tensorflow_datasets, as kml.datasets.load)",
    )


def _fail(error):
    text = str(error)
    for argument in ("resolution", "samples", "seed", "workers", "split", "count"):
        text = text.replace(f"`{argument}`", f"`{argument}` (--{argument})", 1)
    text = text.replace("`name`", "the dataset NAME", 1).replace("`data_dir`", "`data_dir` (--data-dir)", 1)
    print(f"keras-multilevel datasets: error: {text}", file=sys.stderr)
    return 2


def _list(args):
    from . import builders

    for name, problem in problems.PROBLEMS.items():
        sizes = builders.split_sizes(problem.default_samples)
        print(f"{name}: {problem.description}")
        print(
            f"    default {problem.default_samples} examples (train/validation/test "
            f"{sizes['train']}/{sizes['validation']}/{sizes['test']}), configs "
            + ", ".join(f"n{n}" for n in builders.NAMED_RESOLUTIONS)
            + " (any N >= 4 on request)"
        )
    return 0


def _generate(args):
    from keras_multilevel import datasets

    from . import builders, generation, integrity

    try:
        problem = problems.get(args.name)
        samples = problem.default_samples if args.samples is None else args.samples
        generation.validate(args.name, args.resolution, samples, args.seed, args.workers)
        # TFDS' folder (its default when --data-dir is not given), as for kml.datasets.load.
        folder = builders.version_folder(args.name, builders.config(args.name, args.resolution, samples, args.seed),
                                         args.data_dir)
        root = generation.check_out(folder.parents[2], "data_dir")
    except ValueError as error:
        return _fail(error)
    comm, rank, size = generation._mpi_world()
    try:
        with _signals_raise(), _locked_on_every_rank(comm, rank, folder.parent):
            # Verified records need no shards (raw/ may have been deleted): nothing to generate.
            complete = folder.exists() and integrity.check(folder) is None if rank == 0 else None
            if comm is not None:
                complete = comm.bcast(complete)
            report = None if complete else generation.generate(
                args.name, args.resolution, samples, seed=args.seed, workers=args.workers, root=root,
                progress=not args.quiet
            )
            if rank != 0:
                return 0
            prepared = datasets.prepare(args.name, args.resolution, samples, args.seed, root, workers=1, progress=False)
    except integrity.Damaged as error:
        print(f"keras-multilevel datasets: error: {error}; run the same command again to rewrite them",
              file=sys.stderr)
        return 1
    except Interrupted as stop:
        directory = generation.raw_directory(root, args.name, args.resolution, args.seed)
        kept = generation.saved_examples(directory, samples)
        records = "; the TFDS records were not finished" if kept == samples else ""
        print(f"keras-multilevel datasets: interrupted by {stop.name}: {kept} of {samples} examples are saved in "
              f"{directory}{records}; run the same command again to resume", file=sys.stderr)
        return 128 + stop.signum
    print(f"TFDS data set: {prepared.data_dir} (sha256 of its checksums: {integrity.digest(folder)})")
    print(f"read it with {_load_call(args, samples, problem.default_samples)}")
    print(f"or with {_tfds_call(args, folder)} after `import keras_multilevel.datasets` (which registers the builders)")
    if report is None:
        print(f"0 samples generated ({samples} kept: the TFDS records are complete and verified)")
        return 0
    for message in report.regenerated_shards:
        print(f"regenerated corrupt shard {message}")
    print(
        f"{report.generated} samples generated ({report.kept} kept from an earlier run) in {report.seconds:.2f} s "
        f"with {report.workers} worker(s) x {size} rank(s): {report.samples_per_second:.1f} samples/s"
    )
    return 0


class Interrupted(BaseException):
    """SIGINT or SIGTERM during ``generate`` (a BaseException, like KeyboardInterrupt: nothing should catch it)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


@contextlib.contextmanager
def _signals_raise():
    """Turns SIGINT and SIGTERM into :class:`Interrupted` while the block runs (handlers restored after).

    An exception raised by a signal handler is lost when the signal lands in a
    garbage-collector callback or a ``__del__`` (Python prints "Exception
    ignored" and goes on; JAX, when installed, registers such a callback), so
    the handler also arms a 0.2 s timer whose SIGALRM raises it again, and
    the lost one is not printed (``sys.unraisablehook``); leaving the block
    (as the exception unwinds it) disarms the timer.
    """
    received = []

    def interrupt(signum, frame):
        received.append(signum if signum != signal.SIGALRM else received[0])
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        raise Interrupted(received[-1])

    def unraisable(report, hook=sys.unraisablehook):
        if not isinstance(report.exc_value, Interrupted):  # an Interrupted lost here is raised again by the timer
            hook(report)

    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    previous = {signum: signal.signal(signum, interrupt) for signum in signums}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def _locked_on_every_rank(comm, rank, folder):
    """Holds the data set's lock (:mod:`.locks`) for a run; under MPI rank 0 holds it, and every rank learns if not."""
    if comm is None:
        with locks.holding(folder):
            yield
        return
    with contextlib.ExitStack() as stack:
        refusal = None
        if rank == 0:
            try:
                stack.enter_context(locks.holding(folder))
            except locks.Busy as error:
                refusal = str(error)
        refusal = comm.bcast(refusal)
        if refusal is not None:
            raise locks.Busy(refusal)
        yield


def _load_call(args, samples, default_samples):
    """The ``kml.datasets.load`` call that reads what ``generate`` wrote (arguments at their default left out)."""
    arguments = [repr(args.name), f"resolution={args.resolution}", "split='train'"]
    if samples != default_samples:
        arguments.append(f"samples={samples}")
    if args.seed != 0:
        arguments.append(f"seed={args.seed}")
    if args.data_dir is not None:
        arguments.append(f"data_dir={args.data_dir!r}")
    return f"kml.datasets.load({', '.join(arguments)})"


def _tfds_call(args, folder):
    """The ``tfds.load`` call of the same records: the builder's TFDS name, ``<problem>/<config>``."""
    data_dir = "" if args.data_dir is None else f", data_dir={args.data_dir!r}"
    return f"tfds.load('{args.name}/{folder.parent.name}', split='train'{data_dir})"


def _show(args):
    from keras_multilevel import datasets

    from . import plots

    try:
        if isinstance(args.count, bool) or not isinstance(args.count, int) or args.count < 1:
            raise ValueError(f"`count` must be a positive integer, got {args.count!r}.")
        if args.split not in ("train", "validation", "test"):
            raise ValueError(f"`split` must be one of ['train', 'validation', 'test'], got {args.split!r}.")
        problems.check_positive(args.workers, "workers")
        builder = datasets.prepare(args.name, args.resolution, args.samples, args.seed, args.data_dir, args.workers)
    except ValueError as error:
        return _fail(error)
    examples = list(builder.as_dataset(split=args.split).take(args.count).as_numpy_iterator())
    png = pathlib.Path(args.png or f"{args.name}_n{args.resolution}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.name}, N = {args.resolution}, {args.split} split ({builder.builder_config.name})"
    plots.plot_examples(args.name, examples, png, title)
    print(f"wrote {png}")
    return 0
