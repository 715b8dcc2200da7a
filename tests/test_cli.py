"""The ``keras-multilevel`` command line itself: light parsing, --version, help, exit codes."""

import argparse
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import pytest

import keras_multilevel as kml
import keras_multilevel.cli as cli

BIN = pathlib.Path(sys.executable).parent
# What parsing and --help must not import: the command line lives inside keras_multilevel, whose root is lazy.
HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "dolfinx", "keras_multilevel.datasets",
         "keras_multilevel.zoo", "keras_multilevel.optimizers", "keras_multilevel.models")


def _command(*arguments, env=None):
    return subprocess.run([str(BIN / "keras-multilevel"), *arguments], capture_output=True, text=True, timeout=120,
                          env=env)


def _sub_commands(parser, path=()):
    """Yields ``(path, parser)`` for every parser under ``parser``, itself included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _sub_commands(child, (*path, name))


def test_parsing_and_help_import_neither_tensorflow_nor_the_library():
    commands = [" ".join(path) for path, _ in _sub_commands(cli.build_parser()) if path]
    script = f"""
import json, sys
from keras_multilevel import cli
parser = cli.build_parser()
for command in {commands!r}:
    try:
        parser.parse_args([*command.split(), "--help"])
    except SystemExit:
        pass
parser.parse_args(["datasets", "generate", "poisson", "--data-dir", "somewhere"])
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]), file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zoo train" in commands and "datasets show" in commands
    assert json.loads(result.stderr.splitlines()[-1]) == []


@pytest.mark.parametrize("argument", ["--help", "--version"])
def test_help_and_version_of_the_command_import_neither_tensorflow_nor_keras(argument):
    """``keras-multilevel --help`` / ``--version`` (here ``python -m keras_multilevel``) stay instant."""
    script = f"""
import json, runpy, sys
sys.argv = ["keras-multilevel", {argument!r}]
try:
    runpy.run_module("keras_multilevel", run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]), file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "keras-multilevel" in result.stdout
    assert json.loads(result.stderr.splitlines()[-1]) == []


def test_version_is_the_installed_package_version():
    result = _command("--version")
    assert result.returncode == 0
    assert result.stdout == f"keras-multilevel {importlib.metadata.version('keras-multilevel')}\n"
    assert importlib.metadata.version("keras-multilevel") == kml.__version__


def test_help_shows_the_defaults():
    generate = _command("datasets", "generate", "--help").stdout
    assert "(default: 32)" in generate and "(default: 1)" in generate  # --resolution, --workers
    assert "TFDS' data folder" in generate and "(default: None)" not in generate
    assert "(default: poisson_unet_n32)" in _command("demo", "--help").stdout
    assert "(default: 1,2,4,6,8)" in _command("bench", "circles", "--help").stdout
    assert "mlsgd" in _command("bench", "circles", "--help").stdout  # --scheme


def test_every_data_folder_option_is_named_data_dir():
    folders = {}
    for path, parser in _sub_commands(cli.build_parser()):
        for action in parser._actions:
            if "data" in action.dest:
                folders.setdefault(tuple(action.option_strings), []).append(" ".join(path))
    assert set(folders) == {("--data-dir",)}
    assert sorted(folders[("--data-dir",)]) == ["datasets generate", "datasets show", "demo", "zoo evaluate", "zoo train"]


def test_zoo_list_of_a_folder_without_presets_fails_with_one_line(tmp_path, capsys):
    assert cli.main(["zoo", "list", "--presets", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"keras-multilevel zoo: error: no presets in {tmp_path} (a preset is a folder with a metadata.json, "
        "as kml.zoo.create writes); check --presets.\n"
    )


def test_an_unsupported_keras_backend_is_one_line_and_exit_2():
    for backend in ("jax", "nonsense"):
        result = _command("zoo", "list", env={**os.environ, "KERAS_BACKEND": backend})
        assert result.returncode == 2
        assert result.stderr == (
            f"keras-multilevel: error: KERAS_BACKEND={backend!r} is not supported; keras-multilevel runs on "
            "tensorflow: set KERAS_BACKEND=tensorflow or unset it.\n"
        )


@pytest.mark.slow
def test_bench_circles_runs_rmtr(tmp_path):
    """``bench circles --scheme rmtr``: L-SR1 trust regions instead of gradient descent, in the table's header."""
    result = _command("bench", "circles", "--scheme", "rmtr", "--blocks", "4", "--levels", "1,2", "--budget", "6",
                      "--target", "1.0", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "table.md").read_text()
    assert "L-SR1 trust regions (scheme rmtr, Kopaničáková and Krause, 2023)" in table and "learning rate" not in table
