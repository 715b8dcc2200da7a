"""The Fourier Neural Operator (``neuraloperator``, PyTorch) against the zoo's U-Net presets, on the presets' own data.

For each problem, the FNO is trained on the very data set the preset
``{problem}_unet_n{N}`` was trained on (its card's ``dataset``: problem,
target, N, samples, generation seed, the 8,000/1,000/1,000 splits), on the
raw targets the presets train on (the zoo normalizes nothing: inputs are the
coefficient and the cell-centre coordinates ``(N, N, 3)``, the target ``u``
or the Darcy pressure as generated), with the mean squared error as loss
like the presets. It is measured with the zoo's relative L2
(``kml.zoo.metrics``: the mean over examples of ``||e||_2 / ||u||_2``) on
the test split at N, and on freshly generated examples at 2N (all three
splits of a data set of ``--fresh-samples`` examples, generation seed
``--fresh-seed``; the default 200 / 4242 is the data of
``benchmarks/resolution_transfer.py``), where the FNO is applied unchanged
(it is meant to transfer); the preset moved to 2N by ``kml.zoo.load(name,
resolution=2N)`` is measured on the same examples.

The FNO runs in its own environment through ``fno_train.py`` (numpy, torch
and neuraloperator only), so it is never a dependency of the package: this
script exports the data to ``.npz`` files in ``--data-dir`` (outside the
repository; the data sets are generated there with FEniCSx when missing) and
creates the environment (``--fno-venv``, git-ignored) with ``python3.12 -m
venv`` and ``pip install torch neuraloperator`` when it is missing.

Usage (from the repository root, with the package's environment)::

    python benchmarks/peers/fno_against_zoo.py --problems poisson darcy --resolution 16 --seeds 0 1 2 \\
        --cpu-budget 240 --jobs 2 --data-dir /tmp/fno/data --out benchmarks/results/peers
"""

import argparse
import concurrent.futures
import json
import pathlib
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402  (benchmarks/_report.py)
import keras_multilevel as kml  # noqa: E402
from keras_multilevel.zoo import store, training  # noqa: E402

SPLITS = ("train", "validation", "test")


def arrays(dataset, split, data_dir):
    """``(inputs (n, N, N, 3), targets (n, N, N))`` float32 of one split of a data set description."""
    data = kml.datasets.load(
        dataset["name"], dataset["resolution"], split, str(data_dir), samples=dataset["samples"],
        seed=dataset["seed"], target=dataset["target"], batch_size=500, progress=False,
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data])
    return np.concatenate(xs).astype("float32"), np.concatenate(ys).astype("float32")


def export(preset, data_dir, fresh_samples, fresh_seed):
    """Writes (once) the preset's data set at N and the fresh examples at 2N as npz; returns both paths."""
    dataset = kml.zoo.metadata(preset)["dataset"]
    n = dataset["resolution"]
    folder = pathlib.Path(data_dir) / "npz"
    folder.mkdir(parents=True, exist_ok=True)
    own = folder / f"{dataset['name']}_{dataset['target']}_n{n}_s{dataset['samples']}_seed{dataset['seed']}.npz"
    fresh = folder / f"{dataset['name']}_{dataset['target']}_n{2 * n}_s{fresh_samples}_seed{fresh_seed}.npz"
    if not own.exists():
        started = time.perf_counter()
        parts = {}
        for split in SPLITS:
            parts[f"x_{split}"], parts[f"y_{split}"] = arrays(dataset, split, data_dir)
        np.savez(own, **parts)
        print(f"{own.name}: {time.perf_counter() - started:.0f} s", flush=True)
    if not fresh.exists():
        started = time.perf_counter()
        description = dict(dataset, resolution=2 * n, samples=fresh_samples, seed=fresh_seed)
        parts = [arrays(description, split, data_dir) for split in SPLITS]
        np.savez(fresh, x=np.concatenate([p[0] for p in parts]), y=np.concatenate([p[1] for p in parts]))
        print(f"{fresh.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return own, fresh


def preset_at_2n(preset, fresh):
    """The zoo's metrics of ``preset`` moved to 2N (``kml.zoo.load(name, resolution=2N)``) on the fresh examples."""
    n = kml.zoo.metadata(preset)["resolution"]
    model = kml.zoo.load(preset, resolution=2 * n, compile=False)
    data = np.load(fresh)
    predictions = np.concatenate([model(data["x"][i:i + 100], training=False) for i in range(0, len(data["x"]), 100)])
    return kml.zoo.metrics(predictions, data["y"])


def make_venv(venv, base_python):
    """``python3.12 -m venv`` + ``pip install torch neuraloperator`` into ``venv`` unless it has a Python already."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch", "neuraloperator"], check=True)
    return python


def run_fno(args, python, own, fresh, seed, record_path):
    """One ``fno_train.py`` run in the FNO's environment (its log next to its record); returns its record."""
    command = [
        str(python), str(HERE / "fno_train.py"), "--data", str(own), "--fresh", str(fresh), "--seed", str(seed),
        "--modes", str(args.modes), "--hidden", str(args.hidden), "--layers", str(args.layers),
        "--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size),
        "--max-epochs", str(args.max_epochs), "--cpu-budget", str(args.cpu_budget), "--out", str(record_path),
    ]
    with open(record_path.with_suffix(".log"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(record_path.read_text())


def _preset_seconds(training):
    """The preset's training CPU seconds where its card records them, else its wall seconds, marked so."""
    return f"{training['cpu_time_s']:.0f}" if "cpu_time_s" in training else f"{training['wall_time_s']:.0f} (wall)"


def _presets_record(presets):
    """What the JSON record keeps of each preset: its card's test metrics and its metrics at 2N."""
    return {problem: {"card_test": card["metrics"]["test"], "at_2n": at} for problem, (card, at) in presets.items()}


def table(args, command, results, presets):
    n = args.resolution
    lines = [
        f"# FNO (neuraloperator) against the zoo's U-Net presets, N = {n}, on the presets' own data",
        "",
        f"Command: `{command}`",
        "",
        f"Test relative L2 (`kml.zoo.metrics`: mean over examples of ||e||_2 / ||u||_2) at N = {n} on the preset's test "
        f"split (1,000 examples of its data set), and at 2N = {2 * n} on {args.fresh_samples} freshly generated examples "
        f"(seed {args.fresh_seed}, the data of `benchmarks/resolution_transfer.py`), the FNO applied unchanged, the preset "
        f"moved by `kml.zoo.load(name, resolution={2 * n})`. FNO: median [min-max] over seeds "
        f"{', '.join(map(str, args.seeds))}; {args.layers} Fourier layers, {args.modes} x {args.modes} modes, "
        f"{args.hidden} hidden channels, Adam {args.learning_rate:g} halved at 1/2, 3/4 and 7/8 of the epochs, batch "
        f"{args.batch_size}, MSE on the raw targets (the presets' loss; the zoo normalizes neither inputs nor targets), "
        f"epochs: as many as fit a training budget of {args.cpu_budget:g} CPU seconds on one torch thread (their number "
        f"fixed by the first epoch's CPU time, at most {args.max_epochs}; later epochs may run slower or faster), the "
        "weights of the best validation relative L2 kept. "
        f"Training CPU s: process CPU time of the training loop (validation included), one thread, {args.jobs} run(s) at a "
        "time on a shared 2-core machine. The preset's "
        "numbers are its card's (metadata.json; its time is the CPU time of `fit` in its card, or the wall time where "
        "the card has none, validation included, Keras on 2 shared cores) and its measurement at 2N.",
        "",
        "Parameters: real numbers (a complex spectral weight counts as two; torch's own count, one per complex "
        "weight, is about half for the FNO).",
        "",
        "| problem | model | parameters | epochs | training CPU s | test rel. L2 at N | rel. L2 at 2N |",
        "|---|---|---|---|---|---|---|",
    ]
    for problem, records in results.items():
        card, at_2n = presets[problem]
        lines.append(
            f"| {problem} | FNO | {records[0]['parameters']:,} | {_report.spread([r['epochs'] for r in records])} | "
            f"{_report.spread([r['train_cpu_s'] for r in records])} | "
            f"{_report.spread([r['test']['relative_l2'] for r in records], '.4f')} | "
            f"{_report.spread([r['fresh_2n']['relative_l2'] for r in records], '.4f')} |"
        )
        lines.append(
            f"| {problem} | U-Net preset {problem}_unet_n{n} | {card['parameter_count']:,} | {card['recipe']['epochs']} | "
            f"{_preset_seconds(card['training'])} | {card['metrics']['test']['relative_l2']:.4f} | "
            f"{at_2n['relative_l2']:.4f} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["poisson", "darcy"], choices=["poisson", "darcy"])
    parser.add_argument("--resolution", type=int, default=16, help="N of the presets {problem}_unet_n{N}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", type=pathlib.Path, required=True, help="data sets and npz exports (outside the repository)")
    parser.add_argument("--fresh-samples", type=int, default=200)
    parser.add_argument("--fresh-seed", type=int, default=4242)
    parser.add_argument("--fno-venv", type=pathlib.Path, default=HERE / ".venv-fno")
    parser.add_argument("--venv-python", default="python3.12", help="the Python that creates --fno-venv when missing")
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--cpu-budget", type=float, default=240, help="training CPU seconds per run (one thread)")
    parser.add_argument("--jobs", type=int, default=1, help="FNO runs at once (each on one thread)")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a seed's record in --data-dir from an earlier run with the same FNO settings")
    parser.add_argument("--table-from", type=pathlib.Path,
                        help="rewrite this JSON of an earlier run and its table: its FNO records kept, the presets measured again")
    args = parser.parse_args(argv)
    if args.table_from:  # the FNO's records kept, the presets (perhaps retrained since) measured again
        saved = json.loads(args.table_from.read_text())
        old = argparse.Namespace(**saved["arguments"])
        presets = {}
        for problem in saved["presets"]:
            preset = store.preset_name(problem, old.resolution)
            _, fresh = export(preset, args.data_dir, old.fresh_samples, old.fresh_seed)
            presets[problem] = (kml.zoo.metadata(preset), preset_at_2n(preset, fresh))
        saved["presets"] = _presets_record(presets)
        args.table_from.write_text(json.dumps(saved, indent=1))
        lines = table(old, saved["command"], saved["fno"], presets)
        refreshed = " ".join(["python", "benchmarks/peers/fno_against_zoo.py", *(argv if argv is not None else sys.argv[1:])])
        _report.write([*lines, "", f"The presets' rows: measured again by `{refreshed}` (the FNO's records kept)."],
                      args.table_from.with_suffix(".md"))
        return
    python = make_venv(args.fno_venv, args.venv_python)
    args.out.mkdir(parents=True, exist_ok=True)
    presets, tasks = {}, []
    for problem in args.problems:
        preset = store.preset_name(problem, args.resolution)
        own, fresh = export(preset, args.data_dir, args.fresh_samples, args.fresh_seed)
        presets[problem] = (kml.zoo.metadata(preset), preset_at_2n(preset, fresh))
        print(f"{preset} at {2 * args.resolution}: rel. L2 {presets[problem][1]['relative_l2']:.4f}", flush=True)
        tasks += [(problem, seed, own, fresh) for seed in args.seeds]

    def one(task):
        problem, seed, own, fresh = task
        path = args.data_dir / f"fno_{problem}_n{args.resolution}_seed{seed}.json"
        if args.reuse and path.exists():  # an earlier run's record with the same FNO settings
            record = json.loads(path.read_text())
            same = {k: record["arguments"][k] for k in ("modes", "hidden", "layers", "learning_rate", "batch_size",
                                                        "max_epochs", "cpu_budget")}
            if same == {k: getattr(args, k) for k in same}:
                print(f"{problem} seed {seed}: reused {path}", flush=True)
            else:
                record = run_fno(args, python, own, fresh, seed, path)
        else:
            record = run_fno(args, python, own, fresh, seed, path)
        print(f"{problem} seed {seed}: {record['epochs']} epochs, {record['train_cpu_s']:.0f} CPU s, test rel. L2 "
              f"{record['test']['relative_l2']:.4f}, at 2N {record['fresh_2n']['relative_l2']:.4f}", flush=True)
        return record

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # each run is its own one-thread process
        records = list(pool.map(one, tasks))
    results = {problem: [r for (p, *_), r in zip(tasks, records) if p == problem] for problem in args.problems}
    stem = f"fno_zoo_n{args.resolution}"
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/peers/fno_against_zoo.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / f"{stem}.json").write_text(json.dumps({
        "command": command, "arguments": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
        "fno": results, "presets": _presets_record(presets),
    }, indent=1))
    _report.write(table(args, command, results, presets), args.out / f"{stem}.md")


if __name__ == "__main__":
    main()
