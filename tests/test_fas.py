"""FAS over width hierarchies (Ponce et al., 2022): the mathematics of the cycle and its Keras behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import cycle, level_gradient, tau_correction
from keras_multilevel.optimizers.cycle import momentum_slots


def dense_network(seed=0, hidden=(16, 12), activation="relu"):
    keras.utils.set_random_seed(seed)
    return kml.models.feedforward_network((6,), 3, hidden=hidden, activation=activation)


def conv_network(seed=0, activation="relu"):
    keras.utils.set_random_seed(seed)
    return kml.models.feedforward_network((4, 4, 2), 3, hidden=(10,), conv=((8, 3, 1),), activation=activation)


def regression(samples=64, shape=(6,), dtype="float32"):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(samples, *shape))
    flat = x.reshape(samples, -1)
    y = np.stack([np.sin(flat[:, 0]), flat[:, 1] * flat[:, 2], np.abs(flat[:, 3])], axis=1)
    return x.astype(dtype), y.astype(dtype)


def compiled(model, levels=2, smoother=None, coarsening=None, **kwargs):
    model.compile(
        optimizer=kml.MultilevelOptimizer(
            levels=levels,
            smoother=smoother or keras.optimizers.SGD(0.05),
            scheme="fas",
            coarsening=coarsening or kml.hierarchy.WidthCoarsening(),
            **kwargs,
        ),
        loss="mse",
    )
    return model


def weights(model):
    return [v.numpy() for v in model.trainable_variables]


def objective(model, values, x, y, shift=None):
    """The level's objective at the weights ``values``: MSE minus ``x_c^T tau`` (Ponce et al., 2022, eq 3)."""
    y_pred, _ = model.stateless_call(values, model.non_trainable_variables, x)
    loss = keras.ops.mean((y_pred - y) ** 2)
    if shift is not None:
        loss += sum(tf.reduce_sum(s * v) for s, v in zip(shift, values))
    return loss


# -- mathematics ------------------------------------------------------------------


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("network, shape", [(dense_network, (6,)), (conv_network, (4, 4, 2))])
def test_first_order_coherence_in_function_values(float64, levels, scaled, network, shape):
    """With gamma = 1 and the full batch, the tau-corrected coarse objective and the fine one
    have the same slope along every coarse direction: d/dt g_c^(Pi x + t e) = d/dt g(x + t P e).
    (tanh: the identity holds for any activation; a smooth one keeps finite differences off ReLU kinks.)"""
    model = compiled(network(seed=3, activation="tanh"), levels, coarsening=kml.hierarchy.WidthCoarsening(scaled=scaled))
    hierarchy = model.optimizer.hierarchy
    x, y = regression(shape=shape, dtype="float64")
    rng = np.random.default_rng(0)
    h = 1e-5
    shift = None
    for index in range(levels - 1):
        fine, coarse = hierarchy[index], hierarchy[index + 1]
        fine_values = [tf.constant(v.numpy()) for v in fine.variables]
        coarse_values = fine.transfer.restrict(fine_values)
        with tf.GradientTape() as tape:
            tape.watch(fine_values)
            fine_loss = objective(fine.model, fine_values, x, y, shift)
        fine_gradient = tape.gradient(fine_loss, fine_values)
        with tf.GradientTape() as tape:
            tape.watch(coarse_values)
            coarse_loss = objective(coarse.model, coarse_values, x, y)
        tau = tau_correction(tape.gradient(coarse_loss, coarse_values), fine.transfer.restrict_gradient(fine_gradient))
        coarse_shift = [-t for t in tau]
        direction = [tf.constant(rng.normal(size=v.shape)) for v in coarse_values]
        step = fine.transfer.prolong(direction)

        def slope(function, values, along):
            plus = function([v + h * d for v, d in zip(values, along)])
            minus = function([v - h * d for v, d in zip(values, along)])
            return float((plus - minus) / (2 * h))

        fine_slope = slope(lambda v: objective(fine.model, v, x, y, shift), fine_values, step)
        coarse_slope = slope(lambda v: objective(coarse.model, v, x, y, coarse_shift), coarse_values, direction)
        plain_slope = slope(lambda v: objective(coarse.model, v, x, y), coarse_values, direction)
        assert coarse_slope == pytest.approx(fine_slope, rel=1e-6, abs=1e-9)
        assert plain_slope != pytest.approx(fine_slope, rel=1e-3)  # tau matters
        for variable, value in zip(coarse.variables, coarse_values):
            variable.assign(value)
        shift = coarse_shift


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("tau_batches", [1, 2])
def test_one_coarse_step_is_the_tau_corrected_restricted_gradient(float64, scaled, tau_batches):
    """No fine smoothing, one plain SGD step on the coarse level (on minibatch 0), gamma = 1:
    x <- x - lr P (grad g_c,0(Pi x) - tau), tau = mean_j (grad g_c,j(Pi x) - R grad g_j(x))
    (Ponce et al., 2022, eqs 3, 4, 35). With one minibatch (the full batch) that is x - lr P R grad g(x)."""
    lr = 0.05
    model = compiled(
        dense_network(seed=4), 2, smoother=keras.optimizers.SGD(lr), steps="[(0),{1}]", tau_batches=tau_batches,
        coarsening=kml.hierarchy.WidthCoarsening(scaled=scaled),
    )
    fine, coarse = model.optimizer.hierarchy
    x, y = regression(dtype="float64")
    batches = cycle.split_batch((x, y, None), tau_batches)
    before = weights(model)
    fine_gradients = [level_gradient(model, batch)[2] for batch in batches]
    coarse_gradients = [level_gradient(coarse.model, batch)[2] for batch in batches]
    mean = [sum(parts) / tau_batches for parts in zip(*fine_gradients)]
    tau = tau_correction([sum(parts) / tau_batches for parts in zip(*coarse_gradients)], fine.transfer.restrict_gradient(mean))
    step = fine.transfer.prolong([g - t for g, t in zip(coarse_gradients[0], tau)])
    if tau_batches == 1:
        _, _, full = level_gradient(model, (x, y, None))
        for a, b in zip(step, fine.transfer.prolong(fine.transfer.restrict_gradient(full))):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
    model.train_on_batch(x, y)
    for after, b, s in zip(weights(model), before, step):
        np.testing.assert_allclose(after, b - lr * s.numpy(), rtol=1e-10, atol=1e-13)


def test_momentum_is_restricted_and_corrected_with_the_weights(float64):
    """Ponce et al. (2022, eq 36) with alpha_p and alpha_m: m_c = Pi m; after the coarse step
    x += alpha_p P (x_c - Pi x) and m += alpha_m P (m_c' - Pi m)."""
    lr, mu, alpha_p, alpha_m = 0.0625, 0.875, 0.5, 0.2  # lr exact in the float32 learning-rate variable
    model = compiled(
        dense_network(seed=5), 2, smoother=keras.optimizers.SGD(lr, momentum=mu), steps="[(0),{1}]",
        tau_batches=1, correction_scale=alpha_p, momentum_scale=alpha_m,
    )
    fine = model.optimizer.hierarchy[0]
    momenta = momentum_slots(model.optimizer._smoothers[0], fine.variables)
    rng = np.random.default_rng(2)
    for slot in momenta:
        slot.assign(rng.normal(scale=0.01, size=slot.shape))
    m0 = [tf.constant(slot.numpy()) for slot in momenta]
    x, y = regression(dtype="float64")
    before = weights(model)
    _, _, gradient = level_gradient(model, (x, y, None))
    coarse_m0 = fine.transfer.restrict(m0)
    coarse_m1 = [mu * m - lr * g for m, g in zip(coarse_m0, fine.transfer.restrict_gradient(gradient))]
    model.train_on_batch(x, y)
    weight_step = fine.transfer.prolong(coarse_m1)
    momentum_step = fine.transfer.prolong([a - b for a, b in zip(coarse_m1, coarse_m0)])
    for after, b, s in zip(weights(model), before, weight_step):
        np.testing.assert_allclose(after, b + alpha_p * s.numpy(), rtol=1e-10, atol=1e-13)
    for slot, m, s in zip(momenta, m0, momentum_step):
        np.testing.assert_allclose(slot.numpy(), m.numpy() + alpha_m * s.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("levels, steps, scheme", [(2, "[2,{2}]", {"tau_batches": 2}), (3, "[(1),2,{1}]", {"tau_batches": 3}), (3, "[(0),1,{2}]", {"tau_scale": 0.0})])
def test_gradient_evaluations_match_the_cost_model(cycle_cost, levels, steps, scheme):
    """Width levels cost their ratio of multiply-adds; the cycle evaluates what work_units counts."""
    model = compiled(dense_network(), levels, steps=steps, **scheme)
    assert all(0 < level.relative_cost < 1 for level in model.optimizer.hierarchy[1:])
    assert cycle_cost(model, *regression()) == pytest.approx(model.optimizer.cycle_work_units)


def test_each_level_sees_the_minibatches_of_its_layout(monkeypatch):
    """Fine smoothing steps each take a fresh minibatch; tau and the coarser level use fresh ones
    drawn at each restriction (Ponce et al., 2022, §6.1.1)."""
    model = compiled(dense_network(), 3, steps="[2,1,{2}]", tau_batches=2)
    optimizer = model.optimizer
    count = optimizer.minibatches
    x, y = regression(count * 4)
    seen = {level: set() for level in range(3)}
    levels = {id(level.model): index for index, level in enumerate(optimizer.hierarchy)}

    def recording(original):
        def recorded(level_model, data, *args, **kwargs):
            first = np.asarray(data[0])[0]
            seen[levels[id(level_model)]].add(int(np.flatnonzero((x == first).all(axis=1))[0]) % count)
            return original(level_model, data, *args, **kwargs)

        return recorded

    for name in ("level_gradient", "loss_gradient"):
        monkeypatch.setattr(cycle, name, recording(getattr(cycle, name)))
    model.run_eagerly = True
    model.train_on_batch(x, y)
    layout = optimizer.layout
    assert count == 2 + 2 + 2 * 2
    assert seen[0] == {*layout.smoothing[0], *layout.tau[0]} == set(range(6))
    assert seen[1] == {*layout.tau[0], *layout.tau[1]} == {4, 5, 6, 7}
    assert seen[2] == set(layout.tau[1]) == {6, 7}


@pytest.mark.slow
def test_eager_and_compiled_fas_cycles_agree_including_rematching(float64):
    x, y = regression(dtype="float64")
    results = []
    for run_eagerly in (True, False):
        model = compiled(
            dense_network(seed=6), 3, smoother=keras.optimizers.SGD(0.05, momentum=0.9), steps="[1,2,{2}]",
            tau_batches=2, momentum_scale=0.5, tau_scale=0.5, learning_rate_divisor=2.0,
            coarsening=kml.hierarchy.WidthCoarsening(rematch_every=2),
        )
        model.run_eagerly = run_eagerly
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results.append(weights(model) + [a.zeta.numpy() for a in model.optimizer.hierarchy[0].transfer.aggregations])
    for eager, graph in zip(*results):
        np.testing.assert_allclose(eager, graph, rtol=1e-9, atol=1e-11)


# -- Keras behaviour ----------------------------------------------------------------


@pytest.mark.parametrize("network, levels", [(dense_network, 2), pytest.param(dense_network, 3, marks=pytest.mark.slow),
                                             pytest.param(conv_network, 2, marks=pytest.mark.slow)])
def test_fas_fit_lowers_the_loss(network, levels):
    shape = (6,) if network is dense_network else (4, 4, 2)
    model = compiled(network(seed=7), levels, smoother=keras.optimizers.SGD(0.02, momentum=0.9), tau_batches=2)
    x, y = regression(256, shape)
    history = model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.8 * loss[0]
    np.testing.assert_allclose(history.history["work_units"], model.optimizer.cycle_work_units * 4 * np.arange(1, 7))
    auxiliary = model.optimizer.hierarchy[1].model  # a Keras model of its own (Ponce et al., 2022, §8.3)
    assert np.isfinite(auxiliary.evaluate(x, y, verbose=0))


@pytest.mark.slow
def test_rematching_changes_the_matching_every_k_cycles_and_keeps_the_widths():
    model = compiled(dense_network(seed=8), 3, smoother=keras.optimizers.SGD(0.1, momentum=0.9),
                     coarsening=kml.hierarchy.WidthCoarsening(rematch_every=3))
    hierarchy = model.optimizer.hierarchy
    widths = [kml.hierarchy.WidthCoarsening().size(level.model) for level in hierarchy]
    first = [a.zeta.numpy().copy() for a in hierarchy[0].transfer.aggregations]
    model.fit(*regression(256), batch_size=64, epochs=2, verbose=0)  # 8 cycles: re-matched at 3 and 6
    again = [a.zeta.numpy() for a in hierarchy[0].transfer.aggregations]
    assert any(not np.array_equal(a, b) for a, b in zip(first, again))
    assert [kml.hierarchy.WidthCoarsening().size(level.model) for level in hierarchy] == widths
    restricted = hierarchy[0].transfer.restrict(hierarchy[0].transfer.prolong(hierarchy[1].variables))
    for got, expected in zip(restricted, hierarchy[1].variables):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_hierarchy_prints_the_widths_of_each_level():
    model = compiled(dense_network(hidden=(16, 12)), 3, coarsening=kml.hierarchy.WidthCoarsening(threshold=-1.0))
    text = str(model.optimizer.hierarchy)
    assert "width (heavy edge matching" in text
    assert "16-12" in text and "8-6" in text and "4-3" in text


@pytest.mark.slow
def test_config_and_keras_file_round_trip(tmp_path):
    model = compiled(
        dense_network(seed=9), 3, smoother=keras.optimizers.SGD(0.05, momentum=0.9), tau_batches=2,
        tau_scale=0.125, momentum_scale=0.2, learning_rate_divisor=[1.0, 2.0, 2.0],
        coarsening=kml.hierarchy.WidthCoarsening(threshold=0.1, scaled=True, rematch_every=10),
    )
    x, y = regression()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    config = model.optimizer.get_config()
    assert config["coarsening"]["name"] == "width" and config["coarsening"]["threshold"] == 0.1
    assert config["coarsening"]["widths"][0] == [16, 12] and len(config["coarsening"]["widths"]) == 3
    assert kml.MultilevelOptimizer.from_config(config).get_config() == config
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer.get_config() == config
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    for saved, restored in zip(model.optimizer.hierarchy[:-1], loaded.optimizer.hierarchy[:-1]):
        for a, b in zip(saved.transfer.state_variables, restored.transfer.state_variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())  # the matching itself
    for saved, restored in zip(model.optimizer._smoothers, loaded.optimizer._smoothers):  # momentum per level
        for a, b in zip(saved.variables, restored.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(weights(model), weights(loaded)):  # training resumes exactly
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# -- bad input ------------------------------------------------------------------------


def test_a_width_one_layer_cannot_be_coarsened():
    with pytest.raises(ValueError, match="width 1"):
        compiled(dense_network(hidden=(16, 1)), 2)


def test_more_levels_than_the_widths_allow():
    with pytest.raises(ValueError, match="dense_1"):
        compiled(dense_network(hidden=(16, 4)), 4)


@pytest.mark.parametrize("threshold", [1.5, -2.0, "high"])
def test_threshold_outside_minus_one_one(threshold):
    with pytest.raises(ValueError, match="threshold"):
        kml.hierarchy.WidthCoarsening(threshold=threshold)


@pytest.mark.slow
def test_a_short_last_batch_trains():
    """100 examples in batches of 24 leave a last batch of 4 for a cycle of 12 minibatches: it just trains."""
    model = compiled(dense_network(), 2, steps="[4,{4}]", tau_batches=4)
    assert model.optimizer.minibatches == 12
    x, y = regression(100)
    history = model.fit(x, y, batch_size=24, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.optimizer.iterations.numpy() == 2 * 5


def test_split_batch_takes_every_parts_th_row_and_goes_round_a_short_batch():
    x = np.arange(10, dtype="float32")[:, None]
    parts = [part[0].numpy()[:, 0].tolist() for part in cycle.split_batch((x, x, None), 4)]
    assert parts == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    short = [part[0].numpy()[:, 0].tolist() for part in cycle.split_batch((x[:3], x[:3], None), 5)]
    assert short == [[0], [1], [2], [0], [1]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": (16, 0)}, "`hidden` widths must be positive integers"),
        ({"conv": ((8, 3),)}, r"`conv` must list \(filters, kernel_size, strides\) triples"),
        ({"conv": ((0, 3, 1),)}, "`conv` widths must be positive integers"),
        ({"outputs": 0}, "`outputs` must be a positive integer"),
    ],
)
def test_feedforward_network_rejects_bad_arguments(kwargs, message):
    arguments = {"input_shape": (4, 4, 2), "outputs": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        kml.models.feedforward_network(**arguments)
