"""The ``bench circles`` command (single-level against multilevel training), and the ``demo`` command's place.

``bench circles`` trains the co-centric circles networks of
:mod:`keras_multilevel.cli.circles` for each number of levels and writes a
table and plots; ``demo`` is :mod:`keras_multilevel.cli.surrogate`. The
library (and TensorFlow) is imported only when one of them runs.
"""

import argparse
import pathlib
import sys


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _levels(text):
    try:
        levels = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of integers, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels must be >= 1, got {text!r}")
    return levels


def _compare(args, title):
    """Trains each number of levels in turn, then writes a table and a plot."""
    from tqdm import tqdm

    from keras_multilevel.cli import circles

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = circles.circles_data(seed=args.seed)
    scheme = args.scheme
    learning_rate = None if scheme == "rmtr" else args.learning_rate  # RMTR's trust regions set the steps
    runs = []
    for levels in args.levels:
        with tqdm(total=args.budget, desc=f"L = {levels}", unit="WU") as bar:

            def progress(run):
                bar.update(min(run.work_units[-1], args.budget) - bar.n)
                bar.set_postfix(loss=f"{run.loss[-1]:.4f}", val_acc=f"{run.val_accuracy[-1]:.3f}")

            runs.append(
                circles.train_circles(
                    levels,
                    data,
                    blocks=args.blocks,
                    learning_rate=learning_rate,
                    scheme=scheme,
                    regularization=args.regularization,
                    target_accuracy=args.target,
                    budget=args.budget,
                    seed=args.seed,
                    progress=progress,
                )
            )
    command = " ".join(["keras-multilevel", *sys.argv[1:]])
    method = (
        "full-batch L-SR1 trust regions (scheme rmtr, Kopaničáková and Krause, 2023)" if scheme == "rmtr"
        else f"full-batch gradient descent (learning rate {args.learning_rate}, gradients in L2(0, T))"
    )
    text = (
        f"# {title}\n\nCommand: `{command}`\n\n{args.blocks} residual blocks of width 3, T = 1, {method}, "
        f"Tikhonov beta = {args.regularization}, V-cycle scheme {scheme!r}; "
        f"stop at validation accuracy {args.target} or {args.budget:g} work units.\n\n"
        + circles.table(runs, args.target)
    )
    (out / "table.md").write_text(text)
    circles.plot(runs, out / "convergence.png", title)
    circles.plot_decision_boundaries(runs, data, out / "decision_boundary.png")
    print(text)
    print(f"wrote {out / 'table.md'}, {out / 'convergence.png'} and {out / 'decision_boundary.png'}")
    return 0


def _add_comparison_arguments(parser, blocks, levels, budget, out):
    parser.add_argument("--blocks", type=_positive_int, default=blocks, help="residual blocks of the finest network")
    parser.add_argument(
        "--levels", type=_levels, default=levels, help="comma-separated numbers of levels; the first is the baseline"
    )
    parser.add_argument("--budget", type=_positive_float, default=budget, help="work units per configuration")
    parser.add_argument("--target", type=_positive_float, default=0.99, help="validation accuracy that stops a run")
    parser.add_argument("--learning-rate", type=_positive_float, default=0.1, help="of full-batch gradient descent")
    parser.add_argument("--regularization", type=float, default=1e-4, help="Tikhonov beta")
    parser.add_argument("--seed", type=int, default=0, help="of the data and the initial weights")
    parser.add_argument(
        "--scheme", choices=["mgopt", "fas", "mlsgd", "rmtr"], default="mgopt",
        help="the V-cycle's scheme: mgopt (Gaedke-Merzhäuser et al., 2021), fas (Ponce et al., 2022), mlsgd (Jacob, 2024, with its safeguards) "
        "or rmtr (Kopaničáková and Krause's (2023) L-SR1 trust regions; no learning rate)",
    )
    parser.add_argument("--out", default=out, help="folder for table.md, convergence.png and decision_boundary.png")


def register(commands):
    """Adds the ``demo`` (:mod:`.surrogate`) and ``bench`` commands to an argparse sub-parsers object."""
    from keras_multilevel.cli import surrogate

    surrogate.register(commands, _positive_float, _positive_int)

    bench = commands.add_parser("bench", help="reproducible benchmarks")
    suites = bench.add_subparsers(dest="suite", required=True, metavar="SUITE")
    circles = suites.add_parser("circles", help="Gaedke-Merzhäuser et al. (2021, Table 1) (co-centric circles)")
    _add_comparison_arguments(circles, blocks=2048, levels="1,2,4,6,8", budget=300.0, out="out/bench/circles")
    circles.set_defaults(func=lambda args: _compare(args, "Gaedke-Merzhäuser et al. (2021, Table 1), co-centric circles"))
