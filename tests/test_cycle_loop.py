"""The V-cycle as one while loop: the same steps as the unrolled cycle, its work, and when it runs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import cycle_loop, traces
from keras_multilevel.optimizers.scheme import minibatch_layout
from keras_multilevel.optimizers.steps import CycleSteps, work_units


def circles(samples=64):
    x, y = kml.datasets.concentric_circles(samples, seed=3)
    return x.astype("float32"), y.astype("float32")


def solver_for(settings, blocks=16, seed=0):
    keras.utils.set_random_seed(seed)
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks)
    return kml.MultilevelSolver(model, loss="categorical_crossentropy", **settings)


def train(settings, unrolled, monkeypatch, cycles=3, blocks=16):
    """The weights, reports and level optimizers' state after ``cycles`` compiled steps, by either cycle."""
    solver = solver_for(settings, blocks)
    with monkeypatch.context() as patch:
        if unrolled:
            patch.setattr(cycle_loop, "unsupported", lambda *args, **kwargs: "unrolled for this test")
        else:
            ran = []
            patch.setattr(cycle_loop, "loop_cycle", lambda *args, real=cycle_loop.loop_cycle: ran.append(1) or real(*args))
        step = tf.function(solver.step)
        reports = [step(circles()) for _ in range(cycles)]
    if not unrolled:
        assert ran, "the loop did not run"
    slots = [[v.numpy() for v in level.smoother.variables] for level in solver.hierarchy]
    return solver, reports, slots


SETTINGS = {
    "MG/OPT, paper steps": dict(levels=3, smoother=keras.optimizers.SGD(0.1)),
    "momentum": dict(levels=3, smoother=keras.optimizers.SGD(0.1, momentum=0.9), steps="[(1),1,{2}]"),
    "Nesterov": dict(levels=3, smoother=keras.optimizers.SGD(0.05, momentum=0.5, nesterov=True)),
    "FAS, fresh minibatches, momentum transfer": dict(
        levels=3, scheme="fas", smoother=keras.optimizers.SGD(0.05, momentum=0.5)),
    "no pre-steps, gamma, alpha_p, Tikhonov": dict(
        levels=3, smoother=keras.optimizers.SGD(0.1), steps=[(0, 1), (0, 2), 2], tau_scale=0.5,
        correction_scale=0.5, regularization=1e-3),
    "every correction discarded": dict(levels=3, smoother=keras.optimizers.SGD(0.1), correction_bound=1e-6),
    "Adam": dict(levels=3, smoother=keras.optimizers.Adam(0.01), steps="[1,2,{2}]"),
    "FAS with Adam, its first moment transferred": dict(levels=3, scheme="fas", smoother=keras.optimizers.Adam(0.01)),
}


def fresh(settings):
    settings = dict(settings)
    settings["smoother"] = settings["smoother"].from_config(settings["smoother"].get_config())
    return settings


QUICK = ("MG/OPT, paper steps", "FAS with Adam, its first moment transferred")  # the rest: slow


@pytest.mark.parametrize(
    "name", [name if name in QUICK else pytest.param(name, marks=pytest.mark.slow) for name in sorted(SETTINGS)]
)
def test_the_loop_takes_the_unrolled_cycles_steps(name, monkeypatch):
    loop, loop_reports, loop_slots = train(fresh(SETTINGS[name]), False, monkeypatch)
    unrolled, unrolled_reports, unrolled_slots = train(fresh(SETTINGS[name]), True, monkeypatch)
    for level, other in zip(loop.hierarchy, unrolled.hierarchy):
        for ours, theirs in zip(level.variables, other.variables):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)
    for ours, theirs in zip(loop_slots, unrolled_slots):  # iterations and momenta of every level optimizer
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for ours, theirs in zip(loop_reports, unrolled_reports):
        np.testing.assert_allclose(ours.loss.numpy(), theirs.loss.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours.y_pred.numpy(), theirs.y_pred.numpy(), rtol=1e-6, atol=1e-7)
        assert float(ours.work_units) == pytest.approx(float(theirs.work_units))
        assert float(ours.discarded_corrections) == float(theirs.discarded_corrections)
    assert loop.optimizer.discarded_corrections.numpy() == unrolled.optimizer.discarded_corrections.numpy()
    if name == "every correction discarded":
        assert float(loop_reports[-1].discarded_corrections) == 2.0


@pytest.mark.parametrize("blocks, groups", [pytest.param(64, 1, marks=pytest.mark.slow), (32, 2)])
def test_levels_that_share_one_trace_and_levels_that_do_not_take_the_same_steps(blocks, groups, monkeypatch):
    # 64, 32, 16 blocks share one traced function; 32 and 16 share one and 8 has its own; 16, 8, 4 (the
    # other tests) trace one each
    settings = dict(levels=3, smoother=keras.optimizers.SGD(0.1))
    loop, _, _ = train(fresh(settings), False, monkeypatch, cycles=2, blocks=blocks)
    unrolled, _, _ = train(fresh(settings), True, monkeypatch, cycles=2, blocks=blocks)
    assert len(traces.trace_groups(loop.hierarchy)) == groups
    for ours, theirs in zip(loop.model.trainable_variables, unrolled.model.trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "steps, tau_batches, fresh_batches",
    [("[(1),1,1,2,2,{2}]", 1, False), ("[2,1,{3}]", 2, True), ([(0, 1), (0, 2), 2], 1, False),
     ([(0, 1), (2, 0), 1], 3, False), ("[1/3,{1}]", 2, True)],
)
def test_the_events_spend_the_work_units_of_the_cycle(steps, tau_batches, fresh_batches):
    levels = len(steps) if isinstance(steps, list) else steps.count(",") + 1
    parsed = CycleSteps.parse(steps, levels)
    layout = minibatch_layout(parsed, tau_batches, fresh_batches)
    costs = [2.0**-index for index in range(levels)]
    events = cycle_loop.cycle_events(parsed, layout)
    assert cycle_loop.event_work(events, costs) == pytest.approx(work_units(parsed, costs, layout=layout))
    # every level but the coarsest descends once and is corrected once, after everything below it
    for index in range(levels - 1):
        kinds = [(event.kind, event.level) for event in events]
        assert kinds.count((cycle_loop.DESCEND, index)) == kinds.count((cycle_loop.CORRECT, index)) == 1
        assert kinds.index((cycle_loop.CORRECT, index)) > max(
            position for position, (kind, level) in enumerate(kinds) if level > index)
    smoothing = [event for event in events if event.kind == cycle_loop.SMOOTH]
    assert len(smoothing) == sum(parsed.pre) + sum(parsed.post) + parsed.coarsest


def cycle_loop_reason(solver):
    """What :func:`cycle_loop.unsupported` says of ``solver``'s set-up inside a ``tf.function``."""
    reasons = []

    @tf.function
    def probe():
        reasons.append(cycle_loop.unsupported(solver.hierarchy, solver.optimizer.scheme, solver.model.jit_compile))
        return tf.constant(0)

    probe()
    return reasons[0]


@pytest.mark.parametrize(
    "settings, reason",
    [
        (dict(levels=3, smoother=keras.optimizers.SGD(0.1)), None),
        (dict(levels=3, smoother=keras.optimizers.Adam(1e-3)), None),
        (dict(levels=3, smoother=keras.optimizers.RMSprop(1e-3)), "Level 0's optimizer is RMSprop"),
        (dict(levels=3, smoother=keras.optimizers.Adam(1e-3, amsgrad=True)), "AMSGrad"),
        (dict(levels=3, smoother=keras.optimizers.SGD(0.1, clipnorm=1.0)), "sets clipnorm"),
        (dict(levels=3, smoother=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))),
         "learning-rate schedule"),
        (dict(levels=3, scheme="mlsgd", smoother=keras.optimizers.SGD(0.1)), "Scheme 'mlsgd'"),
        (dict(levels=3, correction_test=True, smoother=keras.optimizers.SGD(0.1)), "acceptance test"),
        (dict(levels=3, interpolation="linear", smoother=keras.optimizers.SGD(0.1)), "transfers differ"),
        (dict(levels=1, smoother=keras.optimizers.SGD(0.1)), "One level"),
    ],
)
def test_the_loop_runs_where_it_can_and_says_why_not_elsewhere(settings, reason):
    solver = solver_for(settings)
    found = cycle_loop_reason(solver)
    if reason is None:
        assert found is None
    else:
        assert reason in found
    assert "eagerly" in cycle_loop.unsupported(solver.hierarchy, solver.optimizer.scheme) or settings["levels"] == 1
    cycle = repr(solver).splitlines()[1]  # print(solver) says which cycle a compiled step runs, and why
    assert cycle.startswith("V-cycle: one tf.while_loop") if reason is None else reason in cycle


def test_a_level_with_batch_normalization_takes_the_unrolled_cycle():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs))
    hidden = kml.layers.DenseResidualStack(blocks=16)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=2, smoother=keras.optimizers.SGD(0.1))
    assert "non-trainable state" in cycle_loop_reason(solver)
