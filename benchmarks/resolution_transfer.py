"""Haber et al. (2018, §4.1) on the zoo: a trained network run at N/2 and 2N, with and without the stencil transfer.

For each preset (trained at N) it generates fresh data at N/2 and 2N (a
seed the presets never saw) and measures the test relative L2 error of

* at N/2, the network moved there by :func:`kml.hierarchy.at_resolution`
  (the Galerkin restriction ``K_H = R K_h P``, Haber et al., 2018, eqs 9-10) and the same
  weights used unchanged (Haber et al.'s (2018, §4.1) comparison: "using the original
  convolution kernels");
* at 2N, the network moved by ``at_resolution``'s default (stencils
  unchanged: for these U-Nets, whose every weight is a stencil or
  pointwise, the same weights as they are) and by the exact inverse of the
  Galerkin restriction (Haber et al., 2018, §3.2, ``stencil_prolongation="inverse"``).

Usage::

    python benchmarks/resolution_transfer.py --samples 200 --out benchmarks/results/resolution_transfer.md
"""

import argparse
import sys
import tempfile

import _report  # benchmarks/_report.py, beside this script

import keras_multilevel as kml
from keras_multilevel.hierarchy import resolution
from keras_multilevel.zoo import training


def unchanged(model, n):
    """``model``'s weights, as they are, in the network rebuilt for ``n x n`` inputs."""
    moved = resolution.with_resolution(model, n)
    moved.set_weights(model.get_weights())
    return moved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="fresh examples per resolution")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--out", default="benchmarks/results/resolution_transfer.md")
    args = parser.parse_args(argv)
    lines = [
        "# Trained presets at the neighbouring resolutions (Haber et al., 2018, §4.1)",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Test relative L2 on {args.samples} freshly generated examples per grid (seed {args.seed}); "
        "'card' is the preset's own test error at N.",
        "",
        "| preset | card (N) | N/2 transferred | N/2 unchanged | 2N stencils unchanged (default) | 2N inverse (Haber et al., 2018, §3.2) |",
        "|---|---|---|---|---|---|",
    ]
    for name in kml.zoo.names():
        meta = kml.zoo.metadata(name)
        n, model = meta["resolution"], kml.zoo.load(name, compile=False)
        cells = []
        moves = {
            n // 2: (kml.hierarchy.at_resolution(model, n // 2), unchanged(model, n // 2)),
            2 * n: (kml.hierarchy.at_resolution(model, 2 * n),
                    kml.hierarchy.at_resolution(model, 2 * n, stencil_prolongation="inverse")),
        }
        for m, moved in moves.items():
            with tempfile.TemporaryDirectory() as folder:
                fresh = dict(meta["dataset"], resolution=m, samples=args.samples, seed=args.seed)
                data = training.every_example(fresh, folder)
                cells += [f"{kml.zoo.measure(network, data)['relative_l2']:.4f}" for network in moved]
        lines.append(f"| {name} | {meta['metrics']['test']['relative_l2']:.4f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
