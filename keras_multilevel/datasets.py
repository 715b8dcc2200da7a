"""Datasets: the co-centric circles toy problem and the PDE regression data.

`concentric_circles` is the classification problem of Gaedke-Merzhäuser et
al. (2021, §4, eq 11). The PDE datasets
(Poisson, Darcy) are regenerated with FEniCSx by the TFDS builders of the
top-level ``datasets/`` folder (installed as ``keras_multilevel.pde``);
this module is their thin public front.
"""

import contextlib
import logging
import shutil
import sys

import numpy as np

# Importing the builders registers them with TFDS: tfds.builder("poisson"), tfds.load("darcy/n48").
from keras_multilevel.pde import builders, problems


def concentric_circles(samples, seed=0):
    """Samples the co-centric circles problem of Gaedke-Merzhäuser et al. (2021, §4) as its source defines it.

    Gaedke-Merzhäuser et al. (2021) take the problem from Lin & Jegelka (2018, "ResNet with
    one-neuron hidden layers is a universal approximator", the unit-ball
    classification of their Figure 1): class 0 is the unit disc
    ``||x|| <= 1``, class 1 the ring ``2 <= ||x|| <= 3``, with nothing in
    the gap ``1 < ||x|| < 2`` or outside the ring. Gaedke-Merzhäuser et al. (2021, eq 11) as printed
    (inputs anywhere in ``[-3, 3]^2``, class 1 the ring, class 0 the rest,
    corners included) is a harder problem that a width-3 network trained by
    gradient descent does not learn within thousands of steps; that reading
    is not used.

    Choices of ours, which the sources do not state: the two classes are
    equally likely (so the majority class is 0.5, not the ring's area
    share 5/6), and points are uniform by area within their class's region.

    Args:
        samples: number of points, a positive integer.
        seed: integer seed of the NumPy generator.

    Returns:
        ``(x, y)``: float32 arrays of shapes ``(samples, 2)`` and
        ``(samples, 2)``, ``y`` one-hot.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples <= 0:
        raise ValueError(f"`samples` must be a positive integer, got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=samples)
    # Uniform by area in the annulus r0 <= r <= r1: r^2 uniform in [r0^2, r1^2].
    inner, outer = np.where(label == 1, 2.0, 0.0), np.where(label == 1, 3.0, 1.0)
    radius = np.sqrt(rng.uniform(inner**2, outer**2))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=samples)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype("float32")
    return x, np.eye(2, dtype="float32")[label]


NAMES = problems.NAMES
# The features a model can be trained on, the default first (keras_multilevel.pde.problems, the registry).
TARGETS = {name: problem.targets for name, problem in problems.PROBLEMS.items()}


def builder(name, resolution=32, samples=None, seed=0, data_dir=None):
    """The TFDS builder of a PDE data set (Ponce et al., 2022, §8.1 Poisson, §8.2 Darcy), not yet prepared.

    Raises ValueError naming the argument for an unknown ``name``, a
    ``resolution`` that is not an integer >= 4, ``samples`` < 3 or a ``seed``
    that is not a non-negative integer.
    """
    cls, cfg = builders.BUILDERS[_check_name(name)], builders.config(name, resolution, samples, seed)
    with _quiet_absl():
        return cls(config=cfg.name, data_dir=data_dir)  # TFDS finds every config by its name


@contextlib.contextmanager
def _quiet_absl():
    """TFDS warns through absl for every custom config and about half-written variant folders."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def _check_name(name):
    if name not in NAMES:
        raise ValueError(f"`name` must be one of {list(NAMES)}, got {name!r}.")
    return name


def prepare(name, resolution=32, samples=None, seed=0, data_dir=None, workers=1, progress=True):
    """Generates the data set with FEniCSx if it is missing or damaged (resumable); returns the prepared builder.

    Records on disk are first checked against their checksums
    (``keras_multilevel.pde.integrity``); damaged ones are rewritten,
    with a warning line saying what was wrong. The data set's folder is
    locked while it is written: a second run raises
    ``keras_multilevel.pde.locks.Busy`` naming the first.
    """
    from keras_multilevel.pde import generation, integrity, locks

    workers = problems.check_positive(workers, "workers")
    cfg = builders.config(_check_name(name), resolution, samples, seed)
    folder = builders.version_folder(name, cfg, data_dir)
    if folder.exists() and integrity.check(folder) is None:
        return builder(name, resolution, samples, seed, data_dir)
    generation.validate(name, cfg.resolution, cfg.samples, cfg.seed, workers)  # fits in memory, before any folder
    generation.check_out(folder.parents[2], "data_dir")
    with locks.holding(folder.parent):
        if folder.exists():  # checked again under the lock: another run may have written it meanwhile
            damage = integrity.check(folder)
            if damage is None:
                return builder(name, resolution, samples, seed, data_dir)
            print(f"warning: {damage}; rewriting the records", file=sys.stderr)
            shutil.rmtree(folder)
        dataset_builder = builder(name, resolution, samples, seed, data_dir)
        dataset_builder.workers, dataset_builder.progress = workers, progress
        import tensorflow_datasets as tfds

        tfds.display_progress_bar(False)
        try:
            with _quiet_absl():
                dataset_builder.download_and_prepare()  # removes killed runs' leftovers, seals the records
        finally:
            tfds.display_progress_bar(True)
    return dataset_builder


def load(
    name,
    resolution=32,
    split="train",
    data_dir=None,
    *,
    samples=None,
    seed=0,
    target=None,
    batch_size=32,
    shuffle=False,
    workers=1,
    progress=True,
):
    """A PDE data set of Ponce et al. (2022, §8) as a ``tf.data.Dataset`` of ``(inputs, target)`` for ``model.fit``.

    The data are generated with FEniCSx first when they are missing from
    ``data_dir`` (TFDS' default folder when None), with a progress bar.

    Args:
        name: ``"poisson"`` (Ponce et al., 2022, §8.1) or ``"darcy"`` (Ponce et al., 2022, §8.2).
        resolution: N >= 4; inputs and targets are N×N grids of cell centres.
        split: ``"train"``, ``"validation"`` or ``"test"`` (TFDS slicing such
            as ``"train[:10%]"`` is accepted).
        data_dir: where the data set lives (and is generated).
        samples: examples in all splits (default 10,000: 8,000/1,000/1,000).
        seed: non-negative integer; the same seed gives bitwise-identical data.
        target: Poisson ``"target"`` (u); Darcy ``"pressure"`` (default) or
            ``"outflow_flux"`` (Q, eq 43).
        batch_size: batch size, or None for single examples.
        shuffle: shuffle examples (buffer of the whole split, fixed seed).
        workers: processes used if the data must be generated.
        progress: show the generation progress bar.

    Returns:
        ``tf.data.Dataset`` of ``(inputs (N, N, 3), target)`` float32 pairs.
    """
    _check_name(name)
    target = TARGETS[name][0] if target is None else target
    if target not in TARGETS[name]:
        raise ValueError(f"`target` for {name!r} must be one of {list(TARGETS[name])}, got {target!r}.")
    if not isinstance(split, str) or split.split("[")[0] not in ("train", "validation", "test"):
        raise ValueError(f"`split` must be one of ['train', 'validation', 'test'], got {split!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}.")
    import tensorflow as tf

    dataset_builder = prepare(name, resolution, samples, seed, data_dir, workers, progress)
    with _quiet_absl():  # TFDS' own deprecation warnings about its FeatureConnector.dtype
        dataset = dataset_builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(
        lambda example: (example["inputs"], tf.cast(example[target], tf.float32)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        dataset = dataset.shuffle(dataset_builder.info.splits[split].num_examples, seed=seed)
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
