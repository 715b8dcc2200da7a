import keras
import pytest

import keras_multilevel  # noqa: F401  (sets the backend, installs the Keras hooks)


@pytest.fixture
def float64():
    """Runs a test with Keras' default float type set to float64."""
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous_floatx)
    keras.config.set_dtype_policy(previous_policy)


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1234)
