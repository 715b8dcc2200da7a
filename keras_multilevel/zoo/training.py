"""Training a preset from its recipe, retraining a shipped one, and evaluating on fresh data.

A preset's recipe (:mod:`keras_multilevel.zoo.recipe`) says everything its
training needs; :func:`train_recipe` executes it, :func:`create` writes the
result as a preset, :func:`train` retrains a shipped preset and compares it
with its card, :func:`evaluate` measures a preset on newly generated data.
"""

import contextlib
import copy
import dataclasses
import pathlib
import tempfile
import time

import keras

from keras_multilevel.zoo import store
from keras_multilevel.zoo.metrics import NAMES, measure, with_channel
from keras_multilevel.zoo.recipe import OPTIMIZER_KEYS, check_recipe, dataset_description

SPLITS = ("train", "validation", "test")
EVALUATION_SEED = 777


def _data(dataset, split, data_dir, batch_size, shuffle=False, progress=False):
    """One split of a data set description as ``(inputs, u[..., None])`` batches (generated if missing)."""
    from keras_multilevel import datasets

    return with_channel(
        datasets.load(
            dataset["name"],
            dataset["resolution"],
            split,
            data_dir,
            samples=dataset["samples"],
            seed=dataset["seed"],
            target=dataset["target"],
            batch_size=batch_size,
            shuffle=shuffle,
            progress=progress,
        )
    )


class _ValidationRecord(keras.callbacks.Callback):
    """Measures the validation split after each epoch (:func:`~keras_multilevel.zoo.metrics.metrics`).

    Adds ``val_l2``, ``val_relative_l2``, ``val_linf`` and ``val_loss``
    (= ``val_l2``, the MSE loss) to the epoch's logs, so that callbacks after
    it (``History``, ``EarlyStopping(monitor="val_loss")``) see them, and
    keeps one row per epoch in ``epochs``.
    """

    def __init__(self, validation, target=None):
        super().__init__()
        self.validation, self.target = validation, target
        self.epochs = []
        self.training_seconds = {"cpu_time_s": 0.0, "wall_time_s": 0.0}

    def on_epoch_begin(self, epoch, logs=None):
        self.started = {"cpu_time_s": time.process_time(), "wall_time_s": time.perf_counter()}

    def on_epoch_end(self, epoch, logs=None):
        now = {"cpu_time_s": time.process_time(), "wall_time_s": time.perf_counter()}
        for key, start in self.started.items():  # training time so far, tracing included, validation excluded
            self.training_seconds[key] += now[key] - start
        measured = measure(self.model, self.validation)
        values = {f"val_{name}": measured[name] for name in NAMES}
        logs.update(values, val_loss=measured["l2"])
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "work_units": float(logs["work_units"]),
               "training_cpu_time_s": self.training_seconds["cpu_time_s"],
               "training_wall_time_s": self.training_seconds["wall_time_s"]}
        self.epochs.append({**row, **values})
        if self.target is not None and measured["relative_l2"] <= self.target:
            self.model.stop_training = True


class _ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over epochs with the latest validation errors and work units."""

    def __init__(self, epochs, description):
        super().__init__()
        self.epochs, self.description, self.bar = epochs, description, None

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.epochs, desc=self.description, unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{logs['loss']:.3e}", val_rel_l2=f"{logs['val_relative_l2']:.4f}", WU=f"{logs['work_units']:.0f}"
        )

    def on_train_end(self, logs=None):
        self.bar.close()


def train_recipe(recipe, data_dir=None, progress=True, callbacks=(), target=None, steps_per_execution=1):
    """Trains the U-Net of a recipe from scratch on its (regenerated if missing) data set.

    ``kml.models.unet(N, **recipe["architecture"])``, seeded with
    ``keras.utils.set_random_seed(recipe["seed"])``, compiled with loss
    ``"mse"`` and ``kml.MultilevelOptimizer(levels=..., coarsening=...,
    schedule=..., smoother=recipe["smoother"])`` (the optimizer keys the recipe
    has), fitted for ``recipe["epochs"]`` epochs on the shuffled train split
    and measured on the validation split after each epoch. With
    ``coarsening="resolution"`` and a ``schedule`` this is coarse-to-fine
    training through the resolution hierarchy, Haber et al. (2018, §3.2) and
    Algorithm 1.

    Args:
        recipe: the recipe dict (:mod:`keras_multilevel.zoo.recipe`).
        data_dir: folder of the data sets (TFDS' default when None).
        progress: a tqdm bar over epochs (and over data generation if the
            data are missing); ``False`` is silent.
        callbacks: more Keras callbacks for ``fit``; they see ``val_loss``,
            ``val_relative_l2``, ``val_linf`` and ``work_units`` in the logs.
        target: ``None``, or a validation relative L2 at which training
            stops, after the first epoch that reaches it (at most
            ``recipe["epochs"]`` either way).
        steps_per_execution: batches per call of Keras' compiled train
            function (``model.compile(steps_per_execution=...)``): the same
            training, with Keras' per-batch cost (a Python call, the iterator,
            the callbacks) paid once per that many batches. That cost paces a
            coarse grid's small steps: on Poisson N = 32 the 8×8 grid's 100
            batches took 0.63 s of wall clock with 25 per call, 1.04 s with 1.

    Returns:
        ``(model, record)``: the trained model and ``{"wall_time_s",
        "cpu_time_s", "work_units", "epochs"}`` with one row per epoch (loss,
        cumulative work units, cumulative training CPU and wall seconds with
        tracing but without the validation, validation metrics). The wall time is that of
        ``fit`` (validation included, data generation excluded), the CPU time
        the process's over the same span (all its threads: on a shared
        machine the steadier of the two).
    """
    from keras_multilevel.models import unet
    from keras_multilevel.optimizers import MultilevelOptimizer

    if target is not None and not (isinstance(target, (int, float)) and not isinstance(target, bool) and target > 0):
        raise ValueError(f"`target` must be a positive validation relative L2, got {target!r}.")
    if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int) or steps_per_execution < 1:
        raise ValueError(f"`steps_per_execution` must be a positive integer, got {steps_per_execution!r}.")
    dataset = dataset_description(check_recipe(recipe))
    train = _data(dataset, "train", data_dir, recipe["batch_size"], shuffle=True, progress=progress)
    validation = _data(dataset, "validation", data_dir, recipe["batch_size"])
    keras.utils.set_random_seed(recipe["seed"])
    model = unet(recipe["resolution"], **recipe["architecture"])
    optimizer = {key: recipe[key] for key in OPTIMIZER_KEYS if key in recipe}
    smoother = keras.optimizers.get(copy.deepcopy(recipe["smoother"]))  # Keras deserializes nested configs in place
    model.compile(optimizer=MultilevelOptimizer(smoother=smoother, **optimizer), loss="mse",
                  steps_per_execution=steps_per_execution)
    record = _ValidationRecord(validation, target)
    bar = [_ProgressBar(recipe["epochs"], store.preset_name(dataset["name"], dataset["resolution"]))] if progress else []
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(train, epochs=recipe["epochs"], verbose=0, shuffle=False, callbacks=[record, *bar, *callbacks])
    wall_time, cpu_time = time.perf_counter() - start, time.process_time() - cpu_start
    return model, {"wall_time_s": wall_time, "cpu_time_s": cpu_time, "work_units": record.epochs[-1]["work_units"],
                   "epochs": record.epochs}


def create(recipe, presets_dir, data_dir=None, progress=True, tolerance=None, callbacks=(), overwrite=False):
    """Trains a recipe and writes it as the preset ``<presets_dir>/{problem}_unet_n{N}``; returns its metadata.

    The card's metrics are measured on the validation and test splits of
    the recipe's data set. ``tolerance`` and ``overwrite`` (an existing
    preset folder is refused before the training unless True): see
    :func:`~keras_multilevel.zoo.store.save_preset`; ``callbacks``: see :func:`train_recipe`.
    """
    dataset = dataset_description(check_recipe(recipe))
    folder = pathlib.Path(presets_dir) / store.preset_name(dataset["name"], dataset["resolution"])
    store.check_destination(folder, overwrite)
    model, record = train_recipe(recipe, data_dir, progress, callbacks)
    measured = {split: measure(model, _data(dataset, split, data_dir, recipe["batch_size"])) for split in SPLITS[1:]}
    return store.save_preset(model, folder, recipe, record, measured, tolerance, overwrite=overwrite)


def save_to_preset(model, folder, problem, *, target=None, samples=None, dataset_seed=0, data_dir=None,
                   training=None, tolerance=None, batch_size=32, overwrite=False):
    """Writes a model you trained yourself as a preset folder; returns its metadata (keras-hub's ``save_to_preset``).

    The folder gets what a shipped preset has: ``config.json``,
    ``model.weights.h5``, a model card ``README.md`` and ``metadata.json``
    with the metrics, data set, versions and the sha256 of the other files;
    ``kml.zoo.load(folder)`` verifies and loads it. The card's metrics are
    measured here on the validation and test splits of the data set the
    model was trained on (``problem`` at the model's input resolution,
    ``samples`` examples generated with ``dataset_seed``; generated if
    missing from ``data_dir``). Without a recipe the preset cannot be
    retrained by ``keras-multilevel zoo train``; for that, train with
    :func:`create`.

    Args:
        model: a Keras model from ``(N, N, 3)`` inputs to ``N x N`` values
            (such as ``kml.models.unet(N)``), built from standard or
            registered layers (presets are rebuilt in Keras' safe mode).
        folder: the preset folder; its name is the preset's name.
        problem: ``"poisson"`` or ``"darcy"``.
        target: the data set's target (default: its first, Darcy's ``"pressure"``).
        samples: examples in the data set (default 10,000), ``dataset_seed``: its generation seed.
        training: what the card says of the training, JSON, e.g.
            ``{"optimizer": "MultilevelOptimizer(levels=3, ...)", "epochs": 20}``.
        tolerance: see :func:`~keras_multilevel.zoo.store.save_preset`.
        batch_size: batches in which the metrics are measured.
        overwrite: replace an existing ``folder`` (else a ``FileExistsError``,
            before any measurement); the folder is replaced only once the new
            preset is completely written.
    """
    from keras_multilevel import datasets

    if problem not in datasets.NAMES:
        raise ValueError(f"`problem` must be one of {list(datasets.NAMES)}, got {problem!r}.")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(
            f"A PDE preset maps (N, N, 3) inputs (coefficient, x, y) to N x N values; the model's input "
            f"shape is {shape[1:]}."
        )
    store.check_destination(folder, overwrite)
    description = {"problem": problem, "resolution": shape[1], "samples": samples, "dataset_seed": dataset_seed, "target": target}
    dataset = dataset_description(description)
    measured = {split: measure(model, _data(dataset, split, data_dir, batch_size)) for split in SPLITS[1:]}
    return store.save_preset(model, folder, None, dict(training or {}), measured, tolerance, dataset=dataset,
                             overwrite=overwrite)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A test metric measured again against the value of a preset's card and its tolerance."""

    name: str
    metric: str
    card: float
    measured: float
    relative: float

    @property
    def limit(self):
        return self.card * (1 + self.relative)

    @property
    def passed(self):
        return self.measured <= self.limit

    def __str__(self):
        verdict = "within" if self.passed else "OUTSIDE"
        return (
            f"{self.name}: test {self.metric} {self.measured:.4f}, card {self.card:.4f}, limit "
            f"{self.limit:.4f} (card x (1 + {self.relative})): {verdict} the card's tolerance"
        )


def compare(metadata, measured):
    """:class:`Comparison` of ``measured`` metrics with the test metrics and tolerance of a preset's metadata."""
    tolerance = metadata["tolerance"]
    metric = tolerance["metric"]
    card = metadata["metrics"]["test"][metric]
    return Comparison(metadata["name"], metric, card, measured[metric], tolerance["relative"])


def train(name, out_dir, data_dir=None, progress=True, presets_dir=None, overwrite=False):
    """Retrains preset ``name`` from scratch with its recipe, into ``<out_dir>/<name>``.

    An existing ``<out_dir>/<name>`` is replaced only with ``overwrite``
    (else a ``FileExistsError`` before the training).

    The data set is regenerated if it is missing from ``data_dir`` (it is
    bitwise the same as the one the preset was trained on: same problem, N,
    samples and seed).

    Returns:
        ``(metadata, comparison)``: the new preset's metadata and the
        :class:`Comparison` of its test metric with the shipped card's
        (``comparison.passed`` when within the card's tolerance).
    """
    shipped = store.metadata(name, presets_dir)
    if shipped["recipe"] is None:
        raise ValueError(
            f"Preset {name!r} was saved without a recipe (kml.zoo.save_to_preset): it cannot be retrained. "
            "Presets made by kml.zoo.create(recipe, ...) can."
        )
    retrained = create(shipped["recipe"], out_dir, data_dir, progress, shipped["tolerance"], overwrite=overwrite)
    return retrained, compare(shipped, retrained["metrics"]["test"])


def evaluate(name, samples=200, seed=EVALUATION_SEED, resolution=None, data_dir=None, presets_dir=None):
    """Metrics of preset ``name`` on freshly generated examples it never saw.

    Generates ``samples`` new examples of the preset's problem (all three
    splits of a data set with ``samples`` examples and generation ``seed``:
    every one of them is new to the model) at the preset's resolution or at
    ``resolution`` (the model then moves there, see ``kml.zoo.load``), and
    measures them (:func:`~keras_multilevel.zoo.metrics.metrics`).

    Args:
        name: the preset.
        samples: examples to generate and measure, >= 3.
        seed: generation seed; the training data's seed at the same
            resolution is refused (those examples are the training set).
        resolution: ``None`` or ``M = N * 2^k``.
        data_dir: where to generate (and keep) the data; a temporary folder
            when None.
        presets_dir: folder of presets (default: the shipped ones).
    """
    from keras_multilevel.pde import builders

    trained_on = store.metadata(name, presets_dir)["dataset"]
    n = trained_on["resolution"] if resolution is None else resolution
    dataset = dict(trained_on, resolution=n, samples=samples, seed=seed)
    if (seed, dataset["resolution"]) == (trained_on["seed"], trained_on["resolution"]):
        raise ValueError(
            f"`seed` {seed} is the seed of {name}'s training data at N = {dataset['resolution']}: those "
            "examples are the ones it was trained on. Choose another seed."
        )
    builders.config(dataset["name"], dataset["resolution"], samples, seed)  # bad arguments fail before any work
    model = store.load(name, resolution, compile=False, presets_dir=presets_dir)
    with contextlib.nullcontext(data_dir) if data_dir is not None else tempfile.TemporaryDirectory() as folder:
        return measure(model, every_example(dataset, folder))


def every_example(dataset, data_dir, batch_size=32):
    """All three splits of a data set description, one after the other, as ``(inputs, u[..., None])`` batches."""
    splits = [_data(dataset, split, data_dir, batch_size) for split in SPLITS]
    return splits[0].concatenate(splits[1]).concatenate(splits[2])
