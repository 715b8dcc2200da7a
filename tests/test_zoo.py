"""The model zoo: preset files, integrity, safe loading, metrics, recipes, command line, shipped presets."""

import copy
import errno
import json
import os
import re
import shutil
import warnings

import keras
import numpy as np
import pytest

import keras_multilevel as kml
import keras_multilevel.cli as cli
from keras_multilevel import zoo

NAME = "poisson_unet_n8"
RECIPE = {
    "problem": "poisson",
    "resolution": 8,
    "architecture": {"filters": [4, 8]},
    "smoother": {"class_name": "Adam", "config": {"learning_rate": 0.003}},
    "levels": 1,
    "epochs": 2,
    "batch_size": 8,
    "seed": 0,
    "dataset_seed": 0,
    "samples": 40,
}
METRICS = {"l2": 0.5, "relative_l2": 0.5, "relative_l2_std": 0.1, "linf": 1.0, "examples": 4}
RECORD = {"wall_time_s": 0.0, "work_units": 0.0, "epochs": []}


@pytest.fixture
def presets(tmp_path):
    """A presets folder with one randomly initialized preset (no data needed); returns (folder, model)."""
    model = kml.models.unet(8, filters=(4, 8))
    zoo.save_preset(model, tmp_path / NAME, RECIPE, RECORD, {"validation": METRICS, "test": METRICS})
    return tmp_path, model


def _rehash(folder, file):
    """Records the current sha256 of ``file`` in metadata.json, as if the preset had been published so."""
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"][file] = zoo.store.sha256(folder / file)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_metrics_against_hand_computed_values():
    targets = np.array([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 0.0]]])  # norms 5 and 1
    predictions = np.array([[[3.0, 0.0], [0.0, 5.0]], [[1.0, 2.0], [0.0, 0.0]]])[..., None]  # errors 1 and 2
    measured = zoo.metrics(predictions, targets)
    assert measured["l2"] == pytest.approx((1 + 4) / 8)
    assert measured["relative_l2"] == pytest.approx((1 / 5 + 2 / 1) / 2)
    assert measured["relative_l2_std"] == pytest.approx(0.9)
    assert measured["linf"] == pytest.approx(2.0)
    assert measured["examples"] == 2
    with pytest.raises(ValueError, match="zero everywhere"):
        zoo.metrics(predictions, np.zeros_like(targets))
    with pytest.raises(ValueError, match="same number"):
        zoo.metrics(predictions[:1], targets)


def test_save_load_round_trip_gives_identical_predictions(presets):
    folder, model = presets
    files = sorted(path.name for path in (folder / NAME).iterdir())
    assert files == ["README.md", "config.json", "metadata.json", "model.weights.h5"]
    metadata = zoo.metadata(NAME, folder)
    assert metadata["name"] == NAME and metadata["parameter_count"] == model.count_params()
    assert metadata["dataset"]["splits"] == {"train": 32, "validation": 4, "test": 4}
    assert set(metadata["files"]) == {"config.json", "model.weights.h5", "README.md"}
    loaded = zoo.load(NAME, presets_dir=folder)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.loss == "mse" and isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert not zoo.load(NAME, compile=False, presets_dir=folder).compiled
    assert zoo.list_presets(folder)[0]["test"] == METRICS and NAME in zoo.table(folder)
    assert zoo.show(NAME, folder).startswith(f"# {NAME}")
    # A preset folder by its path, as keras-hub's from_preset(path).
    by_path = zoo.load(str(folder / NAME), compile=False)
    np.testing.assert_array_equal(by_path.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"is not a preset folder: it has no metadata.json"):
        zoo.load(str(folder / "nowhere"))
    assert not hasattr(zoo, "list")  # no builtin shadowed: kml.zoo.list_presets()


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_an_existing_preset_is_replaced_only_when_asked_and_only_once_the_new_one_is_written(presets, monkeypatch):
    """save_preset wrote in place: a full disk left a refused folder (the previous preset lost), and an existing
    preset was replaced without a word."""
    folder, _ = presets
    before, other = _files(folder / NAME), kml.models.unet(8, filters=(4, 8))

    def save(**overwrite):
        return zoo.save_preset(other, folder / NAME, RECIPE, RECORD, {"validation": METRICS, "test": METRICS},
                               **overwrite)

    with pytest.raises(FileExistsError, match=f"{re.escape(str(folder / NAME))} exists already: pass overwrite=True"):
        save()
    assert _files(folder / NAME) == before

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(other, "save_weights", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        save(overwrite=True)
    assert _files(folder / NAME) == before and sorted(path.name for path in folder.iterdir()) == [NAME]
    zoo.verify(NAME, folder)
    monkeypatch.undo()
    save(overwrite=True)
    assert sorted(path.name for path in folder.iterdir()) == [NAME]  # no temporary folder, no previous one
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(zoo.load(NAME, presets_dir=folder).predict(x, verbose=0), other.predict(x, verbose=0))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (folder / NAME).stat().st_mode & 0o777 == 0o777 & ~umask  # as a folder made by mkdir, not mkdtemp's 0o700


def test_zoo_train_into_a_folder_holding_the_preset_is_refused_before_training(presets, capsys):
    folder, _ = presets
    before = _files(folder / NAME)
    assert cli.main(["zoo", "train", NAME, "--presets", str(folder), "--out", str(folder), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error == (f"keras-multilevel zoo: error: {folder / NAME} exists already: pass overwrite=True "
                     "(keras-multilevel zoo train --overwrite) to replace it, or choose another folder.\n")
    assert _files(folder / NAME) == before


def test_load_at_another_resolution(presets):
    folder, _ = presets
    with pytest.warns(UserWarning, match="span half the physical distance"):
        assert zoo.load(NAME, resolution=16, presets_dir=folder).input_shape == (None, 16, 16, 3)
    assert zoo.load(NAME, resolution=4, presets_dir=folder).input_shape == (None, 4, 4, 3)
    with pytest.raises(ValueError, match="resolution"):
        zoo.load(NAME, resolution=12, presets_dir=folder)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_weights_file_is_refused_by_name(presets, damage):
    folder, _ = presets
    path = folder / NAME / "model.weights.h5"
    expected = zoo.metadata(NAME, folder)["files"]["model.weights.h5"]
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match="model.weights.h5") as error:
        zoo.load(NAME, presets_dir=folder)
    assert expected in str(error.value) and zoo.store.sha256(path) in str(error.value)
    assert "Reinstall" in str(error.value) and "zoo train" in str(error.value)


def test_a_config_with_a_lambda_layer_or_an_unknown_class_is_refused(presets):
    folder, _ = presets
    config = folder / NAME / "config.json"
    lambda_model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2, name="payload")])
    config.write_text(json.dumps(keras.saving.serialize_keras_object(lambda_model)))
    _rehash(folder / NAME, "config.json")
    with pytest.raises(ValueError, match="Lambda layers \\(payload\\)"):
        zoo.load(NAME, presets_dir=folder)
    unknown = json.loads(json.dumps(keras.saving.serialize_keras_object(kml.models.unet(8, filters=(4, 8)))))
    unknown["config"]["layers"][1]["class_name"] = "NotALayer"
    config.write_text(json.dumps(unknown))
    _rehash(folder / NAME, "config.json")
    with pytest.raises(ValueError, match="config.json cannot be rebuilt in Keras' safe mode"):
        zoo.load(NAME, presets_dir=folder)


def _nested(depth):
    return "[" * depth + "]" * depth


MALFORMED = {  # metadata.json text from its parsed original: (the change, what the error names)
    "a list": (lambda meta: "[]", "its top level must be an object, got list"),
    "no metrics": (lambda meta: json.dumps({k: v for k, v in meta.items() if k != "metrics"}),
                   "it lacks the field `metrics`"),
    "no test metrics": (lambda meta: json.dumps({**meta, "metrics": {"validation": METRICS}}),
                        "it lacks the field `metrics.test`"),
    "a string parameter count": (lambda meta: json.dumps({**meta, "parameter_count": "31107"}),
                                 "the field `parameter_count` must be an integer >= 0, got '31107'"),
    "a NaN metric": (lambda meta: json.dumps({**meta, "metrics": {"validation": METRICS, "test": {
        **METRICS, "relative_l2": float("nan")}}}), "the field `metrics.test.relative_l2` must be a finite number"),
    "metrics as a list": (lambda meta: json.dumps({**meta, "metrics": [1, 2]}),
                          "its field `metrics` must be an object, got list"),
    "an unknown tolerance metric": (lambda meta: json.dumps({**meta, "tolerance": {"metric": "l1", "relative": 1}}),
                                    "the field `tolerance.metric` must be one of l2, relative_l2, linf, got 'l1'"),
    "10,000 nested lists": (lambda meta: _nested(10_000), "JSON nested too deeply to read"),
    "nested lists as the recipe": (lambda meta: json.dumps(meta)[:-1] + ', "recipe": ' + _nested(500) + "}",
                                   "the field `recipe` must be an object or null, got [[[[[[[...]]]]]]]"),
    "not UTF-8": (lambda meta: b"\xff\xfe{".decode("latin-1"), "is not valid JSON"),
}


@pytest.mark.parametrize("malformed", sorted(MALFORMED))
def test_a_malformed_metadata_json_is_an_integrity_error_naming_the_file_and_the_field(presets, capsys, malformed):
    """Not an AttributeError, KeyError or RecursionError from kml.zoo.load, nor a traceback from the command."""
    folder, _ = presets
    change, message = MALFORMED[malformed]
    path = folder / NAME / "metadata.json"
    path.write_text(change(json.loads(path.read_text())), encoding="latin-1")
    with pytest.raises(zoo.IntegrityError, match=re.escape(message)) as error:
        zoo.load(str(folder / NAME))
    assert str(error.value).startswith(f"{path} is ")
    assert str(error.value).endswith("reinstall keras-multilevel or re-train the preset.")
    for command in (["zoo", "list"], ["zoo", "evaluate", NAME, "--samples", "3"]):
        assert cli.main([*command, "--presets", str(folder)]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"keras-multilevel zoo: error: {path} is ") and error.count("\n") == 1, error
        assert message in error


def test_an_unknown_name_lists_the_available_presets(presets):
    folder, _ = presets
    with pytest.raises(ValueError, match=f"Unknown preset 'poisson_resnet_32'.*Available presets: {NAME}"):
        zoo.load("poisson_resnet_32", presets_dir=folder)


def test_a_recipe_with_a_missing_or_unknown_key_is_refused():
    recipe = {key: value for key, value in RECIPE.items() if key != "epochs"}
    with pytest.raises(ValueError, match=r"missing \['epochs'\] and has unknown keys \['learning_rate'\]"):
        zoo.check_recipe({**recipe, "learning_rate": 0.1})


@pytest.mark.parametrize("arguments, message", [
    ({"target": 0}, "`target` must be a positive validation relative L2, got 0"),
    ({"steps_per_execution": 0}, "`steps_per_execution` must be a positive integer, got 0"),
    ({"steps_per_execution": 2.0}, "`steps_per_execution` must be a positive integer, got 2.0"),
])
def test_training_a_recipe_refuses_a_bad_target_or_steps_per_execution_before_any_data(arguments, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        zoo.training.train_recipe(copy.deepcopy(RECIPE), tmp_path / "nothing here", progress=False, **arguments)
    assert not (tmp_path / "nothing here").exists()


def test_a_card_names_the_scheme_its_recipe_trains_with():
    """One level, coarse to fine (a schedule) or V-cycles (no schedule, optional steps): each card says which."""
    vcycles = dict(RECIPE, levels=2, coarsening="resolution", steps="[(1),{4}]")
    vcycles.pop("schedule", None)
    assert zoo.check_recipe(vcycles) is vcycles
    text = zoo.card._scheme(vcycles)
    assert text.startswith("MG/OPT V-cycles") and "`[(1),{4}]`" in text and "Coarse to fine" not in text
    assert zoo.card._scheme(dict(vcycles, schedule=[10])).startswith("Coarse to fine")
    per_level = zoo.check_recipe(dict(vcycles, learning_rate_divisor=[2, 1]))
    assert "learning_rate_divisor=[2, 1]" in zoo.card._optimizer(per_level)
    assert zoo.card._scheme(dict(RECIPE, levels=1)).startswith("Single-level training")
    grown = zoo.card._scheme(dict(RECIPE, levels=2, coarsening={"name": "pyramid"}, schedule=[10]))
    assert grown.startswith("Coarse to fine by growing") and "(2 grids on 8×8, 1 grid on 4×4)" in grown
    assert zoo.card._scheme(dict(vcycles, coarsening="pyramid")).startswith("MG/OPT V-cycles through the pyramid")


def test_command_line_list_show_and_bad_arguments(presets, capsys):
    folder, _ = presets
    assert cli.main(["zoo", "list", "--presets", str(folder)]) == 0
    assert NAME in capsys.readouterr().out
    assert cli.main(["zoo", "show", NAME, "--presets", str(folder)]) == 0
    assert "## Metrics" in capsys.readouterr().out
    assert cli.main(["zoo", "show", "nope", "--presets", str(folder)]) == 2
    assert f"Available presets: {NAME}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        cli.main(["zoo", "evaluate", NAME, "--samples", "many"])
    assert exit.value.code == 2
    assert cli.main(["zoo", "evaluate", NAME, "--samples", "0", "--presets", str(folder)]) == 2
    assert "`samples` (--samples)" in capsys.readouterr().err
    (folder / NAME / "README.md").write_text("tampered")
    assert cli.main(["zoo", "evaluate", NAME, "--presets", str(folder)]) == 1
    assert "README.md is corrupt or was modified" in capsys.readouterr().err


# The tiny recipe with a learning-rate schedule, as the shipped presets have: Keras deserializes a nested
# config in place, which once turned the recipe's schedule into an object that metadata.json could not hold.
SCHEDULED_RECIPE = dict(RECIPE, smoother={"class_name": "Adam", "config": {
    "learning_rate": keras.saving.serialize_keras_object(keras.optimizers.schedules.CosineDecay(0.003, 8))}})


def test_train_evaluate_and_retrain_a_recipe(tmp_path, capsys):
    """The whole life of a preset on a tiny recipe: train, write, evaluate on fresh data, retrain from the CLI."""
    pytest.importorskip("keras_multilevel.pde.fem")
    data = tmp_path / "data"
    recipe = copy.deepcopy(SCHEDULED_RECIPE)
    metadata = zoo.create(recipe, tmp_path / "presets", data_dir=data, progress=False)
    assert recipe == SCHEDULED_RECIPE and metadata["recipe"] == SCHEDULED_RECIPE
    assert "smoother=keras.optimizers.Adam(learning_rate=keras.optimizers.schedules.CosineDecay(" \
        "initial_learning_rate=0.003, decay_steps=8, alpha=0.0, warmup_steps=0))" in zoo.show(NAME, tmp_path / "presets")
    epochs = metadata["training"]["epochs"]
    assert [row["epoch"] for row in epochs] == [1, 2] and epochs[1]["val_l2"] == metadata["metrics"]["validation"]["l2"]
    assert epochs[1]["work_units"] == metadata["training"]["work_units"] == 2 * 32 / 8  # one per batch at levels=1
    for key in ("cpu_time_s", "wall_time_s"):  # training seconds so far, the validation after each epoch left out
        assert 0 < epochs[0][f"training_{key}"] < epochs[1][f"training_{key}"] < metadata["training"][key]
    assert metadata["metrics"]["test"]["examples"] == 4
    assert f"{metadata['metrics']['test']['relative_l2']:.4f}" in zoo.show(NAME, tmp_path / "presets")

    measured = zoo.evaluate(NAME, samples=30, data_dir=data, presets_dir=tmp_path / "presets")
    assert measured["examples"] == 30 and measured["relative_l2"] > 0
    with pytest.raises(ValueError, match="seed of poisson_unet_n8's training data"):
        zoo.evaluate(NAME, seed=RECIPE["dataset_seed"], presets_dir=tmp_path / "presets")

    command = ["zoo", "train", NAME, "--out", str(tmp_path / "again"), "--data-dir", str(data), "--quiet"]
    assert cli.main([*command, "--presets", str(tmp_path / "presets")]) == 0
    assert "within the card's tolerance" in capsys.readouterr().out
    assert zoo.metadata(NAME, tmp_path / "again")["recipe"] == SCHEDULED_RECIPE


EVALUATION_SAMPLES = 200


NO_PRESETS = pytest.param(None, marks=pytest.mark.skip(reason="no presets shipped in zoo/ yet"))
# Generating the 200 examples takes seconds above 16x16: the quick subset (-m "not slow") checks the 16x16 presets.
SHIPPED = [name if zoo.metadata(name)["dataset"]["resolution"] <= 16 else pytest.param(name, marks=pytest.mark.slow)
           for name in zoo.names()] or [NO_PRESETS]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_preset_meets_its_card(name, tmp_path):
    """A shipped preset, measured on 200 freshly generated examples, reaches its card's test error within tolerance.

    The card's relative L2 is a mean over its test split (1,000 examples by
    default); a fresh sample of n examples estimates the same mean to within
    a standard error ``std / sqrt(n)``. With 20 examples and a per-example
    spread as large as the mean, that error is 22% of the mean: a 25%
    tolerance would then be about one standard error, and a sound model would
    fail on an unlucky sample. With 200 it is 7% (the margin is over 3
    standard errors), which the test checks from the measured spread.
    """
    pytest.importorskip("keras_multilevel.pde.fem")
    metadata = zoo.metadata(name)
    measured = zoo.evaluate(name, samples=EVALUATION_SAMPLES, seed=777, data_dir=tmp_path)
    comparison = zoo.compare(metadata, measured)
    standard_error = measured[f"{comparison.metric}_std"] / EVALUATION_SAMPLES**0.5
    assert 3 * standard_error < comparison.limit - comparison.card, (
        f"{name}: a sample of {EVALUATION_SAMPLES} examples measures {comparison.metric} only to within "
        f"{standard_error:.4f}; increase EVALUATION_SAMPLES for the check to mean something."
    )
    assert comparison.passed, str(comparison)


def test_a_model_of_ones_own_saved_as_a_preset_loads_by_path_and_has_a_card(tmp_path):
    """keras-hub's save_to_preset for a model trained outside a recipe: measured metrics, sha256, card, load(path)."""
    keras.utils.set_random_seed(3)
    model = kml.models.unet(8, filters=(4, 8))
    folder = tmp_path / "presets" / "my_poisson_net"
    meta = zoo.save_to_preset(
        model, folder, "poisson", samples=40, data_dir=tmp_path / "data",
        training={"optimizer": "MultilevelOptimizer(levels=2, coarsening='resolution')", "epochs": 0},
    )
    assert meta["recipe"] is None and meta["dataset"]["resolution"] == 8 and meta["metrics"]["test"]["examples"] == 4
    # The metrics are the model's own on the test split.
    test = kml.datasets.load("poisson", 8, "test", tmp_path / "data", samples=40, batch_size=None)
    inputs, targets = (np.stack(values) for values in zip(*[(x.numpy(), u.numpy()) for x, u in test]))
    expected = zoo.metrics(model.predict(inputs, verbose=0), targets)
    assert meta["metrics"]["test"]["relative_l2"] == pytest.approx(expected["relative_l2"], rel=1e-5)
    loaded = zoo.load(str(folder))
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0))
    with pytest.warns(UserWarning, match="span half the physical distance"):  # a plain U-Net: moved by its stencils
        assert zoo.load(str(folder), resolution=16).input_shape == (None, 16, 16, 3)
    pyramid = kml.models.unet(8, filters=(4, 8), pyramid=True)  # without a recipe too, a pyramid moves by its grids
    zoo.save_to_preset(pyramid, tmp_path / "presets" / "my_pyramid", "poisson", samples=40, data_dir=tmp_path / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grown = zoo.load(str(tmp_path / "presets" / "my_pyramid"), resolution=16)
    assert kml.hierarchy.pyramid.unet_arguments(grown)["filters"] == (4, 4, 8)
    card = zoo.show("my_poisson_net", folder.parent)
    assert "Trained by its author, not from a recipe" in card and "epochs: 0" in card and "zoo train" not in card.split("## Use")[1]
    with pytest.raises(ValueError, match="saved without a recipe"):
        zoo.train("my_poisson_net", tmp_path / "again", presets_dir=folder.parent)
    with pytest.raises(ValueError, match=r"`problem` must be one of \['poisson', 'darcy'\]"):
        zoo.save_to_preset(model, tmp_path / "x", "burgers")
    with pytest.raises(ValueError, match=r"maps \(N, N, 3\) inputs"):
        zoo.save_to_preset(kml.models.feedforward_network((6,), 3), tmp_path / "x", "poisson")


def test_a_card_compares_its_preset_with_what_the_benchmarks_measured(presets):
    """The "Compared" section: medians and ranges over seeds, the 2N column from the pyramid's move, and none at all
    without measurements."""
    folder, _ = presets
    metadata = zoo.metadata(NAME, folder)
    metadata.pop("files")
    assert "## Compared" not in zoo.card.card(metadata)
    moved = {"N/2 pyramid": 0.2, "N/2 Galerkin": 0.3, "N/2 unchanged": 0.4, "N (fresh)": 0.11, "2N pyramid": 0.25,
             "2N stencils unchanged": 0.9, "2N floor": 0.05}
    metadata["comparisons"] = {
        "fno": {"command": "python fno.py", "seeds": [0, 1, 2], "parameters": 1234, "cpu_time_s": [30, 10, 20],
                "relative_l2": [0.03, 0.01, 0.02], "relative_l2_2n": [0.5, 0.7, 0.6]},
        "resolutions": {"command": "python moves.py", "samples": 50, "seed": 7, **moved},
    }
    text = zoo.card.card(metadata)
    assert "| FNO (`neuraloperator`), seeds 0, 1, 2 | 1,234 | 20 [10-30] | 0.0200 [0.0100-0.0300] | 0.6000 [0.5000-0.7000] |" in text
    assert "| this preset (seed 0) | " in text and "| 0.5000 | 0.2500 |" in text  # the card's test error, then 2N
    assert "| moved by | N/2 = 4 | N = 8 | 2N = 16 |" in text
    assert "| `kml.zoo.load(name, resolution=M)` (the pyramid's grids) | 0.2000 | 0.1100 | 0.2500 |" in text
    assert "| the exact solution averaged to N, prolongated bilinearly | - | - | 0.0500 |" in text
    assert "`python fno.py`" in text and "`python moves.py`" in text and "50 freshly generated examples" in text


@pytest.mark.parametrize("name", zoo.names() or [NO_PRESETS])
def test_every_shipped_card_is_written_from_its_metadata(name):
    metadata = zoo.metadata(name)
    metadata.pop("files")
    assert zoo.card.card(metadata) == zoo.show(name)
