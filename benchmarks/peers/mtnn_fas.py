"""Ponce et al.'s (2022) own code (LLNL/MTNN) on keras-multilevel's data: SGD and width FAS V-cycles.

Runs in MTNN's own environment (PyTorch), never in the package's: it imports
MTNN from the folder given with ``--mtnn`` and reads everything else from the
``--inputs`` file that :mod:`fas_against_mtnn` writes (the data set,
flattened, and the network's initial weights as Keras drew them, so both
codes start from the same point). It builds MTNN's hierarchy the way its
``examples/poisson_example.py`` does (``HierarchyBuilder.build_standard_from_params``:
heavy edge matching, weighted projection, matrix-free operators, SGD
smoother with momentum, ``WholeSetTau``) and runs ``VCycle`` one cycle at a
time with a ``NextKLoader`` of ``--steps`` minibatches, validating every
``--every`` work units. One level is MTNN's plain SGD (the same loop).

Work units count MTNN's gradient evaluations per V-cycle, each weighted by
its level's cost ``c_i``, with ``k`` minibatches per smoothing phase::

    U_c = sum_{i < L-1} (3 k c_i + k c_{i+1}) + k c_{L-1}

(``k`` pre-smoothing, ``k`` post-smoothing and ``k`` fine tau gradients on
level ``i``, ``k`` coarse tau gradients on level ``i + 1``, ``k`` steps on
the coarsest). Two accountings: ``measured``, ``c_i`` = the level's
parameter count over the finest's (what keras-multilevel charges), and
``paper``, ``c_i = 4^-i`` (Ponce et al., 2022, §8). The budget is spent in the first.

Usage (from the keras-multilevel repository, with MTNN's Python)::

    /path/to/mtnn-venv/bin/python benchmarks/peers/mtnn_fas.py --mtnn /path/to/MTNN \\
        --inputs inputs.npz --levels 2 --work-units 10000 --out record.json
"""

import argparse
import json
import logging
import math
import sys
import time

import numpy as np


def level_costs(levels):
    """Each level's parameter count over the finest level's."""
    counts = [sum(p.numel() for p in level.net.parameters()) for level in levels]
    return [count / counts[0] for count in counts]


def cycle_work_units(costs, k):
    """``U_c`` of the module docstring for levels of cost ``costs`` (finest first)."""
    last = len(costs) - 1
    return sum(3 * k * costs[i] + k * costs[i + 1] for i in range(last)) + k * costs[last]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mtnn", required=True, help="folder of an LLNL/MTNN checkout (holds the MTNN package)")
    parser.add_argument("--inputs", required=True, help="npz written by fas_against_mtnn.py")
    parser.add_argument("--levels", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-units", type=float, default=10_000)
    parser.add_argument("--every", type=float, default=100)
    parser.add_argument("--steps", type=int, default=4, help="minibatches per smoothing phase (smooth_iters)")
    parser.add_argument("--learning-rates", type=float, nargs="+", required=True, help="one per level")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--rematch-every", type=int, default=50)
    parser.add_argument("--tau-scaling", type=float, default=1.0)
    parser.add_argument("--momentum-scale", type=float, default=1.0)
    parser.add_argument("--minibatch", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if len(args.learning_rates) != args.levels:
        parser.error(f"--learning-rates needs {args.levels} values, one per level")

    sys.path.insert(0, args.mtnn)
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import MTNN.MultilevelCycle as cycles
    from MTNN.architectures.MultilinearModel import MultilinearNet
    from MTNN.components import subsetloader
    from MTNN.HierarchyBuilder import HierarchyBuilder

    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(args.seed)
    inputs = np.load(args.inputs)
    x, y = torch.from_numpy(inputs["x_train"]), torch.from_numpy(inputs["y_train"])
    x_val, y_val = torch.from_numpy(inputs["x_val"]), torch.from_numpy(inputs["y_val"])
    # MTNN walks its data set in order; shuffle it once, as its examples' loaders do.
    order = torch.from_numpy(np.random.default_rng(args.seed).permutation(len(x)))
    loader = DataLoader(TensorDataset(x[order], y[order]), batch_size=args.minibatch, shuffle=False)

    kernels = [inputs[f"kernel_{i}"] for i in range(int(inputs["layers"]))]
    widths = [kernels[0].shape[0]] + [k.shape[1] for k in kernels]
    net = MultilinearNet(widths, F.relu, lambda v: v)
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            layer.weight.copy_(torch.from_numpy(kernels[i].T))  # Keras kernels are (in, out)
            layer.bias.copy_(torch.from_numpy(inputs[f"bias_{i}"]))

    params = {
        "num_levels": args.levels, "learning_rate": list(args.learning_rates), "momentum": args.momentum,
        "weight_decay": args.weight_decay, "weighted_projection": True, "redo_matching_frequency": args.rematch_every,
        "param_diff_scale": 1.0, "mom_diff_scale": args.momentum_scale, "tau_corrector": "wholeset",
        "tau_scaling": args.tau_scaling,
    }
    levels = HierarchyBuilder.build_standard_from_params(net, params)
    vcycle = cycles.VCycle(levels, cycles=1, subsetloader=subsetloader.NextKLoader(args.steps), validation_callbacks=None)
    vcycle.log_cycling_header = lambda: None

    def validate(record):
        with torch.no_grad():
            error = torch.cat([levels[0].net(x_val[i : i + 500]) - y_val[i : i + 500] for i in range(0, len(x_val), 500)])
        record["val_l2"].append(float(torch.mean(error**2)))
        record["val_linf"].append(float(torch.max(torch.abs(error))))

    record = {"levels": args.levels, "work_units": [], "paper_work_units": [], "train_seconds": [], "val_l2": [], "val_linf": []}
    seconds, cycle_count, next_check = 0.0, 0, args.every
    costs = paper = None
    while True:
        started = time.perf_counter()
        vcycle.run(dataloader=loader)
        seconds += time.perf_counter() - started
        cycle_count += 1
        if costs is None:  # coarse networks exist after the first cycle
            costs = level_costs(levels)
            paper = [4.0**-i for i in range(args.levels)]
            record["relative_costs"] = costs
            record["cycle_work_units"] = cycle_work_units(costs, args.steps)
            record["paper_cycle_work_units"] = cycle_work_units(paper, args.steps)
        spent = cycle_count * record["cycle_work_units"]
        if spent >= next_check or spent >= args.work_units:
            next_check += args.every
            record["work_units"].append(spent)
            record["paper_work_units"].append(cycle_count * record["paper_cycle_work_units"])
            record["train_seconds"].append(seconds)
            validate(record)
            if not math.isfinite(record["val_l2"][-1]):
                break
        if spent >= args.work_units:
            break
    with open(args.out, "w") as file:
        json.dump(record, file)


if __name__ == "__main__":
    main()
