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
as the Python API; a bad one prints an error naming it and what is allowed,
and the command exits with status 2. TensorFlow is imported only when a
command runs.
"""

import pathlib
import sys

from . import problems


def _integer_or_text(text):
    try:
        return int(text)
    except ValueError:
        return text


def register(commands):
    """Adds the ``datasets`` command to an argparse sub-parsers object."""
    datasets = commands.add_parser("datasets", help="PDE data sets of paper 002 §8 (FEniCSx): list, generate, show")
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

    from . import generation

    try:
        problem = problems.get(args.name)
        samples = problem.default_samples if args.samples is None else args.samples
        generation.validate(args.name, args.resolution, samples, args.seed, args.workers)
        # TFDS resolves the folder (its default when --data-dir is not given), as for kml.datasets.load.
        root = datasets.builder(args.name, args.resolution, samples, args.seed, args.data_dir).data_dir_root
        generation.check_out(root, "data_dir")
    except ValueError as error:
        return _fail(error)
    report = generation.generate(
        args.name, args.resolution, samples, seed=args.seed, workers=args.workers, root=root, progress=not args.quiet
    )
    _, rank, size = generation._mpi_world()
    if rank != 0:
        return 0
    prepared = datasets.prepare(args.name, args.resolution, samples, args.seed, root, workers=1, progress=False)
    for message in report.regenerated_shards:
        print(f"regenerated corrupt shard {message}")
    print(f"TFDS data set: {prepared.data_dir}")
    print(f"read it with {_load_call(args, samples, problem.default_samples)}")
    print(
        f"{report.generated} samples generated ({report.kept} kept from an earlier run) in {report.seconds:.2f} s "
        f"with {report.workers} worker(s) x {size} rank(s): {report.samples_per_second:.1f} samples/s"
    )
    return 0


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
