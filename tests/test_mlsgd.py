"""MLSGD (Jacob, 2024, §3.2-3.3, Algorithms 4-5): its tests' decisions, its variants and what History reports."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import level_gradient
from keras_multilevel.optimizers.inner_product import riesz
from keras_multilevel.optimizers.mlsgd import (
    angle_holds, descends, step_regularization_gradient, step_regularization_value, variance_reduced,
)


def circles(samples=32, seed=3, dtype="float32"):
    x, y = kml.datasets.concentric_circles(samples, seed=seed)
    return x.astype(dtype), y.astype(dtype)


def compiled(levels=2, blocks=8, run_eagerly=False, **optimizer_kwargs):
    keras.utils.set_random_seed(0)
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks)
    optimizer_kwargs.setdefault("smoother", keras.optimizers.SGD(0.1))
    optimizer_kwargs.setdefault("scheme", "mlsgd")
    model.compile(optimizer=kml.MultilevelOptimizer(levels=levels, **optimizer_kwargs),
                  loss="categorical_crossentropy", run_eagerly=run_eagerly)
    return model


def weights(model):
    return [v.numpy() for v in model.trainable_variables]


def constant(*rows):
    return [tf.constant(row, dtype=tf.float64) for row in rows]


# -- each test's decision on constructed gradients ------------------------------------


def test_recursion_test_descends_for_smooth_gradients_and_not_in_the_kernel_of_the_restriction():
    """Jacob (2024, eq 3.4): ||P* grad H||_c >= eta ||grad H||; a gradient alternating between paired blocks has R g = 0."""
    fine_weights, coarse_weights = [0.5], [1.0]  # h_l and h_{l-1} = 2 h_l
    smooth, alternating = constant([1.0, 1.0]), constant([1.0, -1.0])
    # R = P^T of constant interpolation sums each pair of blocks.
    assert bool(descends(smooth, constant([2.0]), fine_weights, coarse_weights, 0.99, 0.0))
    assert not bool(descends(alternating, constant([0.0]), fine_weights, coarse_weights, 0.1, 0.0))
    # ||P* grad H||_c = 2 / sqrt(1) = 2 = ||grad H||_l = sqrt(2 / 0.5): ratio exactly 1.
    assert not bool(descends(smooth, constant([2.0]), fine_weights, coarse_weights, 1.01, 0.0))


def test_recursion_test_stops_below_the_tolerance():
    """Jacob (2024, eq 3.5): ||P* grad H||_c >= epsilon."""
    gradient, restricted = constant([1.0, 1.0]), constant([2.0])
    assert bool(descends(gradient, restricted, [0.5], [1.0], 0.0, 1.99))
    assert not bool(descends(gradient, restricted, [0.5], [1.0], 0.0, 2.01))


@pytest.mark.parametrize(
    "step, threshold, holds",
    [([-1.0, 0.0], 1.0, True), ([-1.0, -1.0], 0.7, True), ([-1.0, -1.0], 0.71, False),
     ([0.0, 1.0], 0.0, True), ([0.0, 1.0], 0.01, False), ([1.0, 0.0], 0.0, False), ([0.0, 0.0], 0.5, True)],
)
def test_angle_condition_compares_the_cosine_with_mu(step, threshold, holds):
    """Jacob (2024, eq 3.3): -<grad H, s> >= mu ||grad H|| ||s||, cos(45 deg) = 0.7071; a zero step passes."""
    assert bool(angle_holds(constant([1.0, 0.0]), constant(step), [1.0], threshold)) is holds


def test_angle_condition_measures_in_the_level_inner_product():
    """The cosine is measured in the level inner product sum_j w_j <u_j, v_j>: a weight per variable changes it."""
    gradient, step = constant([1.0, 2.0], [3.0]), constant([-1.0, 0.5], [-4.0])
    euclidean_cosine = 12.0 / (np.sqrt(14.0) * np.sqrt(17.25))
    for weights in ([1.0, 1.0], [0.25, 1.0]):
        cosine_in_weights = 12.0 / (
            np.sqrt(5.0 / weights[0] + 9.0 / weights[1]) * np.sqrt(1.25 * weights[0] + 16.0 * weights[1])
        )
        assert bool(angle_holds(gradient, step, weights, cosine_in_weights - 1e-9))
        assert not bool(angle_holds(gradient, step, weights, cosine_in_weights + 1e-9))
    assert cosine_in_weights != pytest.approx(euclidean_cosine)


def test_step_regularization_gradient_is_the_gradient_of_its_value():
    variables = constant([1.0, 2.0], [3.0])
    start = constant([0.5, 0.0], [1.0])
    with tf.GradientTape() as tape:
        tape.watch(variables)
        value = step_regularization_value(variables, start, [0.25, 1.0], 5.0)
    for got, expected in zip(step_regularization_gradient(variables, start, [0.25, 1.0], 5.0),
                             tape.gradient(value, variables)):
        np.testing.assert_allclose(got.numpy(), expected.numpy())
    assert float(value) == pytest.approx(0.5 * 5.0 * (0.25 * (0.25 + 4.0) + 4.0))


def test_variance_reduced_direction_is_the_anchor_at_the_snapshot():
    gradient = constant([1.0, 2.0])
    anchor = constant([5.0, -1.0])
    np.testing.assert_allclose(variance_reduced(gradient, gradient, anchor)[0].numpy(), [5.0, -1.0])


# -- the decisions inside model.fit ------------------------------------------------------


@pytest.mark.slow
def test_recursion_test_that_must_stop_skips_every_coarse_level_and_its_work(cycle_cost):
    """With eta huge no cycle descends: History counts one stop per cycle, the coarse levels
    spend nothing and the fine level keeps its steps (the work units are those actually spent)."""
    x, y = circles(64)
    model = compiled(levels=3, recursion_ratio=1e6, steps="[1,1,{2}]")
    coarse_before = [weights(level.model) for level in model.optimizer.hierarchy[1:]]
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["mlsgd_recursion_stops"], [4.0, 8.0])
    np.testing.assert_allclose(history["mlsgd_angle_stops"], [0.0, 0.0])
    # Only the finest level's start gradient, its test gradient and its one post-step: 3 fine gradients.
    np.testing.assert_allclose(history["work_units"], [4 * 3.0, 8 * 3.0])
    for level, before in zip(model.optimizer.hierarchy[1:], coarse_before):
        for got, expected in zip(weights(level.model), before):
            np.testing.assert_array_equal(got, expected)
    assert 3.0 < model.optimizer.cycle_work_units
    assert cycle_cost(compiled(levels=3, recursion_ratio=1e6, steps="[1,1,{2}]"), x[:16], y[:16]) == pytest.approx(3.0)


@pytest.mark.slow
def test_recursion_test_that_must_descend_reaches_every_level(cycle_cost):
    x, y = circles(64)
    model = compiled(levels=3, recursion_ratio=0.0, recursion_tolerance=1e-12, steps="[1,1,{2}]")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert history["mlsgd_recursion_stops"] == [0.0]
    assert history["work_units"][0] == pytest.approx(4 * model.optimizer.cycle_work_units)
    settings = {"levels": 3, "recursion_ratio": 0.0, "recursion_tolerance": 1e-12, "steps": "[1,1,{2}]"}
    assert cycle_cost(compiled(**settings), x[:16], y[:16]) == pytest.approx(model.optimizer.cycle_work_units)


@pytest.mark.slow
def test_recursion_tolerance_stops_the_descent():
    x, y = circles(64)
    model = compiled(levels=2, recursion_ratio=0.0, recursion_tolerance=1e9)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert history["mlsgd_recursion_stops"] == [4.0]


@pytest.mark.slow
def test_angle_condition_that_always_fails_ends_each_coarse_phase_and_undoes_its_step(cycle_cost):
    """mu = 1 asks a coarse step to point exactly along -grad H: it never does, so every coarse phase
    ends at its first step, which is undone: the cycle is then the fine steps alone."""
    x, y = circles(16)
    settings = {"levels": 2, "angle_threshold": 1.0, "recursion_ratio": 0.0, "steps": "[(1),{3}]"}
    model = compiled(**settings)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    np.testing.assert_allclose(history["mlsgd_angle_stops"], [1.0, 2.0, 3.0])
    # Start gradient, its tau-minibatch gradient for the test, the coarse gradient at Pi x: later coarse steps skipped.
    costs = [level.relative_cost for level in model.optimizer.hierarchy]
    np.testing.assert_allclose(np.diff([0.0, *history["work_units"]]), costs[0] + 1.0 * costs[0] + costs[1])
    assert cycle_cost(compiled(**settings), x, y) == pytest.approx(2 * costs[0] + costs[1])

    reference = compiled(levels=1, smoother=keras.optimizers.SGD(0.1))
    reference.fit(x, y, batch_size=16, epochs=3, verbose=0)
    for got, expected in zip(weights(model), weights(reference)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_saved_model_resumes_with_its_stop_counts_and_work_units(tmp_path):
    """``.keras`` round trip mid-training: the loaded model goes on exactly as the original, counters included."""
    x, y = circles(32)
    settings = {"levels": 2, "angle_threshold": 1.0, "steps": "[(1),{3}]", "step_regularization": 1.0,
                "smoother": keras.optimizers.SGD(0.1, momentum=0.5)}
    model = compiled(**settings)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "mlsgd.keras")
    loaded = keras.models.load_model(tmp_path / "mlsgd.keras")
    assert loaded.optimizer.scheme == model.optimizer.scheme
    assert float(loaded.optimizer.stop_counts["angle"].numpy()) == float(model.optimizer.stop_counts["angle"].numpy()) == 2.0
    original = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    resumed = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    assert resumed == original and original["mlsgd_angle_stops"] == [4.0]
    for got, expected in zip(weights(loaded), weights(model)):
        np.testing.assert_array_equal(got, expected)


def test_none_switches_the_angle_test_and_the_momentum_transfer_off_and_round_trips():
    """``None`` is a value for the two constants whose preset may be a number: no test, no transfer."""
    optimizer = kml.MultilevelOptimizer(levels=2, scheme="mlsgd", angle_threshold=None)
    assert optimizer.scheme.angle_threshold is None and optimizer.scheme.recursion_ratio == 0.1
    assert kml.MultilevelOptimizer(levels=2, scheme="mlsgd").scheme.angle_threshold == 0.0
    fas = kml.MultilevelOptimizer(levels=2, scheme="fas", coarsening="width", momentum_scale=None)
    assert not fas.scheme.momentum_transfer
    assert kml.MultilevelOptimizer(levels=2, scheme="fas", coarsening="width").scheme.momentum_scale == 1.0
    for original in (optimizer, fas):
        assert kml.MultilevelOptimizer.from_config(original.get_config()).scheme == original.scheme


@pytest.mark.slow
def test_angle_condition_that_always_holds_stops_nothing():
    x, y = circles(16)
    model = compiled(levels=2, angle_threshold=-1.0, steps="[(1),{3}]")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    assert history["mlsgd_angle_stops"] == [0.0, 0.0]
    assert history["work_units"][-1] == pytest.approx(2 * model.optimizer.cycle_work_units)


def test_schemes_without_safeguards_log_no_stop_counts():
    x, y = circles(16)
    history = compiled(levels=2, scheme="mgopt").fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert not any(key.startswith("mlsgd_") for key in history)


@pytest.mark.slow
def test_large_step_regularization_shrinks_the_coarse_steps(float64):
    """Jacob (2024, §3.2.3): lambda acts as an inverse trust-region radius. With no fine smoothing the fine
    weights move by P (x_c - Pi x) alone, whose length falls as lambda grows."""
    x, y = circles(32, dtype="float64")
    lengths = []
    for strength in (0.0, 1.0, 4.0, 9.0):
        model = compiled(levels=2, steps="[(0),{6}]", gradient_correction="stochastic",
                         step_regularization=strength, angle_threshold=-1.0, recursion_ratio=0.0)
        before = weights(model)
        model.train_on_batch(x, y)
        lengths.append(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights(model), before))))
    assert lengths[0] > 0
    assert all(longer > shorter for longer, shorter in zip(lengths, lengths[1:]))
    assert lengths[-1] < 0.5 * lengths[0]


def test_deterministic_correction_is_first_order_coherent_with_the_full_gradient(float64):
    """Jacob (2024, §3.3.2): tau is formed on the held data set, so the coarse objective's gradient at Pi x is
    R grad F(x) of the full set, not of the minibatch: one coarse step (the anchor) moves the fine
    weights by P (-alpha grad_c) with grad_c = R grad F_full(x)."""
    full_x, full_y = circles(64, seed=7, dtype="float64")
    x, y = circles(16, dtype="float64")
    model = compiled(levels=2, steps="[(0),{1}]", scheme="mgopt", gradient_correction="deterministic")
    model.optimizer.use_full_batch(full_x, full_y)
    fine, coarse = model.optimizer.hierarchy
    _, _, full_gradient = level_gradient(fine.model, (full_x, full_y, None))
    _, _, batch_gradient = level_gradient(fine.model, (x, y, None))
    expected = fine.transfer.prolong(
        [-0.1 * g for g in riesz(fine.transfer.restrict_gradient(full_gradient), coarse.inner_product)]
    )
    before = weights(model)
    model.train_on_batch(x, y)
    for after, start, step in zip(weights(model), before, expected):
        np.testing.assert_allclose(after - start, step.numpy(), rtol=1e-9, atol=1e-13)
    assert not all(np.allclose(f.numpy(), b.numpy()) for f, b in zip(full_gradient, batch_gradient))


def test_deterministic_correction_counts_the_full_gradients_by_their_rows():
    """Each gradient on the held set of N rows costs N / b minibatch gradients (b rows a minibatch)."""
    full_x, full_y = circles(64, seed=7)
    x, y = circles(16)
    model = compiled(levels=2, steps="[(0),{1}]", scheme="mgopt", gradient_correction="deterministic")
    model.optimizer.use_full_batch(full_x, full_y)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    coarse = model.optimizer.hierarchy[1].relative_cost
    # The start gradient on the minibatch, the fine and coarse gradients on 64 rows for tau.
    assert history["work_units"] == [pytest.approx(1.0 + 4.0 + 4.0 * coarse)]


def test_deterministic_correction_needs_the_held_data():
    x, y = circles(16)
    model = compiled(levels=2, gradient_correction="deterministic")
    with pytest.raises(ValueError, match="use_full_batch"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="gradient_correction='deterministic'"):
        compiled(levels=2).optimizer.use_full_batch(x, y)
    with pytest.raises(ValueError, match="same number of rows"):
        model.optimizer.use_full_batch(x, y[:3])
    with pytest.raises(ValueError, match="`x` of the full batch must be a numeric array"):
        model.optimizer.use_full_batch("circles.npz", y)


@pytest.mark.slow
def test_variance_reduction_on_the_tau_minibatch_itself_changes_no_step_but_costs_two_gradients(cycle_cost):
    """SVRG's g(x, xi) - g(x_0, xi) + mu with mu = g(x_0, xi) (one shared minibatch, stochastic
    correction) is g(x, xi): the weights are those without variance reduction, the work is not."""
    x, y = circles(16)
    results, costs = [], []
    for reduction in (False, True):
        settings = {"levels": 2, "steps": "[1,{3}]", "gradient_correction": "stochastic", "variance_reduction": reduction}
        model = compiled(**settings)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
        results.append(weights(model))
        costs.append(history["work_units"][-1] / 2)
        assert costs[-1] == pytest.approx(model.optimizer.cycle_work_units)
        assert cycle_cost(compiled(**settings), x, y) == pytest.approx(costs[-1])
    for with_reduction, without in zip(results[1], results[0]):
        np.testing.assert_allclose(with_reduction, without, rtol=1e-4, atol=1e-6)
    # Coarse steps 2 and 3 evaluate the snapshot gradient too.
    assert costs[1] - costs[0] == pytest.approx(2 * model.optimizer.hierarchy[1].relative_cost)


# -- configuration and bad input ----------------------------------------------------------


def test_mlsgd_defaults():
    scheme = kml.MultilevelOptimizer(levels=2, scheme="mlsgd").scheme
    assert (scheme.gradient_correction, scheme.tau_scale, scheme.step_regularization) == ("none", 0.0, 0.0)
    assert (scheme.recursion_ratio, scheme.recursion_tolerance, scheme.angle_threshold) == (0.1, 0.0, 0.0)
    assert not scheme.variance_reduction
    corrected = kml.MultilevelOptimizer(levels=2, scheme="mlsgd", gradient_correction="stochastic").scheme
    assert corrected.tau_scale == 1.0
    assert kml.MultilevelOptimizer(levels=2, scheme="mlsgd", tau_scale=0.5).scheme.gradient_correction == "stochastic"
    assert kml.MultilevelOptimizer(levels=2, tau_scale=0.0).scheme.gradient_correction == "none"


def test_config_round_trip():
    optimizer = kml.MultilevelOptimizer(
        levels=3, scheme="mlsgd", gradient_correction="deterministic", step_regularization=5.0,
        recursion_ratio=0.2, recursion_tolerance=1e-6, angle_threshold=0.1, variance_reduction=True,
    )
    config = optimizer.get_config()
    assert kml.MultilevelOptimizer.from_config(config).get_config() == config
    assert config["gradient_correction"] == "deterministic" and config["variance_reduction"] is True
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.scheme == optimizer.scheme


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gradient_correction": "full"}, "`gradient_correction` must be one of"),
        ({"gradient_correction": "none", "tau_scale": 0.5}, "contradicts"),
        ({"gradient_correction": "stochastic", "tau_scale": 0.0}, "contradicts"),
        ({"variance_reduction": True}, "needs|only a gradient correction computes"),
        ({"variance_reduction": 1, "gradient_correction": "stochastic"}, "`variance_reduction` must be True or False"),
        ({"step_regularization": -1.0}, r"`step_regularization` \(lambda"),
        ({"recursion_ratio": "big"}, r"`recursion_ratio` \(eta"),
        ({"recursion_tolerance": float("nan")}, r"`recursion_tolerance` \(epsilon"),
        ({"angle_threshold": 1.5}, r"`angle_threshold` \(mu"),
    ],
)
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.MultilevelOptimizer(levels=2, scheme="mlsgd", **kwargs)


@pytest.mark.slow
def test_the_circles_comparison_of_the_cli_runs_mlsgd():
    """`keras-multilevel bench circles --scheme mlsgd` trains through keras_multilevel.cli.circles.train_circles."""
    from keras_multilevel.cli import circles as demo

    data = (circles(64), circles(32, seed=4))
    run = demo.train_circles(2, data, blocks=8, budget=10.0, scheme="mlsgd")
    assert run.work_units[-1] >= 10.0 and len(run.work_units) >= 2
    assert "mlsgd" in run.model.optimizer.get_config()["scheme"]


@pytest.mark.slow
def test_xla_compiled_mlsgd_cycle_agrees_with_the_graph(float64):
    """The data-dependent descent and early stops compile with jit_compile=True to the same numbers."""
    x, y = circles(32, dtype="float64")
    results = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = kml.models.residual_network((2,), outputs=2, width=3, blocks=8)
        model.compile(optimizer=kml.MultilevelOptimizer(levels=3, scheme="mlsgd", steps="[0/3,0/2,{3}]",
                                                        gradient_correction="stochastic", step_regularization=1.0),
                      loss="categorical_crossentropy", jit_compile=jit_compile)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
        results.append((weights(model), history["work_units"], history["mlsgd_angle_stops"]))
    for graph, xla in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(xla, graph, rtol=1e-9, atol=1e-12)
    assert results[0][1:] == results[1][1:]
