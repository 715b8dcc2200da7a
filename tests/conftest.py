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


@pytest.fixture
def cycle_cost(monkeypatch):
    """``cycle_cost(model, x, y)``: the work units one ``train_on_batch`` actually spends.

    Counts every level gradient the cycle evaluates (run eagerly), each
    weighted by its level's relative cost.
    """
    from keras_multilevel.optimizers import cycle

    def measure(model, x, y):
        cost = {id(level.model): level.relative_cost for level in model.optimizer.hierarchy}
        spent = []
        original = cycle.level_gradient

        def counting(level_model, *args, **kwargs):
            spent.append(cost[id(level_model)])
            return original(level_model, *args, **kwargs)

        monkeypatch.setattr(cycle, "level_gradient", counting)
        model.run_eagerly = True
        model.train_on_batch(x, y)
        monkeypatch.setattr(cycle, "level_gradient", original)
        return sum(spent)

    return measure
