"""Preset folders: writing, integrity checks, safe loading, listing.

A preset is a folder ``<presets>/<name>/`` (keras-hub style names,
``{problem}_unet_n{N}``) of four files:

``config.json``
    the architecture, ``keras.saving.serialize_keras_object(model)`` (without
    a compile config), rebuilt with ``safe_mode=True``: no code is executed.
``model.weights.h5``
    ``model.save_weights``.
``README.md``
    the model card (:func:`keras_multilevel.zoo.card.card`).
``metadata.json``
    what the card says, as data: recipe, data set, metrics, tolerance,
    versions, and the sha256 of the three files above (it cannot hold its
    own hash; it is only ever parsed as JSON, and every field the library
    reads is checked against :data:`SCHEMA` when it is: a malformed one is
    an :class:`IntegrityError` naming the file and the field).
"""

import datetime
import hashlib
import importlib.metadata
import json
import math
import pathlib
import os
import platform
import reprlib
import shutil
import tempfile
import warnings

import keras

from keras_multilevel import _version, presets
from keras_multilevel.zoo import card as cards
from keras_multilevel.zoo.metrics import NAMES
from keras_multilevel.zoo.recipe import check_recipe, dataset_description

PRESETS = pathlib.Path(presets.__file__).parent  # the repository's top-level zoo/, in the wheel
HASHED = ("config.json", "model.weights.h5", "README.md")
DEFAULT_TOLERANCE = {"metric": "relative_l2", "relative": 0.25}


class IntegrityError(ValueError):
    """A preset file does not match the sha256 that its metadata.json records, or metadata.json is malformed."""


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_count(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


_STRING, _OBJECT = ("a string", lambda value: isinstance(value, str)), ("an object", lambda value: isinstance(value, dict))
_NUMBER, _COUNT = ("a finite number", _is_number), ("an integer >= 0", _is_count)
_METRICS = {name: _NUMBER for name in NAMES}
# Every field of metadata.json that the library reads: (what it must be, the check), or the schema of an object.
SCHEMA = {
    "name": _STRING,
    "task": _STRING,
    "problem": _STRING,
    "target": _STRING,
    "resolution": _COUNT,
    "parameter_count": _COUNT,
    "recipe": ("an object or null", lambda value: value is None or isinstance(value, dict)),
    "dataset": {"name": _STRING, "target": _STRING, "resolution": _COUNT, "samples": _COUNT, "seed": _COUNT},
    "metrics": {"validation": _METRICS, "test": _METRICS},
    "tolerance": {"metric": ("one of " + ", ".join(NAMES), lambda value: value in NAMES), "relative": _NUMBER},
    "training": _OBJECT,
    "files": ("an object of sha256 strings", lambda value: isinstance(value, dict)
              and all(isinstance(digest, str) for digest in value.values())),
}


def _check_schema(value, schema, path, prefix=""):
    """Raises :class:`IntegrityError` naming ``path`` and the first field of ``value`` that ``schema`` refuses."""
    if not isinstance(value, dict):
        where = f"field `{prefix[:-1]}`" if prefix else "top level"
        raise IntegrityError(
            f"{path} is malformed: its {where} must be an object, got {type(value).__name__}; reinstall "
            "keras-multilevel or re-train the preset."
        )
    for key, expected in schema.items():
        if key not in value:
            raise IntegrityError(
                f"{path} is malformed: it lacks the field `{prefix}{key}`; reinstall keras-multilevel or re-train "
                "the preset."
            )
        if isinstance(expected, dict):
            _check_schema(value[key], expected, path, f"{prefix}{key}.")
        elif not expected[1](value[key]):
            raise IntegrityError(
                f"{path} is malformed: the field `{prefix}{key}` must be {expected[0]}, got {reprlib.repr(value[key])}; reinstall "
                "keras-multilevel or re-train the preset."
            )


def preset_name(problem, resolution):
    """The keras-hub style name of a preset, e.g. ``poisson_unet_n32``."""
    return f"{problem}_unet_n{resolution}"


def sha256(path):
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions():
    import numpy
    import tensorflow

    return {
        "keras_multilevel": _version.__version__,
        "keras": keras.__version__,
        "tensorflow": tensorflow.__version__,
        "dolfinx": importlib.metadata.version("dolfinx-solver-real"),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def check_destination(folder, overwrite):
    """Raises ``FileExistsError`` when ``folder`` exists and ``overwrite`` is False (call it before a long training)."""
    if os.path.lexists(folder) and not overwrite:
        raise FileExistsError(
            f"{folder} exists already: pass overwrite=True (keras-multilevel zoo train --overwrite) to replace it, "
            "or choose another folder."
        )


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_preset(model, folder, recipe, record, metrics, tolerance=None, dataset=None, overwrite=False):
    """Writes ``model`` as a preset folder and returns its metadata.

    The files are written to a new temporary folder beside ``folder``, which
    is then renamed into place: a write that fails (a full disk) leaves the
    previous preset as it was and no temporary folder behind, and a preset is
    never half written.

    Args:
        model: the trained Keras model.
        folder: the preset folder, conventionally ``<presets>/<preset_name(problem, N)>``;
            its name is the preset's name.
        recipe: the training recipe (:mod:`keras_multilevel.zoo.recipe`), or
            ``None`` for a model trained otherwise (it cannot be retrained;
            ``dataset`` then says what it was trained on).
        record: the training record of :func:`~keras_multilevel.zoo.training.train_recipe`
            (``wall_time_s``, ``work_units``, ``epochs``), or, without a recipe,
            what its author says of the training (JSON).
        dataset: the data set description (:func:`~keras_multilevel.zoo.recipe.dataset_description`),
            only without a recipe.
        metrics: ``{"validation": {...}, "test": {...}}``, each of
            :func:`keras_multilevel.zoo.metrics.metrics` on that split.
        tolerance: ``{"metric": name, "relative": r}``: a retrained model or a fresh
            sample must reach ``metric <= card value * (1 + r)`` on test data
            (default ``relative_l2`` within 25%).
        overwrite: replace an existing ``folder``; without it an existing
            folder is a ``FileExistsError`` and is left alone.

    Returns:
        The metadata dict written to ``metadata.json``.
    """
    if recipe is not None:
        dataset = dataset_description(check_recipe(recipe))
    elif dataset is None:
        raise ValueError("A preset without a `recipe` needs the `dataset` it was trained on.")
    try:
        json.dumps(record)
    except TypeError as error:
        raise ValueError(f"The training record must be JSON (numbers, strings, lists, dicts): {error}.") from None
    folder = pathlib.Path(folder)
    check_destination(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        metadata = _write_preset(model, staging, folder.name, recipe, record, metrics, tolerance, dataset)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private; a preset is not
        _replace(staging, folder, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metadata


def _replace(staging, folder, overwrite):
    """Renames the finished preset ``staging`` to ``folder``; an existing ``folder`` goes only once it is in place."""
    if not os.path.lexists(folder):
        os.rename(staging, folder)
        return
    check_destination(folder, overwrite)  # another process may have written it during the training
    previous = staging.with_name(staging.name + ".previous")
    os.rename(folder, previous)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(previous, folder)
        raise
    if previous.is_dir() and not previous.is_symlink():
        shutil.rmtree(previous)
    else:
        previous.unlink()


def _write_preset(model, folder, name, recipe, record, metrics, tolerance, dataset):
    """Writes the four files of preset ``name`` into the empty ``folder``; returns the metadata."""
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # the preset is architecture and weights; load() compiles
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    model.save_weights(folder / "model.weights.h5")
    metadata = {
        "name": name,
        "task": "regression",
        "problem": dataset["name"],
        "target": dataset["target"],
        "resolution": dataset["resolution"],
        "parameter_count": model.count_params(),
        "recipe": recipe,
        "dataset": dataset,
        "metrics": metrics,
        "tolerance": dict(DEFAULT_TOLERANCE if tolerance is None else tolerance),
        "training": record,
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / "README.md").write_text(cards.card(metadata))
    metadata["files"] = {file: sha256(folder / file) for file in HASHED}
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def _folder(presets_dir):
    return pathlib.Path(PRESETS if presets_dir is None else presets_dir)


def names(presets_dir=None):
    """The names of the presets in ``presets_dir`` (default: the shipped ones), sorted."""
    folder = _folder(presets_dir)
    return sorted(path.parent.name for path in folder.glob("*/metadata.json")) if folder.is_dir() else []


def preset_folder(name, presets_dir=None):
    """The folder of preset ``name``; ``ValueError`` listing the available names if there is none."""
    available = names(presets_dir)
    if name not in available:
        raise ValueError(
            f"Unknown preset {name!r} in {_folder(presets_dir)}. Available presets: "
            f"{', '.join(available) if available else 'none'}."
        )
    return _folder(presets_dir) / name


def metadata(name, presets_dir=None):
    """The parsed ``metadata.json`` of preset ``name``, checked against :data:`SCHEMA` (else :class:`IntegrityError`)."""
    path = preset_folder(name, presets_dir) / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IntegrityError(
            f"{path} is not valid JSON ({error}); reinstall keras-multilevel or re-train the preset."
        ) from None
    except RecursionError:
        raise IntegrityError(
            f"{path} is not valid metadata (JSON nested too deeply to read); reinstall keras-multilevel or re-train "
            "the preset."
        ) from None
    _check_schema(meta, SCHEMA, path)
    return meta


def verify(name, presets_dir=None):
    """Checks every file that ``metadata.json`` hashes; returns the metadata.

    Raises:
        IntegrityError: a file is missing or its sha256 differs (the message
            names the file and both hashes).
    """
    folder = preset_folder(name, presets_dir)
    meta = metadata(name, presets_dir)
    recorded = meta.get("files", {})
    for file in HASHED:
        path = folder / file
        if file not in recorded or not path.is_file():
            raise IntegrityError(
                f"Preset {name!r}: {path} is missing or has no sha256 in metadata.json. Reinstall "
                f"keras-multilevel, or re-train the preset with `keras-multilevel zoo train {name}`."
            )
        actual = sha256(path)
        if actual != recorded[file]:
            raise IntegrityError(
                f"Preset {name!r}: {path} is corrupt or was modified: sha256 {actual}, metadata.json "
                f"expects {recorded[file]}. Reinstall keras-multilevel, or re-train the preset with "
                f"`keras-multilevel zoo train {name}`."
            )
    return meta


def _lambda_layers(config):
    """Names of the Lambda layers anywhere in a serialized config."""
    if isinstance(config, list):
        return [name for item in config for name in _lambda_layers(item)]
    if not isinstance(config, dict):
        return []
    found = [config.get("config", {}).get("name", "?")] if config.get("class_name") == "Lambda" else []
    return found + [name for value in config.values() for name in _lambda_layers(value)]


def build(config, source):
    """The model of a serialized ``config`` (safe mode: no Lambda layer, no code); ``source`` names it in errors."""
    lambdas = _lambda_layers(config)
    if lambdas:
        raise ValueError(
            f"{source} contains Lambda layers ({', '.join(lambdas)}), which would run arbitrary code: "
            "presets are refused with them. Rebuild the model from standard or registered layers."
        )
    import keras_multilevel.layers.transforms  # noqa: F401  registers LogCoefficient (keras.ops only, any backend)

    try:
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"{source} cannot be rebuilt in Keras' safe mode: {error}. Presets hold standard Keras "
            "layers and keras_multilevel's registered ones only; reinstall keras-multilevel or re-train the preset."
        ) from None


def _locate(preset, presets_dir):
    """``(name, presets_dir)`` of a preset given by name, or by the path of its folder (keras-hub's ``from_preset(path)``)."""
    path = pathlib.Path(preset)
    if presets_dir is None and (path.parent != pathlib.Path(".") or (path / "metadata.json").is_file()):
        if not (path / "metadata.json").is_file():
            raise ValueError(
                f"{path} is not a preset folder: it has no metadata.json. Give a preset name "
                f"(kml.zoo.names(): {', '.join(names())}) or the folder of one."
            )
        return path.resolve().name, path.resolve().parent
    return str(preset), presets_dir


def load(name, resolution=None, compile=True, presets_dir=None):
    """A pretrained model of the zoo, verified, rebuilt safely and ready to use.

    Every file is checked against the sha256 in ``metadata.json`` first
    (:func:`verify`); the architecture is rebuilt from ``config.json`` in
    Keras' safe mode (no code is executed) and the weights are loaded.

    Args:
        name: a preset name, e.g. ``"poisson_unet_n32"`` (see ``kml.zoo.list_presets()``),
            or the path of a preset folder (one written by ``kml.zoo.create``
            or ``keras-multilevel zoo train``), as keras-hub's ``from_preset(path)``.
        resolution: ``None`` for the preset's own ``N``, or ``M = N * 2^k``:
            the network moved to ``M x M`` inputs without retraining
            (:func:`kml.hierarchy.at_resolution`): a pyramid U-Net (every
            shipped preset) by its grids, at ``N/2`` without its finest
            grid, at ``2N`` with a finer grid added that starts from the
            ``N`` network's prediction on the averaged input, bilinearly
            prolongated; another U-Net with its stencils transferred
            (Haber et al., 2018, §3.2), which at finer ``M`` loses most of
            its accuracy (a warning says so). The repository's
            ``benchmarks/results/resolution_transfer.md`` measures both.
        compile: compile with loss ``"mse"`` and a plain Adam, so that
            ``evaluate`` and ``fit`` work at once.
        presets_dir: folder of presets (default: the shipped ones).

    Raises:
        ValueError: unknown name (the message lists the available ones), a
            resolution that is not ``N * 2^k``, or a config.json that cannot be
            rebuilt safely.
        IntegrityError: a file does not match its recorded sha256.
    """
    name, presets_dir = _locate(name, presets_dir)
    meta = verify(name, presets_dir)
    folder = preset_folder(name, presets_dir)
    model = build(json.loads((folder / "config.json").read_text()), folder / "config.json")
    model.load_weights(folder / "model.weights.h5")
    if resolution is not None and resolution != meta["resolution"]:
        from keras_multilevel.hierarchy import at_resolution
        from keras_multilevel.hierarchy.pyramid import is_pyramid_unet

        pyramid = is_pyramid_unet(model)  # from the network itself: a preset saved without a recipe may be one too
        model = at_resolution(model, resolution, coarsening="pyramid" if pyramid else "resolution")
        if resolution > meta["resolution"] and not pyramid:
            warnings.warn(
                f"{name} was trained at N = {meta['resolution']}; on {resolution}x{resolution} inputs its "
                "3x3 stencils keep their values (Haber et al.'s (2018, §4.1) original kernels) but span half the physical "
                "distance: the zoo's presets measured relative errors several times their own at 2N "
                "(benchmarks/results/resolution_transfer.md). Use the preset trained at that resolution, or "
                "train this one there from these weights (about an epoch ahead of random weights); "
                "kml.zoo.evaluate(..., resolution=...) measures it.",
                stacklevel=2,
            )
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model


def list_presets(presets_dir=None):
    """One dict per preset: name, task, problem, resolution, parameters and validation/test metrics."""
    rows = []
    for name in names(presets_dir):
        meta = metadata(name, presets_dir)
        rows.append(
            {
                "name": name,
                "task": meta["task"],
                "problem": meta["problem"],
                "resolution": meta["resolution"],
                "parameters": meta["parameter_count"],
                "validation": meta["metrics"]["validation"],
                "test": meta["metrics"]["test"],
            }
        )
    return rows


def table(presets_dir=None):
    """The presets as a printable text table (test metrics on the preset's test split)."""
    rows = list_presets(presets_dir)
    if not rows:
        return f"No presets in {_folder(presets_dir)}."
    header = ("name", "task", "resolution", "parameters", "test L2 (MSE)", "test relative L2", "test L∞")
    body = [
        (
            row["name"],
            row["task"],
            str(row["resolution"]),
            f"{row['parameters']:,}",
            f"{row['test']['l2']:.3e}",
            f"{row['test']['relative_l2']:.4f}",
            f"{row['test']['linf']:.3e}",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in (header, *body)) for column in range(len(header))]

    def line(cells):  # name and task left-aligned, numbers right-aligned
        return "  ".join(cell.ljust(width) if column < 2 else cell.rjust(width) for column, (cell, width) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *map(line, body)])


def show(name, presets_dir=None):
    """The model card (``README.md``) of preset ``name``."""
    return (preset_folder(name, presets_dir) / "README.md").read_text()
