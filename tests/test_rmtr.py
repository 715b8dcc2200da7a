"""RMTR with L-SR1 (Kopaničáková and Krause, 2023) as MultilevelOptimizer(scheme="rmtr"): trust-region decisions and training."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import lsr1, trust_region
from keras_multilevel.optimizers.trust_region import LevelTrustRegion, RecursiveTrustRegion, TrustRegion


def variable(shape, dtype, name):
    return tf.Variable(tf.zeros(shape, dtype=dtype), name=name)


def quadratic_level(start, constants, curvature=1.0, quartic=0.0):
    """A one-variable 'level' with H(x) = curvature ||x||^2 / 2 + quartic ||x||^4 and its trust region."""
    x = tf.Variable(np.asarray(start, dtype="float64"))
    level = types.SimpleNamespace(variables=[x], parameters=x.shape.num_elements())
    state = LevelTrustRegion(level, [1.0], constants, variable, "test")

    def evaluate():
        with tf.GradientTape() as tape:
            squared = tf.reduce_sum(x * x)
            value = 0.5 * curvature * squared + quartic * squared**2
        return value, [tape.gradient(value, x)]

    return x, state, evaluate


def test_radius_grows_after_a_very_successful_step():
    """gamma = 1 is the exact Hessian of ||x||^2 / 2: rho = 1, the step goes to the boundary and Delta doubles."""
    constants = TrustRegion(radius=0.5, max_radius=1.5)
    x, state, evaluate = quadratic_level([3.0, 4.0], constants)
    current = state.step(evaluate(), evaluate)
    np.testing.assert_allclose(x.numpy(), np.array([3.0, 4.0]) * (1 - 0.5 / 5.0))
    assert float(state.radius) == 1.0
    assert float(current[0]) == pytest.approx(0.5 * 4.5**2)
    state.step(current, evaluate)
    assert float(state.radius) == 1.5  # capped at max_radius


def test_radius_shrinks_and_the_iterate_stays_after_a_rejected_step():
    """A quartic term the model does not see makes the full step raise H: rejected, Delta halves, x unchanged."""
    constants = TrustRegion(radius=4.0, max_radius=4.0)
    x, state, evaluate = quadratic_level([1.0, 1.0], constants, quartic=10.0)
    before = evaluate()
    current = state.step(before, evaluate)
    np.testing.assert_array_equal(x.numpy(), [1.0, 1.0])
    assert float(state.radius) == 2.0
    assert float(current[0]) == float(before[0])


def test_radius_stays_for_a_moderately_successful_step():
    """eta_1 <= rho < eta_2 keeps Delta."""
    radius = tf.constant(1.0, tf.float64)
    constants = TrustRegion()
    for rho, expected in ((0.05, 0.5), (0.5, 1.0), (0.9, 2.0), (-np.inf, 0.5)):
        assert float(trust_region.updated_radius(radius, tf.constant(rho, tf.float64), constants)) == expected


def test_ratio_of_a_step_without_predicted_decrease_rejects():
    assert float(trust_region.ratio(tf.constant(1.0, tf.float64), tf.constant(0.0, tf.float64))) == -np.inf
    assert float(trust_region.ratio(tf.constant(np.nan, tf.float64), tf.constant(1.0, tf.float64))) == -np.inf


@pytest.mark.slow
def test_single_level_converges_to_a_critical_point_of_least_squares(float64):
    """levels=1 is the L-SR1 trust-region method: on a convex least-squares problem ||grad|| -> 0."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5))
    y = x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(64, 1))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=kml.MultilevelOptimizer(levels=1, scheme="rmtr", steps="[{5}]"), loss="mse")
    model.fit(x, y, batch_size=64, epochs=12, verbose=0)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x))
    gradient = np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, model.trainable_variables)])
    assert np.linalg.norm(gradient) < 1e-8
    solution, *_ = np.linalg.lstsq(np.c_[x, np.ones(64)], y, rcond=None)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), solution[:5], atol=1e-7)


def circles(samples=64):
    x, y = kml.datasets.concentric_circles(samples, seed=3)
    return x, y


def residual(blocks=8, seed=0):
    keras.utils.set_random_seed(seed)
    return kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks)


@pytest.mark.slow
@pytest.mark.parametrize("levels,interpolation", [(2, "constant"), (3, "linear")])
def test_deterministic_multilevel_rmtr_decreases_the_loss_monotonically_to_a_critical_point(float64, levels, interpolation):
    """Full batch: every accepted step (Taylor or recursive) lowers H, so the loss never rises; ||grad|| falls."""
    x, y = circles()
    model = residual()
    model.compile(
        optimizer=kml.MultilevelOptimizer(levels=levels, scheme="rmtr", interpolation=interpolation),
        loss="categorical_crossentropy",
    )

    def gradient_norm():
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x))
        return np.sqrt(sum(float(tf.reduce_sum(g * g)) for g in tape.gradient(loss, model.trainable_variables)))

    first = gradient_norm()
    losses = model.fit(x, y, batch_size=len(x), epochs=25, verbose=0).history["loss"]
    assert np.all(np.diff(losses) <= 1e-12)
    assert losses[-1] < 0.2 * losses[0]
    assert gradient_norm() < 0.05 * first


def test_prolongated_steps_keep_their_length_in_the_level_norm(float64):
    """Depth coarsening, constant interpolation, "l2": ||P e||_f = ||e||_c, so the coarse bound keeps P e in the fine region."""
    model = residual()
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    fine, coarse = model.optimizer.trust_region_levels
    transfer = model.optimizer.hierarchy[0].transfer
    rng = np.random.default_rng(1)
    e = [tf.constant(rng.normal(size=v.shape)) for v in coarse.variables]
    fine_norm = tf.norm(lsr1.flatten(transfer.prolong(e)) * fine.scale)
    assert float(fine_norm) == pytest.approx(float(tf.norm(lsr1.flatten(e) * coarse.scale)), rel=1e-12)


def test_recursion_condition_and_the_coarse_bound(float64):
    """||R g|| < kappa_g ||g||: no descent and a zero coarse radius; otherwise the coarse bound is the fine radius left."""
    model = residual()
    model.compile(
        optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr", trust_region={"radius": 0.25, "kappa_g": 0.5}),
        loss="categorical_crossentropy",
    )
    rmtr = model.optimizer.solver.trust_region
    fine, coarse = model.optimizer.hierarchy
    gradients = [tf.ones_like(v) for v in fine.variables]
    small = [0.01 * tf.ones_like(v) for v in coarse.variables]
    assert not bool(rmtr.descend(0, gradients, small))
    assert float(rmtr.levels[1].bound) == 0.0 and float(rmtr.levels[1].radius) == 0.0
    restricted = fine.transfer.restrict_gradient(gradients)
    assert bool(rmtr.descend(0, gradients, restricted))
    assert float(rmtr.levels[1].bound) == 0.25 and float(rmtr.levels[1].radius) == 0.25
    np.testing.assert_allclose(rmtr.levels[1].start.numpy(), rmtr.levels[1].point().numpy())
    assert not bool(rmtr.descend(0, [tf.zeros_like(g) for g in gradients], [tf.zeros_like(g) for g in small]))


def test_a_recursive_step_that_raises_the_loss_is_rejected(float64):
    model = residual()
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    rmtr = model.optimizer.solver.trust_region
    level = model.optimizer.hierarchy[0]
    x, y = circles()

    def evaluate():
        return trust_region.value_and_gradient(level.model, (x, y, None), 0.0)[:2]

    before = [v.numpy() for v in level.variables]
    current = evaluate()
    uphill = [0.1 * g for g in current[1]]  # along the gradient
    after = rmtr.correct(0, uphill, current, tf.constant(1.0, tf.float64), tf.constant(True), evaluate)
    for variable, value in zip(level.variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert float(after[0]) == float(current[0])
    assert float(rmtr.levels[0].radius) == 0.25  # shrunk from 0.5
    # Skipped (no predicted decrease): no recursive step, the radius stays.
    rmtr.correct(0, uphill, current, tf.constant(0.0, tf.float64), tf.constant(False), evaluate)
    assert float(rmtr.levels[0].radius) == 0.25


@pytest.mark.parametrize("levels,steps", [(1, "[{2}]"), (2, "[(1),{2}]"),
                                          pytest.param(3, "[1,2/1,{2}]", marks=pytest.mark.slow)])
def test_work_units_count_the_gradients_evaluated(monkeypatch, levels, steps):
    model = residual()
    model.compile(
        optimizer=kml.MultilevelOptimizer(levels=levels, scheme="rmtr", steps=steps),
        loss="categorical_crossentropy",
        run_eagerly=True,
    )
    x, y = circles(16)
    model.train_on_batch(x, y)  # builds the hierarchy
    cost = {id(level.model): level.relative_cost for level in model.optimizer.hierarchy}
    spent = []
    original = trust_region.loss_gradient  # every evaluation of RMTR's cycle, which lives in that module
    monkeypatch.setattr(trust_region, "loss_gradient",
                        lambda m, *a, _f=original, **k: spent.append(cost[id(m)]) or _f(m, *a, **k))
    model.train_on_batch(x, y)
    assert sum(spent) == pytest.approx(model.optimizer.cycle_work_units)


def test_get_config_round_trip():
    optimizer = kml.MultilevelOptimizer(levels=3, scheme="rmtr", trust_region={"radius": 0.2, "memory": 5})
    config = optimizer.get_config()
    assert config["smoother"] is None and config["trust_region"]["memory"] == 5
    again = kml.MultilevelOptimizer.from_config(config)
    assert again.get_config() == config
    assert again.trust_region == TrustRegion(radius=0.2, memory=5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"smoother": "adam"}, "`smoother` would go unused"),
        ({"tau_scale": 0.5}, "fixes \\['tau_scale'\\]"),
        ({"fresh_batches": True}, "fixes \\['fresh_batches'\\]"),
        ({"correction_test": True}, "fixes \\['correction_test'\\]"),
        ({"learning_rate_divisor": 2.0}, "no learning rate"),
        ({"schedule": [1]}, "schedule"),
        ({"trust_region": {"radius": 0.0}}, "`radius` must be a finite number > 0"),
        ({"trust_region": {"radius": 1.0, "max_radius": 0.5}}, "`max_radius` must be a finite number >= radius"),
        ({"trust_region": {"eta_1": 0.8, "eta_2": 0.5}}, "`eta_2` must be in \\[eta_1, 1\\)"),
        ({"trust_region": {"shrink": 1.0}}, "`shrink` must be in \\(0, 1\\)"),
        ({"trust_region": {"memory": 0}}, "`memory`"),
        ({"trust_region": {"radius_": 1.0}}, "Unknown trust-region constants \\['radius_'\\]"),
        ({"trust_region": 3}, "`trust_region` must be None"),
    ],
)
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.MultilevelOptimizer(levels=2, scheme="rmtr", **kwargs)


def test_trust_region_constants_belong_to_rmtr():
    with pytest.raises(ValueError, match="constants of scheme='rmtr'"):
        kml.MultilevelOptimizer(levels=2, scheme="mgopt", trust_region={"radius": 1.0})


def test_mixed_precision_is_refused():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = residual()
        with pytest.raises(ValueError, match="mixed_float16"):
            model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.slow
def test_growing_batches_double_when_the_finest_radius_falls_below_the_threshold():
    """Small noisy batches shrink the radius below min_radius: the batch doubles, up to the whole set."""
    x, y = circles(64)
    model = residual(blocks=4)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    history = kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=16, epochs=5, min_radius=10.0, verbose=0)
    assert history.history["batch_size"] == [16, 32, 64, 64, 64]  # every radius is below 10
    assert len(history.history["loss"]) == 5
    never = kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=16, epochs=2, min_radius=0.0, verbose=0)
    assert never.history["batch_size"] == [16, 16]


def test_growing_batches_bad_inputs():
    x, y = circles(16)
    model = residual(blocks=4)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2), loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="scheme='rmtr'"):
        kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=8, epochs=1)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="`growth` must be a number > 1"):
        kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=8, epochs=1, growth=1)
    with pytest.raises(ValueError, match="sets \\['initial_epoch'\\]"):
        kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=8, epochs=1, initial_epoch=2)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1, got 0"):
        kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=0, epochs=1)
    with pytest.raises(ValueError, match="`epochs` must be an integer >= 0, got 1.5"):
        kml.optimizers.fit_with_growing_batches(model, x, y, batch_size=8, epochs=1.5)
    with pytest.raises(ValueError, match="same number of rows, got 16 and 8"):
        kml.optimizers.fit_with_growing_batches(model, x, y[:8], batch_size=8, epochs=1)


@pytest.mark.slow
def test_saved_model_resumes_with_its_radii_and_secant_pairs(tmp_path):
    """The trust regions and L-SR1 memories are optimizer variables: a loaded model goes on exactly."""
    x, y = circles(64)
    model = residual(blocks=4)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr"), loss="categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    model.save(tmp_path / "rmtr.keras")
    loaded = keras.models.load_model(tmp_path / "rmtr.keras")
    for mine, theirs in zip(model.optimizer.trust_region_levels, loaded.optimizer.trust_region_levels):
        assert float(mine.radius) == float(theirs.radius)
        np.testing.assert_array_equal(mine.memory.s.numpy(), theirs.memory.s.numpy())
    assert model.optimizer.trust_region_levels[0].memory.used.numpy().any()
    again = model.fit(x, y, batch_size=64, epochs=1, verbose=0).history["loss"]
    assert loaded.fit(x, y, batch_size=64, epochs=1, verbose=0).history["loss"] == again


def test_a_prolongated_step_longer_than_the_radius_left_is_shortened_to_it(float64):
    """For transfers that are not isometries: P e is scaled back to the fine radius, its prediction with it."""
    model = residual()
    model.compile(
        optimizer=kml.MultilevelOptimizer(levels=2, scheme="rmtr", trust_region={"radius": 0.01}),
        loss="categorical_crossentropy",
    )
    rmtr = model.optimizer.solver.trust_region
    level = model.optimizer.hierarchy[0]
    x, y = circles()

    def evaluate():
        return trust_region.value_and_gradient(level.model, (x, y, None), 0.0)[:2]

    current = evaluate()
    before = rmtr.levels[0].point()
    downhill = [-10.0 * g for g in current[1]]  # far longer than 0.01
    after = rmtr.correct(0, downhill, current, tf.constant(1e-3, tf.float64), tf.constant(True), evaluate)
    assert float(after[0]) < float(current[0])  # accepted: a short step down the gradient
    assert float(tf.norm(rmtr.levels[0].point() - before)) == pytest.approx(0.01, rel=1e-9)
