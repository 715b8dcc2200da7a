"""Haber et al. (2018, §4.1) on the zoo: each trained preset run at N/2 and 2N without retraining, moved by each hierarchy.

For each preset (trained at N) it generates fresh data at N/2, N and 2N (a
seed the presets never saw) and measures the test relative L2 error
(``kml.zoo.metrics``) of the network moved by :func:`kml.hierarchy.at_resolution`:

* ``pyramid`` (what ``kml.zoo.load(name, resolution=M)`` does for the
  shipped pyramid U-Nets): at N/2 the network without its finest grid, at
  2N the network with a finer grid added whose correction starts at zero
  (it predicts the N network's output on the 2x2-averaged input,
  prolongated bilinearly);
* ``resolution``: the same layers on the other grid, at N/2 with the
  Galerkin restriction ``K_H = R K_h P`` of every stencil (Haber et al.,
  2018, eqs 9-10), at 2N with the stencils unchanged (the default) or by
  the exact inverse of the Galerkin restriction (§3.2, ``"inverse"``);
* at N/2 the weights unchanged on the coarser grid (Haber et al.'s (2018,
  §4.1) comparison, "using the original convolution kernels").

Beside them, at 2N, the error of the exact solution averaged to N and
prolongated bilinearly (``floor``): what any prediction made on the N
grid and prolongated so loses at best, the limit of the pyramid's move.

Usage::

    python benchmarks/resolution_transfer.py --samples 200 --out benchmarks/results/resolution_transfer.md

It also writes the numbers as JSON beside the table (``.json``), which
``benchmarks/zoo_cards.py`` puts in the presets' cards.
"""

import argparse
import json
import pathlib
import sys
import tempfile

import keras
import numpy as np

import _report  # benchmarks/_report.py, beside this script

import keras_multilevel as kml
from keras_multilevel.hierarchy import resolution
from keras_multilevel.zoo import training

COLUMNS = {  # column -> (grid factor, how the preset is moved)
    "N/2 pyramid": (0.5, dict(coarsening="pyramid")),
    "N/2 Galerkin": (0.5, dict(coarsening="resolution")),
    "N/2 unchanged": (0.5, None),
    "N (fresh)": (1, None),
    "2N pyramid": (2, dict(coarsening="pyramid")),
    "2N stencils unchanged": (2, dict(coarsening="resolution")),
    "2N inverse": (2, dict(coarsening="resolution", stencil_prolongation="inverse")),
}


def unchanged(model, n):
    """``model``'s weights, as they are, in the network rebuilt for ``n x n`` inputs."""
    moved = resolution.with_resolution(model, n)
    moved.set_weights(model.get_weights())
    return moved


def floor(data):
    """Relative L2 of the exact target averaged 2x2 and prolongated bilinearly (the pyramid's own ``P``)."""
    down = keras.layers.AveragePooling2D(2)
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")
    targets = np.concatenate([target for _, target in data])
    return kml.zoo.metrics(up(down(targets)).numpy(), targets)["relative_l2"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="fresh examples per resolution")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--presets", nargs="+", default=None, help="preset names (default: every shipped one)")
    parser.add_argument("--out", default="benchmarks/results/resolution_transfer.md")
    args = parser.parse_args(argv)
    lines = [
        "# Trained presets at the neighbouring resolutions (Haber et al., 2018, §4.1)",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Test relative L2 on {args.samples} freshly generated examples per grid (seed {args.seed}, all three splits); "
        "'card' is the preset's own test error at N (its test split). Moves: `kml.hierarchy.at_resolution(model, M, "
        "coarsening=...)`; 'pyramid' is what `kml.zoo.load(name, resolution=M)` does for these pyramid U-Nets. "
        "'2N floor': the exact 2N target averaged to N and prolongated bilinearly, what a prediction on the N grid "
        "prolongated so loses at best. Ratios: to the error at N on the fresh data.",
        "",
        "| preset | card (N) | " + " | ".join(COLUMNS) + " | 2N floor | 2N pyramid / N | N/2 pyramid / N/2 unchanged |",
        "|---|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    results = {}
    for name in args.presets or kml.zoo.names():
        meta = kml.zoo.metadata(name)
        n, model = meta["resolution"], kml.zoo.load(name, compile=False)
        row, data = {}, {}
        with tempfile.TemporaryDirectory() as folder:
            for column, (factor, move) in COLUMNS.items():
                m = int(n * factor)
                if m not in data:
                    fresh = dict(meta["dataset"], resolution=m, samples=args.samples, seed=args.seed)
                    data[m] = training.every_example(fresh, folder).cache()
                network = model if m == n else unchanged(model, m) if move is None else kml.hierarchy.at_resolution(model, m, **move)
                row[column] = kml.zoo.measure(network, data[m])["relative_l2"]
            row["2N floor"] = floor(data[2 * n])
        results[name] = {"resolution": n, "card": meta["metrics"]["test"]["relative_l2"], **row}
        cells = [row[column] for column in [*COLUMNS, "2N floor"]]
        ratios = [row["2N pyramid"] / row["N (fresh)"], row["N/2 pyramid"] / row["N/2 unchanged"]]
        lines.append(
            f"| {name} | {meta['metrics']['test']['relative_l2']:.4f} | " + " | ".join(f"{c:.4f}" for c in cells)
            + " | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |"
        )
        print(lines[-1], flush=True)
    _report.write(lines, args.out)
    pathlib.Path(args.out).with_suffix(".json").write_text(
        json.dumps({"command": " ".join(["python", *sys.argv]), "samples": args.samples, "seed": args.seed,
                    "presets": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
