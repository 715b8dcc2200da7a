"""MultilevelSolver: V-cycles from a training loop of one's own; what the optimizer says about itself."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml

BATCH = 16


def circles(samples=64):
    x, y = kml.datasets.concentric_circles(samples, seed=3)
    return x.astype("float32"), y.astype("float32")


def network(seed=0, kind="depth"):
    keras.utils.set_random_seed(seed)
    if kind == "width":
        return kml.models.feedforward_network((2,), outputs=2, hidden=(16, 16))
    return kml.models.residual_network((2,), outputs=2, width=3, blocks=16)


SETTINGS = {
    "mgopt": dict(levels=3, smoother=keras.optimizers.SGD(0.1, momentum=0.9), steps="[(1),1,{2}]"),
    "fas": dict(levels=2, scheme="fas", coarsening="width", smoother=keras.optimizers.SGD(0.05), steps="[1,{2}]"),
}


def fresh(settings):
    """The settings with a smoother of its own (an optimizer instance must not be shared by two models)."""
    settings = dict(settings)
    settings["smoother"] = settings["smoother"].from_config(settings["smoother"].get_config())
    return settings


def batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", sorted(SETTINGS))
def test_a_loop_over_a_tf_data_set_trains_exactly_as_fit(scheme):
    x, y = circles()
    kind = "width" if scheme == "fas" else "depth"
    fitted = network(kind=kind)
    fitted.compile(optimizer=kml.MultilevelOptimizer(**fresh(SETTINGS[scheme])), loss="categorical_crossentropy")
    history = fitted.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)

    solver = kml.MultilevelSolver(network(kind=kind), loss="categorical_crossentropy", **fresh(SETTINGS[scheme]))
    step = tf.function(solver.step)
    for _ in range(2):
        for batch in batches(x, y):
            report = step(batch)
    for ours, theirs in zip(solver.model.trainable_variables, fitted.trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    assert solver.work_units == pytest.approx(history.history["work_units"][-1])
    assert float(report.work_units) == pytest.approx(solver.optimizer.cycle_work_units)
    x_first, y_first, _ = report.data
    assert x_first.shape[0] == BATCH // solver.optimizer.minibatches and y_first.shape[1] == 2


@pytest.mark.slow
def test_eager_steps_equal_traced_steps():
    x, y = circles(32)
    eager = kml.MultilevelSolver(network(), loss="categorical_crossentropy", **fresh(SETTINGS["mgopt"]))
    traced = kml.MultilevelSolver(network(), loss="categorical_crossentropy", **fresh(SETTINGS["mgopt"]))
    step = tf.function(traced.step)
    for batch in batches(x, y):
        eager_report, traced_report = eager.step(batch), step(batch)
        np.testing.assert_allclose(float(eager_report.loss), float(traced_report.loss), rtol=1e-5)
    for ours, theirs in zip(eager.model.trainable_variables, traced.model.trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_the_loss_reported_is_the_fine_loss_before_the_cycle():
    x, y = circles(BATCH)
    solver = kml.MultilevelSolver(network(), loss="categorical_crossentropy", **fresh(SETTINGS["mgopt"]))
    solver.model.build((None, 2))
    before = keras.losses.categorical_crossentropy(y, solver.model(x)).numpy().mean()
    report = solver.step((x, y))
    assert float(report.loss) == pytest.approx(before, rel=1e-5)
    after = keras.losses.categorical_crossentropy(y, solver.model(x)).numpy().mean()
    assert after != pytest.approx(before)


@pytest.mark.slow
def test_mlsgd_stops_are_reported_per_step_and_counted():
    x, y = circles()
    solver = kml.MultilevelSolver(
        network(), loss="categorical_crossentropy", levels=3, scheme="mlsgd", smoother=keras.optimizers.SGD(0.1),
        recursion_ratio=10.0,  # ||R g|| >= 10 ||g|| never holds: every descent is stopped
    )
    step = tf.function(solver.step)
    stopped = [float(step(batch).stops["recursion"]) for batch in batches(x, y)]
    assert all(count > 0 for count in stopped)
    assert float(solver.optimizer.stop_counts["recursion"].numpy()) == pytest.approx(sum(stopped))
    assert kml.MultilevelSolver(network(), loss="mse", levels=2).step(circles(8)).stops == {}


@pytest.mark.slow
def test_a_model_compiled_with_the_optimizer_is_stepped_by_it_and_fits_on():
    model = network()
    model.compile(optimizer=kml.MultilevelOptimizer(**fresh(SETTINGS["mgopt"])), loss="categorical_crossentropy")
    solver = kml.MultilevelSolver(model)
    assert solver.optimizer is model.optimizer
    x, y = circles()
    solver.step((x[:BATCH], y[:BATCH]))
    text = repr(solver)
    assert "MultilevelOptimizer(levels=3, scheme='mgopt', coarsening='depth'" in text
    assert all(str(blocks) in text for blocks in (16, 8, 4))  # the hierarchy's table
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert history.history["work_units"][-1] == pytest.approx(solver.work_units)
    assert solver.work_units == pytest.approx((1 + len(x) // BATCH) * model.optimizer.cycle_work_units)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(model="not a model"), "must be a Keras model"),
        (dict(levels=2), "needs the `loss`"),
        (dict(metrics=["accuracy"]), "needs the `loss`"),
        (dict(), "not compiled with a MultilevelOptimizer"),
    ],
)
def test_bad_solver_arguments_say_what_to_pass(arguments, message):
    arguments.setdefault("model", network())
    with pytest.raises(ValueError, match=message):
        kml.MultilevelSolver(**arguments)


def test_a_model_compiled_with_another_optimizer_needs_settings():
    model = network()
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="not compiled with a MultilevelOptimizer"):
        kml.MultilevelSolver(model)


# -- what the optimizer says about itself ------------------------------------------


def test_repr_names_the_settings_and_the_model():
    optimizer = kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.25), steps="[1,1,1,{2}]")
    assert repr(optimizer) == (
        "MultilevelOptimizer(levels=4, scheme='mgopt', coarsening='depth', steps='[1,1,1,{2}]', "
        "smoother=SGD(learning_rate=0.25), model=None)"
    )
    model = network()
    model.compile(optimizer=optimizer, loss="mse")
    assert repr(optimizer).endswith(f"model={model.name!r})")
    rmtr = kml.MultilevelOptimizer(levels=2, scheme="rmtr")
    assert "smoother" not in repr(rmtr) and "scheme='rmtr'" in repr(rmtr)


@pytest.mark.parametrize("smoother", [0.1, "sgdd", keras.losses.MeanSquaredError(), kml.MultilevelOptimizer(levels=2)])
def test_a_bad_smoother_is_named(smoother):
    with pytest.raises(ValueError, match=r"`smoother` must be a single-level Keras optimizer"):
        kml.MultilevelOptimizer(levels=2, smoother=smoother)


def test_apply_gradients_says_who_called_it():
    optimizer = kml.MultilevelOptimizer(levels=2)
    with pytest.raises(RuntimeError, match="not attached to a model yet"):
        optimizer.apply_gradients([])
    model = network()
    model.compile(optimizer=optimizer, loss="mse")
    with pytest.raises(RuntimeError, match=f"called directly, not by model '{model.name}'"):
        optimizer.apply_gradients([])


@pytest.mark.slow
def test_non_finite_weights_left_by_a_cycle_show_as_a_nan_loss():
    """A NaN in a later minibatch of a FAS cycle used to leave NaN weights behind a finite logged loss."""
    keras.utils.set_random_seed(0)
    x, y = circles(256)
    x[255] = np.nan  # in the cycle's last minibatch, never the first one whose loss is logged
    model = kml.models.feedforward_network((2,), outputs=2, hidden=(16, 16))
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="fas", coarsening="width", steps="[2,{2}]",
                                                    tau_batches=2, smoother=keras.optimizers.SGD(0.05)), loss="mse")
    history = model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert not all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)
    assert np.isnan(history.history["loss"][-1]) and len(history.history["loss"]) == 1
