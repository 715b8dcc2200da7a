"""Under a Keras backend other than TensorFlow the data sets and the zoo work (issue 12, item 12)."""

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
print("evaluated", np.isfinite(before), type(model.layers[1].kernel.value).__module__.split(".")[0])
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
