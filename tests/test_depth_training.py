"""Depth training that behaves like its ODE: L2(0, T) inner products, the source circles, the safeguard."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.layers import residual
from keras_multilevel.optimizers.mgopt import within_bound
from keras_multilevel.optimizers.inner_product import inner_product_weights, riesz, tikhonov_weights
from keras_multilevel.optimizers.steps import FORWARD_COST


def network(blocks, seed=0):
    keras.utils.set_random_seed(seed)
    return kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks)


def train(model, x, y, cycles, levels=1, **optimizer):
    optimizer.setdefault("smoother", keras.optimizers.SGD(0.1))
    model.compile(optimizer=kml.MultilevelOptimizer(levels=levels, **optimizer), loss="categorical_crossentropy")
    return [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(cycles)]


def deepened(model, factor):
    """The same network with each residual block repeated ``factor`` times (constant prolongation in time)."""
    blocks = model.get_layer("residual_stack").blocks
    deep = network(blocks * factor)
    for layer in model.layers:
        values = layer.get_weights()
        if layer.name == "residual_stack":
            values = [np.repeat(value, factor, axis=0) for value in values]
        deep.get_layer(layer.name).set_weights(values)
    return deep


@pytest.fixture
def circles():
    return kml.datasets.concentric_circles(256, seed=4)


@pytest.mark.slow
def test_one_level_trains_the_same_for_64_and_1024_blocks(circles):
    """With L2(0, T) gradients training does not depend on the depth K (Gaedke-Merzhäuser et al., 2021, Fig 5; Jacob, 2024, §3.2): the loss
    curves agree and the stacks move by the same function of time; with Euclidean gradients each of the
    1,024 blocks moves 16 times less than each of the 64."""
    x, y = circles
    moves = {}
    for inner_product in ("l2", "euclidean"):
        shallow = network(64)
        deep = deepened(shallow, 16)
        np.testing.assert_allclose(shallow.predict(x, verbose=0), deep.predict(x, verbose=0), atol=0.02)
        starts = [m.get_layer("residual_stack").get_weights()[0] for m in (shallow, deep)]
        curves = [np.array(train(m, x, y, 40, inner_product=inner_product)) for m in (shallow, deep)]
        if inner_product == "l2":
            assert curves[0][-1] < 0.7 * curves[0][0]  # it trains
            assert np.max(np.abs(curves[0] - curves[1])) < 0.05 * (curves[0][0] - curves[0][-1])
        shallow_move, deep_move = (
            m.get_layer("residual_stack").get_weights()[0] - start for m, start in zip((shallow, deep), starts)
        )
        moves[inner_product] = np.linalg.norm(np.repeat(shallow_move, 16, axis=0) - deep_move) / np.linalg.norm(
            np.repeat(shallow_move, 16, axis=0)
        )
    assert moves["l2"] < 0.1
    assert moves["euclidean"] > 0.8


def test_tikhonov_is_the_time_integral_on_every_level():
    """beta sum_k h ||theta_k||^2 is the same for a stack and its constant prolongation: the same functional."""
    model = network(32)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=3, regularization=1e-3), loss="categorical_crossentropy")
    hierarchy = model.optimizer.hierarchy
    coarse = hierarchy[2]
    for fine, coarser in ((hierarchy[1], hierarchy[2]), (hierarchy[0], hierarchy[1])):
        for variable, value in zip(fine.variables, fine.transfer.prolong(coarser.variables)):
            variable.assign(value)

    def penalty(index):
        level = hierarchy[index]
        betas = hierarchy[index].regularization
        return sum(beta * float(np.sum(v.numpy() ** 2)) for beta, v in zip(betas, level.variables))

    assert penalty(0) == pytest.approx(penalty(2), rel=1e-5)
    assert penalty(1) == pytest.approx(penalty(2), rel=1e-5)
    # Gaedke-Merzhäuser et al. (2021) literally: beta 2^i on level i, the sum of squares unscaled.
    weights = inner_product_weights(coarse.model, "euclidean")
    assert tikhonov_weights(1e-3, weights, 2, "euclidean") == [4e-3] * len(weights)


def test_gradient_in_the_level_inner_product_represents_the_derivative():
    """<riesz(g), u>_l = <g, u> for every u: the defining property of the gradient in <.,.>_l (Jacob, 2024, §3.2)."""
    model = network(16)
    weights = inner_product_weights(model, "l2")
    assert sorted(set(weights)) == [1.0 / 16, 1.0]
    rng = np.random.default_rng(0)
    g = [rng.normal(size=v.shape) for v in model.trainable_variables]
    u = [rng.normal(size=v.shape) for v in model.trainable_variables]
    represented = sum(w * np.sum(np.asarray(r) * b) for w, r, b in zip(weights, riesz(g, weights), u))
    assert represented == pytest.approx(sum(np.sum(a * b) for a, b in zip(g, u)))


def test_bad_inner_product_and_correction_test_are_refused():
    with pytest.raises(ValueError, match="`inner_product` must be 'l2'"):
        kml.MultilevelOptimizer(levels=2, inner_product="sobolev")
    with pytest.raises(ValueError, match="`correction_test` must be True or False"):
        kml.MultilevelOptimizer(levels=2, correction_test="yes")


# -- the source problem --------------------------------------------------------------


def test_circles_are_the_unit_disc_against_the_ring():
    x, y = kml.datasets.concentric_circles(4000, seed=1)
    radius = np.linalg.norm(x, axis=1)
    ring = y[:, 1] == 1
    assert np.all(radius[~ring] <= 1.0 + 1e-6)
    assert np.all((radius[ring] >= 2.0 - 1e-6) & (radius[ring] <= 3.0 + 1e-6))
    assert abs(ring.mean() - 0.5) < 4 * 0.5 / np.sqrt(4000)  # classes equally likely
    # Uniform by area: a quarter of the disc's points lie within radius 1/2.
    assert abs(np.mean(radius[~ring] <= 0.5) - 0.25) < 0.04
    again, _ = kml.datasets.concentric_circles(4000, seed=1)
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, kml.datasets.concentric_circles(4000, seed=2)[0])


# -- the safeguarded coarse correction ---------------------------------------------------------


def one_fine_step(x, y):
    """The weights after the cycle's only fine step, [(1),{...}] with the correction discarded."""
    model = network(8)
    train(model, x, y, 1)
    return [v.numpy() for v in model.trainable_variables]


@pytest.mark.slow
def test_a_nan_on_a_coarse_level_never_reaches_the_fine_weights(circles):
    x, y = circles
    model = network(8)
    # Level 1 steps with learning rate 0.1 / 1e-37: its weights overflow to Inf and NaN.
    train(model, x, y, 1, levels=2, steps="[(1),{5}]", learning_rate_divisor=[1.0, 1e-37])
    coarse = model.optimizer.hierarchy[1]
    assert not all(np.all(np.isfinite(v.numpy())) for v in coarse.variables)
    for got, expected in zip(model.trainable_variables, one_fine_step(x, y)):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("correction_test", [False, True])
def test_the_acceptance_test_discards_a_correction_that_raises_the_loss(circles, correction_test):
    x, y = circles
    model = network(8)
    # Level 1 overshoots with learning rate 0.1 / 1e-2 = 10: a finite correction that raises the loss.
    train(model, x, y, 1, levels=2, steps="[(1),{3}]", learning_rate_divisor=[1.0, 1e-2],
          correction_test=correction_test, correction_bound=None)
    reference = network(8)
    reference.set_weights([np.asarray(w) for w in one_fine_step(x, y)])
    reference.compile(loss="categorical_crossentropy")
    loss = model.evaluate(x, y, verbose=0)
    if correction_test:
        for got, expected in zip(model.trainable_variables, reference.trainable_variables):
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    else:
        assert loss > reference.evaluate(x, y, verbose=0) + 0.01


def test_the_correction_bound_compares_a_corrections_size_with_the_weights():
    weights = [tf.constant([3.0, 4.0])]  # ||x|| = 5
    assert within_bound([tf.constant([6.0, 8.0])], weights, 2.0)  # ||P e|| = 10 = 2 ||x||
    assert not within_bound([tf.constant([6.0, 8.1])], weights, 2.0)
    zero = [tf.zeros(2)]  # weights at zero: the bound is relative to 1
    assert within_bound([tf.constant([0.75, 1.0])], zero, 1.25)  # ||P e|| = 1.25 (binary fractions: exact)
    assert not within_bound([tf.constant([0.75, 1.01])], zero, 1.25)
    assert within_bound([tf.constant([1e30, 0.0])], weights, None)  # no bound: only finiteness
    assert not within_bound([tf.constant([3e38, 3e38])], weights, 1e30)  # a norm that overflows is refused
    assert not within_bound([tf.constant([np.nan, 0.0])], weights, None)
    assert not within_bound([tf.constant([0.0, np.inf])], weights, 10.0)


def test_a_coarse_level_that_diverges_to_large_finite_values_cannot_wreck_the_fine_weights(circles):
    """Level 1 at learning rate 0.1 / 1e-3 reaches weights of about 1e29, finite: the default bound discards
    every such correction and History counts them; without the bound the fine weights turn NaN."""
    x, y = circles

    def fit(**options):
        model = network(16)
        model.compile(loss="categorical_crossentropy", optimizer=kml.MultilevelOptimizer(
            levels=2, smoother=keras.optimizers.SGD(0.1), steps="[1,{4}]", learning_rate_divisor=[1.0, 1e-3],
            **options))
        return model, model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0).history

    bounded, history = fit()
    assert history["discarded_corrections"] == [4.0, 8.0]  # 4 cycles per epoch, each correction discarded
    # What is left is the fine level's own two steps per batch, before and after the descent: one level's training.
    plain = network(16)
    plain.compile(loss="categorical_crossentropy",
                  optimizer=kml.MultilevelOptimizer(levels=1, steps="[{2}]", smoother=keras.optimizers.SGD(0.1)))
    plain.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    for got, expected in zip(bounded.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    _, unbounded = fit(correction_bound=None)
    assert np.isnan(unbounded["loss"][-1])


@pytest.mark.slow
def test_a_healthy_run_discards_no_correction_and_the_count_is_logged_only_where_corrections_exist(circles):
    x, y = circles
    logs = {}
    for name, options in {"v-cycles": {"levels": 3}, "one level": {"levels": 1},
                          "coarse to fine": {"levels": 2, "schedule": [2]}, "rmtr": {"levels": 2, "scheme": "rmtr"}}.items():
        model = network(8)
        options.setdefault("smoother", None if options.get("scheme") == "rmtr" else keras.optimizers.SGD(0.1))
        model.compile(optimizer=kml.MultilevelOptimizer(**options), loss="categorical_crossentropy")
        logs[name] = model.fit(x, y, batch_size=64, epochs=1, verbose=0).history
    assert logs["v-cycles"]["discarded_corrections"] == [0.0]
    for name in ("one level", "coarse to fine", "rmtr"):
        assert "discarded_corrections" not in logs[name], name


def test_an_optimizer_saved_without_the_discarded_count_loads_with_the_count_at_zero(circles):
    x, y = circles
    model = network(8)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2), loss="categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    optimizer = model.optimizer
    optimizer.discarded_corrections.assign(7.0)
    store = {}
    optimizer.save_own_variables(store)
    last = str(max(int(key) for key in store))
    assert float(store[last]) == 7.0  # the count is the last variable saved
    work_units = float(optimizer.work_units.numpy())
    del store[last]  # what a file saved before the count existed holds
    optimizer.work_units.assign(0.0)
    optimizer.load_own_variables(store)
    assert float(optimizer.discarded_corrections.numpy()) == 0.0
    assert float(optimizer.work_units.numpy()) == work_units > 0


@pytest.mark.parametrize("bound", [0, -1.0, float("nan"), float("inf"), "10", True])
def test_a_bad_correction_bound_is_refused(bound):
    with pytest.raises(ValueError, match="`correction_bound` \\(the largest correction relative to the weights\\)"):
        kml.MultilevelOptimizer(levels=2, correction_bound=bound)


@pytest.mark.slow
def test_the_acceptance_test_keeps_a_good_correction(circles):
    x, y = circles
    tested = network(8)
    plain = network(8)
    curves = [train(m, x, y, 10, levels=3, correction_test=flag) for m, flag in ((tested, True), (plain, False))]
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-5)  # every correction of the plain run descends


def test_the_acceptance_test_is_counted_in_the_work_units():
    costs = []
    for flag in (False, True):
        model = network(16)
        model.compile(optimizer=kml.MultilevelOptimizer(levels=3, correction_test=flag), loss="categorical_crossentropy")
        costs.append(model.optimizer.cycle_work_units)
    assert costs[1] - costs[0] == pytest.approx(2 * FORWARD_COST * (1.0 + 0.5))


# -- start-up ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_levels_of_a_depth_hierarchy_share_one_traced_loop(circles):
    """128, 64, 32 and 16 blocks: one traced Euler loop (and its gradient) for all four levels."""
    x, y = circles
    before = residual._traced_euler.cache_info().currsize
    model = network(128)
    train(model, x[:37], y[:37], 2, levels=4)
    assert residual._traced_euler.cache_info().currsize - before == 1
    # The shared trace computes what the eager cycle computes.
    eager = network(128)
    eager.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                  loss="categorical_crossentropy", run_eagerly=True)
    for _ in range(2):
        eager.train_on_batch(x[:37], y[:37])
    for got, expected in zip(model.trainable_variables, eager.trainable_variables):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_a_new_class_of_hooks_takes_over_the_schemes_it_applies_to():
    """Adding a scheme is one class: a subclass of CoarseCorrection defined anywhere runs the cycles of the
    schemes its ``applies`` accepts (here: it refuses every correction, which the count then shows)."""
    from keras_multilevel.optimizers.cycle import scheme_hooks
    from keras_multilevel.optimizers.mgopt import HOOKS, CoarseCorrection

    class Refusing(CoarseCorrection):
        @classmethod
        def applies(cls, scheme):
            return scheme.name == "mgopt" and scheme.correction_scale == 0.5

        def accept(self, index, correction, coupling):
            return tf.constant(False), 0.0

    try:
        x, y = kml.datasets.concentric_circles(32, seed=0)
        model = kml.models.residual_network((2,), outputs=2, width=3, blocks=8)
        optimizer = kml.MultilevelOptimizer(levels=3, correction_scale=0.5)
        assert scheme_hooks(optimizer.scheme) is Refusing
        assert scheme_hooks(kml.MultilevelOptimizer(levels=3).scheme) is CoarseCorrection
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
        assert history["discarded_corrections"] == [4.0]  # 2 cycles x 2 corrections each
    finally:
        HOOKS.remove(Refusing)
    assert scheme_hooks(optimizer.scheme) is CoarseCorrection
