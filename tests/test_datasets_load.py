"""kml.datasets.load / the TFDS builders (paper 002 §8) and the `keras-multilevel datasets` command."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_multilevel as kml
from keras_multilevel import datasets
from keras_multilevel_datasets import builders, cli, generation

BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_load_generates_when_missing_and_feeds_model_fit(data_dir):
    train = kml.datasets.load("poisson", resolution=8, split="train", data_dir=data_dir, samples=40, batch_size=8)
    validation = kml.datasets.load("poisson", resolution=8, split="validation", data_dir=data_dir, samples=40)
    inputs, target = next(iter(train))
    assert inputs.shape == (8, 8, 8, 3) and target.shape == (8, 8, 8)
    x, y = builders.fem_grid.cell_centres(8)
    np.testing.assert_allclose(inputs[0, ..., 1], x, rtol=1e-6)
    np.testing.assert_allclose(inputs[0, ..., 2], y, rtol=1e-6)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(64),
                              keras.layers.Reshape((8, 8))])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(train, validation_data=validation, epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    sizes = {split: sum(int(b[0].shape[0]) for b in kml.datasets.load(
        "poisson", 8, split, data_dir, samples=40, batch_size=16)) for split in ("train", "validation", "test")}
    assert sizes == {"train": 32, "validation": 4, "test": 4}


def test_examples_are_the_solver_output_with_their_parameters(data_dir):
    builder = datasets.prepare("poisson", 8, 40, 0, data_dir)
    example = next(builder.as_dataset(split="test").as_numpy_iterator())
    record = next(generation.read_examples("poisson", 8, 0, 40, 36, 37, data_dir))
    assert example["index"] == 36
    np.testing.assert_array_equal(example["parameters"], record["parameters"])
    np.testing.assert_array_equal(example["target"], record["solution"])
    from keras_multilevel_datasets import poisson

    x, y = builders.fem_grid.cell_centres(8)
    np.testing.assert_allclose(example["inputs"][..., 0], poisson.kappa(x, y, record["parameters"]), rtol=1e-6)


def test_darcy_targets_pressure_or_outflow_flux(data_dir):
    pressure = datasets.load("darcy", 6, "test", data_dir, samples=30, batch_size=None)
    flux = datasets.load("darcy", 6, "test", data_dir, samples=30, batch_size=None, target="outflow_flux")
    (k, p), (_, q) = next(iter(pressure)), next(iter(flux))
    assert k.shape == (6, 6, 3) and p.shape == (6, 6) and q.shape == ()
    assert 0 < float(q) and np.all((0 < p.numpy()) & (p.numpy() < 1))  # maximum principle, p_D in {0, 1}


def test_same_seed_same_bits_whatever_the_workers(tmp_path):
    a = datasets.prepare("darcy", 6, 30, 9, tmp_path / "a", workers=1, progress=False)
    b = datasets.prepare("darcy", 6, 30, 9, tmp_path / "b", workers=2, progress=False)
    for ea, eb in zip(a.as_dataset(split="train").as_numpy_iterator(), b.as_dataset(split="train").as_numpy_iterator(),
                      strict=True):
        assert all(np.asarray(ea[key]).tobytes() == np.asarray(eb[key]).tobytes() for key in ea)


def test_named_configs_and_default_sizes():
    assert [c.name for c in builders.Poisson.BUILDER_CONFIGS] == ["n16", "n32", "n64"]
    assert builders.split_sizes(10_000) == {"train": 8000, "validation": 1000, "test": 1000}
    default = datasets.builder("poisson")
    assert default.builder_config.name == "n32" and default.builder_config.samples == 10_000
    assert "Ponce" in default.info.citation
    assert datasets.builder("darcy", 12).builder_config.name == "n12"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="burgers"), r"`name` must be one of \['poisson', 'darcy'\], got 'burgers'"),
        (dict(resolution=2), r"`resolution` must be an integer >= 4, got 2"),
        (dict(resolution=8.5), r"`resolution` must be an integer >= 4, got 8.5"),
        (dict(samples=0), r"`samples` must be a positive integer, got 0"),
        (dict(samples=2), r"`samples` must be an integer >= 3 \(one example per split\), got 2"),
        (dict(seed="zero"), r"`seed` must be a non-negative integer, got 'zero'"),
        (dict(split="training"), r"`split` must be one of \['train', 'validation', 'test'\], got 'training'"),
        (dict(workers=0), r"`workers` must be a positive integer, got 0"),
        (dict(target="u"), r"`target` for 'poisson' must be one of \['target'\], got 'u'"),
    ],
)
def test_load_rejects_bad_arguments_by_name(tmp_path, kwargs, message):
    arguments = dict(name="poisson", resolution=8, split="train", data_dir=tmp_path, samples=10)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        datasets.load(**arguments)
    assert not any(tmp_path.iterdir())


def test_load_into_an_unwritable_place_is_a_value_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ValueError, match="`data_dir` must be a writable directory"):
        datasets.load("poisson", 8, data_dir=blocked / "sub", samples=10)


def _cli(*arguments, env=None):
    return subprocess.run([str(BIN / "keras-multilevel"), "datasets", *arguments], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_generate_resume_show_and_errors(tmp_path, capsys, monkeypatch):
    from keras_multilevel_cli import main

    out = tmp_path / "data"
    # No --data-dir: the data go to TFDS' data folder, the one kml.datasets.load reads by default.
    result = _cli("generate", "poisson", "--resolution", "6", "--samples", "120", "--workers", "2",
                  env={**os.environ, "TFDS_DATA_DIR": str(out)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "120 samples generated (0 kept" in result.stdout and "samples/s" in result.stdout.splitlines()[-1]
    assert "read it with kml.datasets.load('poisson', resolution=6, split='train', samples=120)" in result.stdout
    assert "sample/s" in result.stderr  # the tqdm bar
    # the rest in-process: same entry point (keras_multilevel_cli.main), without a TensorFlow start-up each
    assert main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "120", "--data-dir", str(out),
                 "--quiet"]) == 0
    assert "0 samples generated (120 kept" in capsys.readouterr().out
    loaded = datasets.load("poisson", 6, "test", out, samples=120, batch_size=None)
    assert sum(1 for _ in loaded) == 12

    monkeypatch.chdir(tmp_path)  # the PNG goes to the current folder by default
    assert main(["datasets", "show", "poisson", "--resolution", "6", "--samples", "120", "--data-dir", str(out)]) == 0
    png = tmp_path / "poisson_n6.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for arguments, text in [
        (("generate", "heat", "--data-dir", str(out)), "NAME must be one of ['darcy', 'poisson']"),
        (("generate", "poisson", "--resolution", "3", "--data-dir", str(out)), "`resolution` (--resolution) must be an integer >= 4"),
        (("generate", "poisson", "--resolution", "x", "--data-dir", str(out)), "got 'x'"),
        (("generate", "poisson", "--samples", "0", "--data-dir", str(out)), "`samples` (--samples) must be a positive integer"),
        (("generate", "poisson", "--workers", "0", "--data-dir", str(out)), "`workers` (--workers) must be a positive integer"),
        (("generate", "poisson", "--seed", "1.5", "--data-dir", str(out)), "`seed` (--seed) must be a non-negative integer"),
        (("generate", "poisson", "--data-dir", str(png / "x")), "`data_dir` (--data-dir) must be a writable directory"),
        (("show", "poisson", "--split", "dev", "--data-dir", str(out)), "`split` (--split) must be one of"),
        (("show", "poisson", "--data-dir", str(png / "x")), "`data_dir` (--data-dir) must be a writable directory"),
        (("show", "poisson", "--count", "0", "--data-dir", str(out)), "`count` (--count) must be a positive integer"),
    ]:
        assert main(["datasets", *arguments]) == 2
        assert text in capsys.readouterr().err, arguments
    assert sum(1 for _ in datasets.load("poisson", 6, "test", out, samples=120, batch_size=None)) == 12


def test_cli_registers_list_generate_show():
    import argparse

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["datasets", "generate", "darcy", "--resolution", "16"])
    assert args.resolution == 16 and args.workers == 1 and callable(args.func)
