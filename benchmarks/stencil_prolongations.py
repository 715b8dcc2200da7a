"""Issue 11: what a U-Net trained at N/2 is worth at N, by stencil prolongation (Haber et al. (2018, §3.2) vs unchanged).

The zoo's U-Net (filters 8, 16, 32, Adam 2e-3, batch 64) trains for
``--coarse-epochs`` epochs on the 2x2-averaged data at N/2, then moves to N
by :func:`kml.hierarchy.at_resolution` with each ``stencil_prolongation``
(``"inverse"``: Haber et al.'s (2018, §3.2) ``G^+``; ``"identity"``: the values unchanged).
The table gives the validation relative L2 at N right after the move and
after each of ``--fine-epochs`` epochs at N (a fresh Adam 2e-3), beside the
same network trained at N from its random initial weights.

Usage::

    python benchmarks/stencil_prolongations.py --problem poisson --resolutions 16 32 \\
        --out benchmarks/results/stencil_prolongations_poisson.md
"""

import argparse
import sys

import _report  # benchmarks/_report.py, beside this script
import keras
import zoo_tables  # the zoo's architecture and recipe, beside this script

import keras_multilevel as kml
from keras_multilevel.hierarchy import stencil
from keras_multilevel.hierarchy.resolution import STENCIL_PROLONGATIONS
from keras_multilevel.zoo import training
from keras_multilevel.zoo.recipe import dataset_description


def errors(model, train, validation, epochs):
    """Validation relative L2 of ``model`` now and after each of ``epochs`` epochs of Adam 2e-3 on ``train``."""
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    values = [kml.zoo.measure(model, validation)["relative_l2"]]
    for _ in range(epochs):
        model.fit(train, epochs=1, verbose=0)
        values.append(kml.zoo.measure(model, validation)["relative_l2"])
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["poisson", "darcy"], required=True)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--coarse-epochs", type=int, default=6)
    parser.add_argument("--fine-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    fine_columns = " | ".join(f"after {epoch} epoch(s) at N" for epoch in range(1, args.fine_epochs + 1))
    lines = [
        f"# {args.problem}: a U-Net trained at N/2, moved to N by each stencil prolongation",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Validation relative L2 at N; {args.coarse_epochs} epochs at N/2 (2x2-averaged data) before the move, "
        f"seed {args.seed}, then Adam 2e-3 (fresh) at N. 'random' trains at N from the initial weights.",
        "",
        f"| N | start | val rel. L2 at N/2 | at N, before training at N | {fine_columns} |",
        "|---|---|---|---|" + "---|" * args.fine_epochs,
    ]
    for resolution in args.resolutions:
        data = dataset_description(zoo_tables.recipe(args.problem, resolution, args.seed, args.coarse_epochs, 0, "identity"))
        train = training._data(data, "train", None, 64, shuffle=True)
        validation = training._data(data, "validation", None, 64)
        coarse_data = [dataset.map(lambda x, y: (stencil.restrict_image(x), stencil.restrict_image(y))) for dataset in (train, validation)]
        keras.utils.set_random_seed(args.seed)
        fine = kml.models.unet(resolution, **zoo_tables.ARCHITECTURE)
        coarse = kml.models.unet(resolution // 2, **zoo_tables.ARCHITECTURE)
        coarse.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
        coarse.fit(coarse_data[0], epochs=args.coarse_epochs, verbose=0)
        at_coarse = kml.zoo.measure(coarse, coarse_data[1])["relative_l2"]
        starts = {name: kml.hierarchy.at_resolution(coarse, resolution, stencil_prolongation=name) for name in STENCIL_PROLONGATIONS}
        for name, model in [*starts.items(), ("random", fine)]:
            values = errors(model, train, validation, args.fine_epochs)
            coarse_cell = "-" if name == "random" else f"{at_coarse:.4f}"
            lines.append(f"| {resolution} | {name} | {coarse_cell} | " + " | ".join(f"{v:.4g}" for v in values) + " |")
            print(lines[-1], flush=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
