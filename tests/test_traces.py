"""The compiled V-cycle's traces: shared by alike levels, equal to the plain evaluations, traced once per fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import cycle_loop, solver, traces
from keras_multilevel.optimizers.trust_region import _loss_and_gradient


def circles(samples=32):
    x, y = kml.datasets.concentric_circles(samples, seed=3)
    return x.astype("float32"), y.astype("float32")


def compiled(levels=3, blocks=64, model=None, **settings):
    if model is None:
        keras.utils.set_random_seed(0)
        model = kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks)
    settings.setdefault("smoother", keras.optimizers.SGD(0.1))
    model.compile(optimizer=kml.MultilevelOptimizer(levels=levels, **settings), loss="categorical_crossentropy")
    return model


@pytest.mark.slow
def test_one_shared_trace_evaluates_every_depth_level_exactly():
    """The function traced with K left open gives each level's own loss and gradient."""
    hierarchy = compiled(levels=3, blocks=64).optimizer.hierarchy
    x, y = circles()
    data = (x, y, None)

    @tf.function(autograph=False)
    def shared():
        return [call(data) for call in traces.level_functions(hierarchy, _loss_and_gradient)]

    assert traces.trace_groups(hierarchy) == [[0, 1, 2]]
    for level, (loss, y_pred, gradient) in zip(hierarchy, shared()):
        plain_loss, plain_y_pred, plain_gradient = _loss_and_gradient(level.model, None, data)
        np.testing.assert_allclose(loss.numpy(), plain_loss.numpy(), rtol=1e-6)
        np.testing.assert_allclose(y_pred.numpy(), plain_y_pred.numpy(), rtol=1e-6)
        for ours, theirs in zip(gradient, plain_gradient):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "blocks, model, groups",
    [
        (64, None, [[0, 1, 2]]),  # 64, 32, 16 blocks: the loops take 16 blocks an iteration on every level
        (32, None, [[0, 1], [2]]),  # 8 blocks: the coarsest loop takes 8 an iteration, a trace of its own
    ],
)
def test_depth_levels_share_a_trace_when_their_loops_agree(blocks, model, groups):
    assert traces.trace_groups(compiled(levels=3, blocks=blocks).optimizer.hierarchy) == groups


def test_levels_with_other_shapes_or_state_trace_their_own():
    keras.utils.set_random_seed(0)
    width = compiled(levels=3, model=kml.models.feedforward_network((2,), outputs=2, hidden=(16, 16)),
                     scheme="fas", coarsening="width")
    assert traces.trace_groups(width.optimizer.hierarchy) == [[0], [1], [2]]
    inputs = keras.Input((2,))
    hidden = kml.DenseResidualStack(32)(keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))
    normalized = compiled(levels=2, model=keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden)))
    assert traces.trace_groups(normalized.optimizer.hierarchy) == [[0], [1]]


@pytest.fixture
def cycle_traces(monkeypatch):
    """How often the V-cycle's Python runs (the loop's or the unrolled one's), i.e. how often it is traced
    in compiled training."""
    count = {"traces": 0, "loop": 0}

    def counting(original, loop):
        def counted(*args, **kwargs):
            count["traces"] += 1
            count["loop"] += loop
            return original(*args, **kwargs)

        return counted

    monkeypatch.setattr(solver, "v_cycle", counting(solver.v_cycle, False))
    monkeypatch.setattr(cycle_loop, "loop_cycle", counting(cycle_loop.loop_cycle, True))
    return count


@pytest.mark.slow
@pytest.mark.parametrize("loop", [True, False], ids=["loop (SGD)", "unrolled (RMSprop)"])
def test_the_cycle_is_traced_once_per_fit_and_never_again(cycle_traces, loop):
    x, y = circles(64)
    smoother = keras.optimizers.SGD(0.1) if loop else keras.optimizers.RMSprop(1e-3)
    model = compiled(levels=3, blocks=32, smoother=smoother)
    model.compile(optimizer=model.optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert cycle_traces["traces"] == 1
    model.evaluate(x, y, verbose=0)
    model.optimizer.learning_rate = 0.05
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    other = kml.models.residual_network((2,), outputs=2, width=3, blocks=32)  # no seed reset: it retraces all
    other.compile(optimizer="sgd", loss="categorical_crossentropy")
    other.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert cycle_traces["traces"] == 1
    assert cycle_traces["loop"] == loop
