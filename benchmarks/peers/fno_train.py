"""One FNO (``neuraloperator``'s ``FNO``) trained on an exported keras-multilevel data set, in its own environment.

Standalone: numpy, torch and neuraloperator only (the environment
``fno_against_zoo.py`` makes, without the package; of this checkout it reads
only ``keras_multilevel/zoo/metrics.py``, which needs numpy alone). Reads the ``--data`` npz
that :mod:`fno_against_zoo` writes (``x_{split}`` of shape ``(n, N, N, 3)``:
coefficient and cell-centre coordinates; ``y_{split}`` ``(n, N, N)``: the raw
target) and the ``--fresh`` npz (``x``, ``y`` at 2N), trains
``FNO(n_modes=(m, m), in_channels=3, out_channels=1, hidden_channels=h,
n_layers=l, positional_embedding=None)`` (the coordinates are already input
channels) with Adam on the mean squared error, on one torch thread, for as
many epochs as fit ``--cpu-budget`` CPU seconds (the first epoch's CPU time,
validation included, sets the count; at most ``--max-epochs``), the learning
rate halved at 1/2, 3/4 and 7/8 of them, and keeps the weights of the best
validation relative L2. Writes a JSON record: parameters, epochs, training
CPU and wall seconds, per-epoch loss and validation relative L2, and the
metrics of keras-multilevel's ``kml.zoo.metrics`` (its own code, loaded
from this checkout's file) on the test split at N and on the fresh examples at 2N.

Usage::

    benchmarks/peers/.venv-fno/bin/python benchmarks/peers/fno_train.py --data own.npz --fresh fresh.npz \\
        --seed 0 --cpu-budget 240 --out record.json
"""

import argparse
import copy
import importlib.util
import json
import math
import pathlib
import time

import numpy as np


def _library_metrics():
    """``keras_multilevel.zoo.metrics.metrics`` itself, loaded from this checkout's file (it needs only numpy):
    the FNO's errors are computed by the very code that computes the presets', without installing the package
    in this environment."""
    path = pathlib.Path(__file__).resolve().parents[2] / "keras_multilevel" / "zoo" / "metrics.py"
    spec = importlib.util.spec_from_file_location("keras_multilevel_zoo_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.metrics


metrics = _library_metrics()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--fresh", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--cpu-budget", type=float, default=240)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch
    from neuralop.models import FNO

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    def tensors(x, y):  # (n, N, N, 3) and (n, N, N) -> (n, 3, N, N) and (n, 1, N, N)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y[:, None])

    data = np.load(args.data)
    fresh = np.load(args.fresh)
    x_train, y_train = tensors(data["x_train"], data["y_train"])
    model = FNO(n_modes=(args.modes, args.modes), in_channels=3, out_channels=1, hidden_channels=args.hidden,
                n_layers=args.layers, positional_embedding=None)
    parameters = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)

    def predict(x):
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            out = torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)])
        model.train()
        return out[:, 0].numpy()

    epochs, history, best = None, [], (math.inf, None)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    epoch = 0
    while epochs is None or epoch < epochs:
        if epochs is not None:
            fraction = epoch / epochs
            halvings = sum(fraction >= f for f in (0.5, 0.75, 0.875))
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate * 0.5**halvings
        order = torch.from_numpy(rng.permutation(len(x_train)))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            index = order[i:i + args.batch_size]
            loss = torch.mean((model(x_train[index]) - y_train[index]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        validation = metrics(predict(data["x_validation"]), data["y_validation"])["relative_l2"]
        if validation < best[0]:
            best = (validation, copy.deepcopy(model.state_dict()))
        epoch += 1
        history.append({"epoch": epoch, "loss": total / len(order), "val_relative_l2": validation,
                        "cpu_s": time.process_time() - cpu_start})
        if epochs is None:
            epochs = max(1, min(args.max_epochs, int(args.cpu_budget // history[0]["cpu_s"])))
        print(f"epoch {epoch}/{epochs}: loss {total / len(order):.3e}, val rel. L2 {validation:.4f}, "
              f"{history[-1]['cpu_s']:.0f} CPU s", flush=True)
    train_cpu, train_wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    model.load_state_dict(best[1])
    record = {
        "arguments": vars(args), "parameters": int(parameters), "epochs": epochs, "train_cpu_s": train_cpu,
        "train_wall_s": train_wall, "torch": torch.__version__, "best_val_relative_l2": best[0],
        "test": metrics(predict(data["x_test"]), data["y_test"]),
        "fresh_2n": metrics(predict(fresh["x"]), fresh["y"]),
        "history": history,
    }
    with open(args.out, "w") as file:
        json.dump(record, file, indent=1)


if __name__ == "__main__":
    main()
