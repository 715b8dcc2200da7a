"""Single-level against multilevel training on co-centric circles (Gaedke-Merzhäuser et al., 2021, §4, Table 1).

One function trains one configuration; the demo and the Table 1 benchmark
both call it. Each configuration starts from the same initial weights and runs
full-batch V-cycles (Gaedke-Merzhäuser et al. (2021, Algorithm 3) with one batch) until the validation
accuracy reaches the target or the work-unit budget is spent. Wall time counts
the training steps, the first one's tracing and compilation included
(validation is evaluated between cycles, untimed).
"""

import time
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_multilevel.datasets import concentric_circles
from keras_multilevel.models import residual_network
from keras_multilevel.optimizers import MultilevelOptimizer


@dataclass
class Run:
    """The record of one training run, one entry per V-cycle."""

    levels: int
    steps: str
    cycle_work_units: float
    work_units: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    discarded_corrections: list = field(default_factory=list)
    model: object = field(default=None, repr=False)

    @property
    def cycles(self):
        return len(self.work_units)

    @property
    def seconds_per_cycle(self):
        """Median wall time of one V-cycle."""
        return float(np.median(self.durations[1:] if self.cycles > 1 else self.durations))

    @property
    def seconds(self):
        """Cumulative training wall time after each cycle, the first cycle's tracing included:
        the time a user waits."""
        return list(np.cumsum(self.durations))

    @property
    def trace_seconds(self):
        """The one-time cost of tracing and compiling: the first cycle's time beyond a median cycle."""
        return self.durations[0] - self.seconds_per_cycle

    def first_reaching(self, accuracy=None, loss=None):
        """Index of the first cycle with validation accuracy >= ``accuracy``
        (or training loss <= ``loss``), or None."""
        if accuracy is not None:
            hits = np.flatnonzero(np.asarray(self.val_accuracy) >= accuracy - 1e-9)
        else:
            hits = np.flatnonzero(np.asarray(self.loss) <= loss)
        return int(hits[0]) if hits.size else None


def circles_data(train=2000, validation=1000, seed=0):
    """The 2,000 / 1,000 split of Gaedke-Merzhäuser et al. (2021, §4), drawn with two independent seeds."""
    return concentric_circles(train, seed=seed), concentric_circles(validation, seed=seed + 1)


def train_circles(
    levels,
    data,
    blocks=2048,
    width=3,
    steps=None,
    learning_rate=0.1,
    regularization=1e-4,
    target_accuracy=1.0,
    budget=100.0,
    seed=0,
    jit_compile=False,
    progress=None,
    **options,
):
    """Trains the Gaedke-Merzhäuser et al. (2021, §4) circles ResNet with ``levels`` levels by full-batch V-cycles.

    Args:
        levels: number of levels (1 = plain gradient descent).
        data: ``((x, y), (x_val, y_val))`` as from :func:`circles_data`.
        blocks, width: the network (Gaedke-Merzhäuser et al., 2021: 2,048 blocks of width 3, ``T = 1``).
        steps: level-optimizer steps (``None``: the set-up of Gaedke-Merzhäuser et al., 2021, §4.1).
        learning_rate: gradient-descent step on every level (Gaedke-Merzhäuser et al., 2021: 0.1);
            ``None`` for ``scheme="rmtr"``, which has no smoother.
        regularization: Tikhonov ``beta`` (Gaedke-Merzhäuser et al., 2021: ``1e-4``).
        target_accuracy: stop when the validation accuracy reaches it.
        budget: stop after this many work units at the latest.
        seed: seed of the initial weights (the same for every configuration).
        progress: optional callable ``progress(run)`` called after each cycle.
        **options: further arguments of :class:`MultilevelOptimizer`
            (``learning_rate_divisor``, ``correction_test``, ...).
    """
    (x, y), (x_val, y_val) = data
    keras.utils.set_random_seed(seed)
    model = residual_network(x.shape[1:], outputs=y.shape[1], width=width, blocks=blocks)
    optimizer = MultilevelOptimizer(
        levels=levels,
        smoother=None if learning_rate is None else keras.optimizers.SGD(learning_rate),
        steps=steps,
        regularization=regularization,
        **options,
    )
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    run = Run(levels, str(optimizer.steps), optimizer.cycle_work_units, model=model)
    while True:
        start = time.perf_counter()
        logs = model.train_on_batch(x, y, return_dict=True)
        run.durations.append(time.perf_counter() - start)
        _, accuracy = model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)
        run.work_units.append(float(logs["work_units"]))
        run.loss.append(float(logs["loss"]))
        run.val_accuracy.append(float(accuracy))
        run.discarded_corrections.append(float(logs.get("discarded_corrections", 0.0)))
        if progress is not None:
            progress(run)
        if accuracy >= target_accuracy - 1e-9 or run.work_units[-1] >= budget:
            return run


def table(runs, target_accuracy):
    """A Markdown table in the shape of Gaedke-Merzhäuser et al. (2021, Table 1), with wall time (tracing included) beside work units.

    The first run is the baseline (single level). Runs are compared at two
    references: the validation accuracy ``a`` (the target, or the best the
    baseline reached if it never reached the target) and the training loss
    ``l`` the baseline ended with. Speed-ups are the baseline's work units (and
    wall time) to a reference divided by the run's. The last column checks the
    cost model: measured seconds per V-cycle over ``U_c`` times the baseline's
    seconds per step. The training loss of a cycle is the one Keras reports,
    at the start of the cycle, which is conservative for costly cycles.
    """
    baseline = runs[0]
    accuracy = min(target_accuracy, max(baseline.val_accuracy))
    loss = baseline.loss[-1]
    note = "" if accuracy == target_accuracy else (
        f" (the target {target_accuracy:g} was not reached by L = {baseline.levels}: a is the best it reached)"
    )
    lines = [
        f"References: validation accuracy a = {accuracy:.3f}{note}; training loss l = {loss:.4f}, "
        f"the last of L = {baseline.levels}.",
        "",
        "| L | optimizer set-up | U_c | V-cycles to a | U to a | speed-up in U to a | speed-up in time to a "
        "| U to l | speed-up in U to l | speed-up in time to l | best val. acc. | final loss | s / V-cycle "
        "| s / V-cycle ÷ (U_c · s / fine step) |",
        "|" + "---|" * 14,
    ]

    def reached(run, **reference):
        hit, base = run.first_reaching(**reference), baseline.first_reaching(**reference)
        if hit is None:
            return None, [f"> {run.work_units[-1]:.0f}", "-", "-"]
        return hit, [
            f"{run.work_units[hit]:.0f}",
            f"{baseline.work_units[base] / run.work_units[hit]:.2f}",
            f"{baseline.seconds[base] / run.seconds[hit]:.2f}",
        ]

    for run in runs:
        hit, to_accuracy = reached(run, accuracy=accuracy)
        _, to_loss = reached(run, loss=loss)
        cycles = f"> {run.cycles}" if hit is None else str(hit + 1)
        ratio = run.seconds_per_cycle / (run.cycle_work_units * baseline.seconds_per_cycle)
        lines.append(
            f"| {run.levels} | `{run.steps}` | {run.cycle_work_units:.2f} | {cycles} | "
            + " | ".join(to_accuracy + to_loss)
            + f" | {max(run.val_accuracy):.3f} | {run.loss[-1]:.4f} | {run.seconds_per_cycle:.3f} | {ratio:.2f} |"
        )
    lines.append("")
    lines.append(
        "One-time tracing and compilation, included in the times above, s: "
        + ", ".join(f"L = {run.levels}: {run.trace_seconds:.1f}" for run in runs)
    )
    return "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(runs, path, title):
    """Saves loss (solid) and validation accuracy (dashed) against work units (as Gaedke-Merzhäuser et al., 2021, Figure 4)
    and against seconds, tracing included."""
    plt = _pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for loss_axis, xlabel, abscissa in (
        (axes[0], "work units (fine gradient evaluations, Gaedke-Merzhäuser et al., 2021, eq 10)", lambda run: run.work_units),
        (axes[1], "seconds, tracing and compilation included", lambda run: run.seconds),
    ):
        accuracy_axis = loss_axis.twinx()
        for run in runs:
            (line,) = loss_axis.plot(abscissa(run), run.loss, label=f"L = {run.levels}")
            accuracy_axis.plot(abscissa(run), run.val_accuracy, "--", color=line.get_color())
        loss_axis.set_xlabel(xlabel)
        loss_axis.set_ylabel("training loss (solid)")
        accuracy_axis.set_ylabel("validation accuracy (dashed)")
        accuracy_axis.set_ylim(0.0, 1.01)
        loss_axis.legend(loc="center right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_decision_boundaries(runs, data, path):
    """Saves each trained network's predicted class over the plane, with the validation points."""
    plt = _pyplot()

    _, (x_val, y_val) = data
    grid = np.linspace(-3.2, 3.2, 161, dtype="float32")
    xx, yy = np.meshgrid(grid, grid)
    plane = np.stack([xx.ravel(), yy.ravel()], axis=1)
    figure, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.2), squeeze=False)
    for axis, run in zip(axes[0], runs):
        ring = run.model.predict(plane, batch_size=len(plane), verbose=0)[:, 1].reshape(xx.shape)
        axis.contourf(xx, yy, ring, levels=[0.0, 0.5, 1.0], colors=["#cfe3f3", "#f6d5c5"])
        axis.contour(xx, yy, ring, levels=[0.5], colors="k", linewidths=1)
        axis.scatter(*x_val.T, c=np.argmax(y_val, axis=1), cmap="coolwarm", s=3)
        axis.set_title(f"L = {run.levels}: val. acc. {run.val_accuracy[-1]:.3f} after {run.work_units[-1]:.0f} WU")
        axis.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
