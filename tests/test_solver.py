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
    assert float(history.history["work_units"][-1]) == pytest.approx(solver.work_units)  # a tensor before Keras 3.8
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


def test_a_model_has_one_solver_built_by_the_optimizer_it_is_compiled_with():
    """The optimizer is the configuration; compile builds the solver, whose levels own their state."""
    optimizer = kml.MultilevelOptimizer(**fresh(SETTINGS["mgopt"]))
    with pytest.raises(ValueError, match="no solver yet: compile a model with it"):
        optimizer.solver
    assert optimizer.hierarchy is None and optimizer.cycle_work_units is None
    model = network()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    solver = optimizer.solver
    assert kml.MultilevelSolver(model) is solver and solver.model is model and solver.optimizer is optimizer
    assert optimizer.hierarchy is solver.hierarchy and len(solver.hierarchy) == 3
    # Each level's own copy of the smoother, its learning rate divided by the level's divisor (1 here).
    level_optimizers = [level.smoother for level in solver.hierarchy]
    assert len({id(level) for level in level_optimizers}) == 3 and optimizer._smoothers == level_optimizers
    assert [float(level.learning_rate) for level in level_optimizers] == pytest.approx([0.1] * 3)
    assert optimizer.variables[len(optimizer._variables):] == [v for level in level_optimizers for v in level.variables]
    model.compile(optimizer=optimizer, loss="mse")  # compiling again keeps the solver and recompiles the levels
    assert optimizer.solver is solver and solver.hierarchy[1].model.loss == "mse"
    with pytest.raises(ValueError, match="already drives model"):
        network().compile(optimizer=optimizer, loss="mse")


def test_an_unbuilt_model_gets_its_levels_at_the_first_step():
    model = keras.Sequential([kml.layers.DenseResidualStack(blocks=8), keras.layers.Dense(2, activation="softmax")])
    solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=2, smoother=keras.optimizers.SGD(0.1))
    assert solver.hierarchy is None and "levels not built yet" in repr(solver)
    x, y = circles(BATCH)
    report = solver.step((np.concatenate([x, x[:, :1]], axis=1), y))  # three features: the stack's width
    assert [level.model.count_params() for level in solver.hierarchy] == [8 * 12 + 8, 4 * 12 + 8]
    assert float(report.work_units) == pytest.approx(solver.cycle_work_units) and solver.work_units == float(report.work_units)


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


# -- across processes -----------------------------------------------------------------

_WORKER_SCRIPT = """
import json, os, sys
index, ports, out, backups, die_after = sys.argv[1:]
index, die_after = int(index), int(die_after)
if index >= 0:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{port}" for port in ports.split(",")]},
                                          "task": {"type": "worker", "index": index}})
import numpy as np, tensorflow as tf, keras
import keras_multilevel as kml  # before the strategy: importing it must not start TensorFlow's runtime
strategy = tf.distribute.MultiWorkerMirroredStrategy() if index >= 0 else tf.distribute.get_strategy()
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 6)).astype("float32")
y = x[:, :3] ** 2
with strategy.scope():
    keras.utils.set_random_seed(1)
    model = kml.models.residual_network((6,), 3, width=8, blocks=4, output_activation=None)
    solver = kml.MultilevelSolver(model, loss="mse", levels=3, smoother=keras.optimizers.SGD(0.05, momentum=0.9))
data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(24))

@tf.function
def step(batch):
    report = strategy.run(solver.step, args=(batch,))
    return strategy.experimental_local_results(report.loss)[0]

# The chief's backup after each step: weights and optimizer state (save_weights holds both), then a pointer.
pointer = os.path.join(backups, "latest.json")
done = 0
if os.path.exists(pointer):
    done = json.load(open(pointer))["steps"]
    model.load_weights(os.path.join(backups, f"step{done}.weights.h5"))
losses = []
for number, batch in enumerate([batch for epoch in range(2) for batch in data], 1):
    if number <= done:
        continue
    losses.append(float(step(batch)))
    if index <= 0:
        model.save_weights(os.path.join(backups, "partial.weights.h5"))
        os.replace(os.path.join(backups, "partial.weights.h5"), os.path.join(backups, f"step{number}.weights.h5"))
        json.dump({"steps": number}, open(pointer + ".partial", "w"))
        os.replace(pointer + ".partial", pointer)
    if number == die_after:
        os._exit(3)
json.dump({"loss": losses, "work_units": solver.work_units, "iterations": int(model.optimizer.iterations.numpy()),
           "weights": [v.numpy().tolist() for v in model.trainable_variables]}, open(out, "w"))
"""


def _free_ports(count):
    import socket

    ports = []
    for _ in range(count):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            ports.append(str(probe.getsockname()[1]))
    return ",".join(ports)


def _worker(tmp_path, index, ports, name, die_after=-1):
    """One process of the script above: worker ``index`` (``-1``: one device, no strategy)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(_WORKER_SCRIPT)
    (tmp_path / name).mkdir(exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, str(script), str(index), ports, str(tmp_path / name / f"{index}.json"), str(tmp_path / name),
         str(die_after)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(processes, code=0):
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == code, stderr[-3000:]


def _assert_as_one_device(workers, alone):
    for worker in workers:
        assert worker["work_units"] == alone["work_units"] == 16.0
        assert worker["iterations"] == alone["iterations"] == 4
        for got, expected in zip(worker["weights"], alone["weights"]):
            np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-5)
    assert workers[0]["weights"] == workers[1]["weights"]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """Four steps (two epochs of two global batches of 24) on one device, without a strategy."""
    import json

    tmp_path = tmp_path_factory.mktemp("one_device")
    _finish([_worker(tmp_path, -1, "", "alone")])
    return json.loads((tmp_path / "alone" / "-1.json").read_text())


@pytest.mark.slow
def test_two_workers_of_a_multi_worker_mirrored_strategy_train_as_one_device(tmp_path, one_device):
    """Two processes on loopback, each one replica: a loop of ``strategy.run(solver.step)`` gives both workers
    the weights, losses and work units of one device on the same global batches."""
    import json

    ports = _free_ports(2)
    _finish([_worker(tmp_path, index, ports, "pair") for index in (0, 1)])
    pair = [json.loads((tmp_path / "pair" / f"{index}.json").read_text()) for index in (0, 1)]
    _assert_as_one_device(pair, one_device)
    for worker in pair:
        assert worker["loss"] == pytest.approx(one_device["loss"], rel=1e-5)


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_resumes_from_the_chiefs_backup_without_loss(tmp_path, one_device):
    """Worker 1 dies after the first step of the second epoch; the chief, blocked on it, is killed. Both
    restarted load the chief's backup (weights and every level's optimizer state) and end as one device."""
    import json
    import time

    ports = _free_ports(2)
    chief, victim = (_worker(tmp_path, index, ports, "run", die_after=3 if index == 1 else -1) for index in (0, 1))
    _finish([victim], code=3)
    pointer = tmp_path / "run" / "latest.json"
    deadline = time.monotonic() + 300
    while not (pointer.exists() and json.loads(pointer.read_text())["steps"] == 3):
        assert chief.poll() is None and time.monotonic() < deadline, "the chief never backed up step 3"
        time.sleep(0.2)
    chief.kill()
    chief.communicate()
    ports = _free_ports(2)
    _finish([_worker(tmp_path, index, ports, "run") for index in (0, 1)])
    resumed = [json.loads((tmp_path / "run" / f"{index}.json").read_text()) for index in (0, 1)]
    assert [len(worker["loss"]) for worker in resumed] == [1, 1]  # only step 4 was left
    _assert_as_one_device(resumed, one_device)
