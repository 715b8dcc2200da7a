import keras
import pytest

import keras_multilevel  # noqa: F401  (after Keras: loads the library at once, compile hook included)


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

    Counts every gradient the cycle evaluates (run eagerly): the fine level's
    at the cycle's start (``level_gradient``) and every later one
    (``loss_gradient``), each weighted by its level's relative cost.
    """
    from keras_multilevel.optimizers import cycle

    def measure(model, x, y):
        cost = {id(level.model): level.relative_cost for level in model.optimizer.hierarchy}
        spent = []
        originals = {name: getattr(cycle, name) for name in ("level_gradient", "loss_gradient")}

        def counting(original):
            def counted(level_model, *args, **kwargs):
                spent.append(cost[id(level_model)])
                return original(level_model, *args, **kwargs)

            return counted

        for name, original in originals.items():
            monkeypatch.setattr(cycle, name, counting(original))
        model.run_eagerly = True
        model.train_on_batch(x, y)
        for name, original in originals.items():
            monkeypatch.setattr(cycle, name, original)
        return sum(spent)

    return measure
