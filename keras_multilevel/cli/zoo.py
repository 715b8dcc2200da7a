"""The ``keras-multilevel zoo`` command: ``list``, ``show``, ``evaluate``, ``train``.

``evaluate`` measures a preset on freshly generated data and ``train``
retrains it from its recipe; both compare the result with the preset's card
(:mod:`keras_multilevel.zoo`). A bad argument prints an error naming it and
exits with status 2 (``train`` also when ``--out`` holds the preset already
and ``--overwrite`` is not given); ``train`` exits with 1 when the retrained model misses
the card's tolerance, every command exits with 1 on a preset whose files
fail their sha256 check, and ``list`` exits with 1 when ``--presets`` holds
no preset. ``keras_multilevel`` (and TensorFlow) is imported only when a
command runs.
"""

import sys

ARGUMENTS = {f"`{name}`": f"`{name}` (--{name})" for name in ("samples", "seed", "resolution")}


def register(commands):
    """Adds the ``zoo`` command to an argparse sub-parsers object."""
    zoo = commands.add_parser("zoo", help="pretrained U-Nets for the PDE data sets: list, show, evaluate, train")
    actions = zoo.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the presets and their test errors")
    listing.set_defaults(func=_list)

    show = actions.add_parser("show", help="print a preset's model card")
    show.add_argument("name", help="preset name, e.g. poisson_unet_n32")
    show.set_defaults(func=_show)

    evaluate = actions.add_parser("evaluate", help="errors of a preset on freshly generated data")
    evaluate.add_argument("name", help="preset name, e.g. poisson_unet_n32")
    evaluate.add_argument("--samples", type=int, default=200, help="fresh examples to generate and measure (>= 3)")
    evaluate.add_argument("--seed", type=int, default=777, help="generation seed (not the training data's)")
    evaluate.add_argument("--resolution", type=int, default=None, help="M = N * 2^k (default: the preset's N)")
    evaluate.add_argument("--data-dir", default=None, help="folder of the data (default: a temporary folder)")
    evaluate.set_defaults(func=_evaluate)

    train = actions.add_parser("train", help="retrain a preset from its recipe and compare it with its card")
    train.add_argument("name", help="preset name, e.g. poisson_unet_n32")
    train.add_argument("--out", default="retrained", help="folder for the new preset folder")
    train.add_argument(
        "--data-dir", default=None, help="folder of the training data (default: TFDS' data folder, as kml.datasets.load)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--overwrite", action="store_true", help="replace the preset folder if --out has one")
    train.set_defaults(func=_train)

    for parser in (listing, show, evaluate, train):
        parser.add_argument("--presets", default=None, help="folder of presets (default: the shipped ones)")


def _fail(error):
    text = str(error)
    for argument, option in ARGUMENTS.items():
        text = text.replace(argument, option, 1)
    print(f"keras-multilevel zoo: error: {text}", file=sys.stderr)
    return 2


def _run(action):
    """Runs ``action()``: a broken preset exits with 1, any other ``ValueError`` (a bad argument) and an
    existing preset folder that ``--overwrite`` does not allow to replace (``FileExistsError``) with 2."""
    from keras_multilevel import zoo

    try:
        return action()
    except zoo.IntegrityError as error:
        print(f"keras-multilevel zoo: error: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError) as error:
        return _fail(error)


def _list(args):
    from keras_multilevel import zoo

    if not zoo.names(args.presets):
        folder = zoo.store.PRESETS if args.presets is None else args.presets
        print(
            f"keras-multilevel zoo: error: no presets in {folder} (a preset is a folder with a metadata.json, "
            "as kml.zoo.create writes); check --presets.",
            file=sys.stderr,
        )
        return 1

    def listing():
        print(zoo.table(args.presets))
        return 0

    return _run(listing)


def _show(args):
    from keras_multilevel import zoo

    def show():
        print(zoo.show(args.name, args.presets))
        return 0

    return _run(show)


def _evaluate(args):
    from keras_multilevel import zoo

    def evaluate():
        measured = zoo.evaluate(args.name, args.samples, args.seed, args.resolution, args.data_dir, args.presets)
        metadata = zoo.metadata(args.name, args.presets)
        resolution = metadata["resolution"] if args.resolution is None else args.resolution
        error = measured["relative_l2_std"] / measured["examples"] ** 0.5
        print(f"{args.name} on {measured['examples']} fresh examples (seed {args.seed}, N = {resolution}):")
        print(f"  L2 (MSE)     {measured['l2']:.4e}")
        print(f"  relative L2  {measured['relative_l2']:.4f} (standard error {error:.4f})")
        print(f"  L∞           {measured['linf']:.4e}")
        if resolution == metadata["resolution"]:
            print(zoo.compare(metadata, measured))
        else:
            print(f"(the card's metrics are at N = {metadata['resolution']}: no comparison at N = {resolution})")
        return 0

    return _run(evaluate)


def _train(args):
    from keras_multilevel import zoo

    def train():
        metadata, comparison = zoo.train(args.name, args.out, args.data_dir, not args.quiet, args.presets,
                                         args.overwrite)
        print(f"wrote the preset {args.out}/{metadata['name']} ({metadata['training']['wall_time_s']:.0f} s)")
        print(comparison)
        return 0 if comparison.passed else 1

    return _run(train)
