"""Partial set-ups: under a Keras backend other than TensorFlow the data sets and the zoo work; without the
[datasets] extra the optimizer and the zoo work and the data sets say what to install."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np
import keras
import keras_multilevel as kml

assert keras.backend.backend() == "jax"
data = kml.datasets.load("poisson", resolution=16, split="test", samples=30, batch_size=3)  # plain tf.data
data = data.map(lambda x, u: (x, u[..., None]))
model = kml.zoo.load("poisson_unet_n16")                                                 # a plain Keras model
before = model.evaluate(data, verbose=0)
model.fit(data, epochs=1, verbose=0)                                                     # trains under JAX
print("evaluated", np.isfinite(before), type(model.get_layer("output").kernel.value).__module__.split(".")[0])
for name in ("MultilevelOptimizer", "models", "hierarchy"):
    try:
        getattr(kml, name)
    except ImportError as error:
        print("refused", name, str(error).splitlines()[0])
"""


@pytest.mark.slow
def test_data_sets_and_zoo_work_under_jax_and_the_optimizer_says_it_needs_tensorflow(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "TFDS_DATA_DIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "evaluated True jaxlib" in lines, result.stdout  # the weights are JAX arrays
    refusals = [line for line in lines if line.startswith("refused")]
    assert [line.split()[1] for line in refusals] == ["MultilevelOptimizer", "models", "hierarchy"], result.stdout
    assert all("needs Keras' TensorFlow backend" in line and "set KERAS_BACKEND=tensorflow" in line for line in refusals)


WITHOUT_DATASETS = """
import sys
for name in ("tensorflow_datasets", "dolfinx", "mpi4py", "basix", "ufl", "petsc4py"):
    sys.modules[name] = None  # what an installation without the [datasets] extra lacks
import numpy as np
import keras
import keras_multilevel as kml

x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
y = np.eye(2, dtype="float32")[(x[:, 0] > 0).astype(int)]
model = kml.models.residual_network((2,), 2, width=3, blocks=4)
model.compile(optimizer=kml.MultilevelOptimizer(levels=2), loss="categorical_crossentropy")
print("work units", model.fit(x, y, batch_size=8, verbose=0).history["work_units"])
print("preset", kml.zoo.load("poisson_unet_n16").name)
try:
    kml.datasets
except ImportError as error:
    print("refused", error)
from keras_multilevel.cli import main
print("exit", main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "10"]))
"""


@pytest.mark.slow
def test_without_the_datasets_extra_the_optimizer_and_zoo_work_and_the_data_sets_say_what_to_install():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", WITHOUT_DATASETS], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("work units"))
    assert float(line.strip("work units []")) > 2.0  # two V-cycles trained
    assert "preset unet" in result.stdout
    hint = "needs TensorFlow Datasets and FEniCSx, which this installation lacks: pip install 'keras-multilevel[datasets]'"
    assert f"refused kml.datasets {hint}" in result.stdout
    assert "exit 69" in result.stdout
    assert f"keras-multilevel datasets: error: kml.datasets {hint}" in result.stderr
