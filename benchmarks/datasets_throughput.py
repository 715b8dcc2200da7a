"""Samples per second of the FEniCSx data generation (Ponce et al., 2022, §8.1 Poisson, §8.2 Darcy).

For each problem, N in (32, 64) and 1 or 2 worker processes, generates a
fresh data set (raw shards, :mod:`keras_multilevel.pde.generation`) into
a temporary folder and times it end to end: process start-up and form
loading included. 1 worker runs in this process; 2 workers are this process
and one fresh process, as in ``keras-multilevel datasets generate``. The configurations are interleaved and repeated, and the best of
the repeats is reported (the machine is shared). Writes a Markdown table.

    python benchmarks/datasets_throughput.py --out benchmarks/results/datasets_throughput.md
"""

import argparse
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

from keras_multilevel.pde import generation, problems

# Even numbers of 100-example shards, so that two workers get equal shares.
SAMPLES = {("poisson", 32): 6000, ("poisson", 64): 1200, ("darcy", 32): 2800, ("darcy", 64): 800}


def steady_state_ms(name, resolution, count=100):
    """Milliseconds per example in one process once the forms are compiled."""
    problem = problems.get(name)
    solver = problem.make_solver(resolution)
    problems.make_example(problem, solver, 0, 0)
    begin = time.perf_counter()
    for index in range(count):
        problems.make_example(problem, solver, 0, index)
    return (time.perf_counter() - begin) / count * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/datasets_throughput.md")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sample counts")
    args = parser.parse_args(argv)
    rates = {}
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        for (name, n), samples in SAMPLES.items():
            samples = max(20, int(samples * args.scale))
            for workers in (1, 2):
                root = tempfile.mkdtemp(prefix="kml-bench-")
                try:
                    report = generation.generate(name, n, samples, seed=repeat, workers=workers, root=root,
                                                 progress=False)
                finally:
                    shutil.rmtree(root)
                rate = report.generated / report.seconds
                rates.setdefault((name, n, workers), []).append((rate, samples, report.seconds))
                print(f"{name} N={n} workers={workers}: {samples} in {report.seconds:.2f} s = {rate:.1f}/s", flush=True)
    steady = {(name, n): steady_state_ms(name, n) for name, n in SAMPLES}
    command = "python benchmarks/datasets_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Data generation throughput (Ponce et al., 2022, §8.1 Poisson, §8.2 Darcy)",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, noisy); "
        f"best of {args.repeats} interleaved repeats; wall time end to end (worker start-up, form loading, "
        f"solves, shard writes). Load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
        "",
        "| problem | N | samples | 1 worker: samples/s | 2 workers: samples/s | speed-up (best/best) "
        "| speed-up of each repeat | one solve, steady state (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, n in SAMPLES:
        one = max(rates[(name, n, 1)])
        two = max(rates[(name, n, 2)])
        lines.append(
            f"| {name} | {n} | {one[1]} | {one[0]:.0f} | {two[0]:.0f} | {two[0] / one[0]:.2f}x | "
            + ", ".join(f"{b[0] / a[0]:.2f}x" for a, b in zip(rates[(name, n, 1)], rates[(name, n, 2)]))
            + f" | {steady[(name, n)]:.2f} |"
        )
    poisson_one = max(rates[("poisson", 32, 1)])[0]
    lines += ["", "Targets (issue 3 §6):", ""]
    lines.append(
        f"- Poisson N = 32, one worker (one core): {poisson_one:.0f} samples/s against >= 200 "
        + ("(met)." if poisson_one >= 200 else f"(missed by {100 * (1 - poisson_one / 200):.0f} %).")
    )
    for name, n in SAMPLES:
        ratio = max(rates[(name, n, 2)])[0] / max(rates[(name, n, 1)])[0]
        verdict = "met" if ratio >= 1.8 else f"missed by {100 * (1 - ratio / 1.8):.1f} %"
        lines.append(f"- {name} N = {n}, 2 workers vs 1: {ratio:.2f}x against >= 1.8x ({verdict}).")
    lines += [
        "",
        "Where two workers lose time: the second worker is a fresh process that imports numpy and DOLFINx and "
        "loads the compiled forms (about 0.6 s, overlapped with worker 0's own set-up but not with its solves); "
        "shards are taken one at a time from a queue, but the run ends with the last 100-example shard; this "
        "process also reads the worker's progress; and other jobs on this shared 2-core machine take turns on "
        "the same cores (see the load average and the spread between repeats).",
    ]
    table = "\n".join(lines) + "\n"
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
