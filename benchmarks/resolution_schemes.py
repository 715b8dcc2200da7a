"""Which multilevel scheme for the resolution hierarchy: one level, coarse to fine, V-cycles.

The zoo's U-Net (filters 8, 16, 32; ``--pyramid``: its multiscale form) on one problem at one resolution, from the
same initial weights, side by side in one process: one level; Haber et al. (2018, Algorithm 1)
(2 levels, the first ``--coarse-epochs`` epochs at N/2); and MG/OPT V-cycles
over the resolution hierarchy (2 levels, ``--steps``, default ``[(1),{1}]``), both with the
stencils prolongated by ``--stencil-prolongation`` (Haber et al.'s (2018, §3.2) inverse, or
unchanged: :class:`kml.hierarchy.ResolutionCoarsening`), each with Adam and
with SGD + momentum as the level optimizer. Prints and writes the validation
relative L2 error and the work units after each epoch.

Usage::

    python benchmarks/resolution_schemes.py --problem poisson --resolution 16 --epochs 4 \\
        --out benchmarks/results/resolution_schemes.md
"""

import argparse
import shlex
import sys

import keras

import _report  # benchmarks/_report.py, beside this script
import zoo_tables  # the zoo's architecture, beside this script

import keras_multilevel as kml
from keras_multilevel.zoo import training

SMOOTHERS = {
    "Adam 2e-3": {"class_name": "Adam", "config": {"learning_rate": 0.002}},
    "SGD 0.01, momentum 0.9": {"class_name": "SGD", "config": {"learning_rate": 0.01, "momentum": 0.9}},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["poisson", "darcy"], default="poisson")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--coarse-epochs", type=int, default=1)
    parser.add_argument("--stencil-prolongation", choices=["inverse", "identity"], default="inverse")
    parser.add_argument("--steps", default="[(1),{1}]", help="the V-cycle's steps per level (MultilevelOptimizer(steps=...))")
    parser.add_argument("--pyramid", action="store_true", help="the multiscale U-Net (kml.models.unet(..., pyramid=True))")
    parser.add_argument("--out", default="benchmarks/results/resolution_schemes.md")
    args = parser.parse_args(argv)
    batches = 8000 // 64
    coarsening = {"name": "resolution", "stencil_prolongation": args.stencil_prolongation}
    schemes = {
        "one level": {"levels": 1},
        "coarse to fine (Haber et al., 2018, Algorithm 1)": {"levels": 2, "coarsening": coarsening, "schedule": [args.coarse_epochs * batches]},
        f"MG/OPT V-cycle {args.steps}": {"levels": 2, "coarsening": coarsening, "steps": args.steps},
    }
    lines = [
        f"# Schemes for the resolution hierarchy: {args.problem}, N = {args.resolution}",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",  # quoted: --steps holds brackets
        "",
        "Validation relative L2 after each epoch (work units in parentheses); same initial weights, batch 64; "
        f"stencils prolongated: {args.stencil_prolongation}; {zoo_tables.architecture(args)}.",
        "",
        "| level optimizer | scheme | " + " | ".join(f"epoch {e + 1}" for e in range(args.epochs)) + " |",
        "|---|---|" + "---|" * args.epochs,
    ]
    for smoother_name, smoother in SMOOTHERS.items():
        for scheme_name, scheme in schemes.items():
            recipe = {
                "problem": args.problem, "resolution": args.resolution, "architecture": zoo_tables.unet_architecture(args.pyramid),
                "smoother": smoother, "epochs": args.epochs, "batch_size": 64, "seed": 0, "dataset_seed": 0,
                **scheme,
            }
            keras.backend.clear_session()
            _, record = training.train_recipe(recipe, progress=False)
            cells = [f"{row['val_relative_l2']:.4f} ({row['work_units']:.0f})" for row in record["epochs"]]
            lines.append(f"| {smoother_name} | {scheme_name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
