"""What ``import keras_multilevel`` does and does not do (issue 23 item 4): one lazy package, no process-wide side
effect, and the two registrations users rely on (Keras' serialization of the library's classes, TFDS' builders)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "dolfinx")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python(script, **env):
    """Runs ``script`` in a fresh interpreter; returns its last stdout line, parsed as JSON."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_import_is_lazy_and_changes_nothing_in_the_process():
    """``import keras_multilevel`` imports neither TensorFlow nor Keras, sets no environment variable and leaves
    file descriptor 2 alone; ``dir`` and ``__all__`` list the flat public names."""
    script = f"""
import json, os, sys
before, stderr = dict(os.environ), os.fstat(2)
import keras_multilevel as kml
after = os.fstat(2)
print(json.dumps({{
    "heavy": [name for name in {HEAVY!r} if name in sys.modules],
    "environment": sorted(set(os.environ.items()) ^ set(before.items())),
    "stderr": (after.st_ino, after.st_dev) == (stderr.st_ino, stderr.st_dev),
    "all": kml.__all__, "dir": [name for name in dir(kml) if not name.startswith("_")], "version": kml.__version__,
}}))
"""
    environment = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND",
                                                                                    "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["heavy"] == [] and found["environment"] == [] and found["stderr"]
    public = ["ConvResidualStack", "CycleSteps", "DenseResidualStack", "Hierarchy", "MultilevelOptimizer",
              "MultilevelSolver", "datasets", "hierarchy", "layers", "models", "optimizers", "zoo"]
    assert sorted(found["all"]) == sorted([*public, "__version__"])
    assert set(public) <= set(found["dir"])
    assert found["version"] == "0.1.0"


def test_the_source_folder_maps_datasets_and_zoo_as_the_wheel_does():
    """``python -c`` in the repository root imports the source folder; it finds ``pde`` and ``presets`` there."""
    script = """
import json, pathlib, sys
import keras_multilevel, keras_multilevel.pde.problems, keras_multilevel.presets
print(json.dumps([str(pathlib.Path(module.__file__).parent) for module in
                  (keras_multilevel, keras_multilevel.pde.problems, keras_multilevel.presets)]
                 + [name for name in sys.modules if name in ("tensorflow", "keras")]))
"""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [str(ROOT / "keras_multilevel"), str(ROOT / "datasets"),
                                                          str(ROOT / "zoo")]


def test_the_command_line_code_is_not_part_of_the_core():
    """``keras_multilevel.cli`` (the demo, the circles benchmark's training and plots) is imported by the command line only."""
    script = """
import json, sys
import keras
import keras_multilevel as kml
kml.MultilevelOptimizer, kml.zoo, kml.datasets
print(json.dumps(sorted(name for name in sys.modules if name.startswith("keras_multilevel.cli"))))
"""
    assert _python(script) == []


@pytest.mark.slow
def test_a_saved_model_loads_when_keras_is_imported_first_or_after_first_use(tmp_path):
    """Keras imports only keras* modules by itself. The library's serializable classes are registered at
    ``import keras_multilevel`` when Keras is already imported, else on the first use of ``kml`` (or an explicit
    import of its layers / optimizers), as the root module's docstring says."""
    import keras_multilevel as kml

    # Saved in this process (Keras and the library are imported here already): only the loads need a fresh one.
    path = tmp_path / "model.keras"
    model = kml.models.residual_network((2,), 2, width=3, blocks=4)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2), loss="mse")
    model.save(path)
    assert "DenseResidualStack" in [type(layer).__name__ for layer in model.layers] and path.exists()
    load = """
import json
{imports}
model = keras.models.load_model({path!r})
print(json.dumps([type(layer).__name__ for layer in model.layers]))
"""
    orders = {
        "keras first": "import keras\nimport keras_multilevel",
        "after first use": "import keras_multilevel as kml\nimport keras\nkml.models",
        "submodules imported": "import keras_multilevel.layers\nimport keras_multilevel.optimizers\nimport keras",
    }
    for order, imports in orders.items():
        layers = _python(load.format(imports=imports, path=str(path)))
        assert "DenseResidualStack" in layers, order


@pytest.mark.slow
def test_the_compile_hook_comes_with_the_optimizers():
    """Importing the optimizer by its module (not through ``kml``) installs the compile hook too."""
    script = """
import json
import numpy as np
from keras_multilevel.optimizers.multilevel import MultilevelOptimizer
from keras_multilevel.models import residual_network
model = residual_network((2,), 2, width=3, blocks=4)
model.compile(optimizer=MultilevelOptimizer(levels=2), loss="mse")
x = np.zeros((8, 2), "float32")
print(json.dumps(model.fit(x, x, verbose=0).history["work_units"]))
"""
    assert _python(script)[0] > 1.0  # a V-cycle, not a single-level step


@pytest.mark.slow
def test_tfds_finds_the_builders_when_it_is_imported_first_or_the_datasets_are_imported(tmp_path):
    script = """
import json
{imports}
import tensorflow_datasets as tfds
print(json.dumps(tfds.builder("poisson/n48", data_dir={data_dir!r}).builder_config.resolution))
"""
    for imports in ("import tensorflow_datasets\nimport keras_multilevel", "import keras_multilevel.datasets"):
        assert _python(script.format(imports=imports, data_dir=str(tmp_path))) == 48, imports


@pytest.mark.slow
def test_under_jax_the_tensorflow_names_refuse_lazily_too():
    script = """
import json
import keras_multilevel as kml
try:
    kml.MultilevelOptimizer
except ImportError as error:
    print(json.dumps([error.unavailable, str(error).splitlines()[0]]))
"""
    unavailable, text = _python(script, KERAS_BACKEND="jax")
    assert unavailable and "needs Keras' TensorFlow backend" in text
