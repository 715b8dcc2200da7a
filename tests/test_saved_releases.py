"""``.keras`` files saved by an earlier release load with every level's state and train on."""

import json
import pathlib

import keras
import numpy as np
import pytest

import keras_multilevel as kml

RELEASE = pathlib.Path(__file__).parent / "data" / "release_0_1_0"
EXPECTED = json.loads((RELEASE / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_model_saved_by_release_0_1_0_loads_its_state_and_trains_on(name):
    expected = EXPECTED[name]
    model = keras.models.load_model(RELEASE / f"{name}.keras")
    optimizer = model.optimizer
    assert isinstance(optimizer, kml.MultilevelOptimizer) and optimizer.solver.model is model
    for variable, saved in zip(model.trainable_variables, expected["weights"], strict=True):
        np.testing.assert_array_equal(variable.numpy(), np.array(saved, dtype=variable.dtype))
    assert float(optimizer.work_units.numpy()) == expected["work_units"]
    assert int(optimizer.iterations.numpy()) == expected["iterations"]
    level_state = [[v.numpy() for v in level.smoother.variables] for level in optimizer.solver.hierarchy]
    for level, saved_level in zip(level_state, expected["level_optimizer_state"], strict=True):
        for value, saved in zip(level, saved_level, strict=True):
            np.testing.assert_array_equal(value, np.array(saved, dtype=value.dtype))
    matchings = [v.numpy() for level in optimizer.hierarchy[:-1] for v in level.transfer.state_variables]
    for value, saved in zip(matchings, expected["transfer_state"], strict=True):
        np.testing.assert_array_equal(value, np.array(saved, dtype=value.dtype))
    x, y = kml.datasets.concentric_circles(16, seed=5)
    history = model.fit(x.astype("float32"), y.astype("float32"), batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert history.history["work_units"][-1] == pytest.approx(expected["work_units"] + optimizer.cycle_work_units)
