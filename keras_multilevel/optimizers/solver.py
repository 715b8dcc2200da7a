"""``MultilevelSolver``: a model and its hierarchy, stepped one V-cycle at a time from any training loop.

PyAMG's ``MultilevelSolver`` is a list of levels and one cycle routine; this
one is a Keras model, the hierarchy of coarser models built from it, and
:meth:`MultilevelSolver.step`, one V-cycle on one batch (Gaedke-Merzhäuser et al., 2021, Algorithm 3: one
cycle of Algorithm 1 per mini-batch). ``model.fit`` with a
:class:`~keras_multilevel.optimizers.multilevel.MultilevelOptimizer` runs the
same step; the solver is for a loop of one's own::

    solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=4,
                                  smoother=keras.optimizers.SGD(0.1))
    step = tf.function(solver.step)          # or call solver.step eagerly
    for x, y in dataset:
        report = step((x, y))                # loss, y_pred, data, work_units, stops
    print(solver)                            # the levels, PyAMG style

The levels' state (each level optimizer's, the work-unit count) lives in the
model's optimizer, so the model saves, loads and trains on with ``fit`` as
any model compiled with a ``MultilevelOptimizer``.

Across processes: with ``tf.distribute.MultiWorkerMirroredStrategy`` (one
replica per worker), build the model and the solver in ``strategy.scope()``
and step ``strategy.run(solver.step, args=(batch,))`` over
``strategy.experimental_distribute_dataset(dataset)`` inside a
``tf.function``; every worker then holds the weights that one device would
have on the same global batches, and ``report.loss`` is the whole batch's
loss on every replica. This loop, not ``model.fit``, is the way: Keras 3's
``fit`` fails under that strategy for any model, before it reaches a train
step (keras-team/keras issue 20585). Create the strategy before any
TensorFlow operation runs (importing ``keras_multilevel`` runs none).
"""

import keras

from keras_multilevel.optimizers.multilevel import MultilevelOptimizer


class MultilevelSolver:
    """Runs multilevel V-cycles on ``model``, one batch per :meth:`step`.

    Args:
        model: the finest model, a Keras model that the coarsening can
            coarsen (for depth: with a residual stack).
        loss: the loss to train; with settings, ``model`` is compiled with
            it and a new :class:`MultilevelOptimizer`. Leave it and the
            settings out to use the ``MultilevelOptimizer`` ``model`` was
            compiled with.
        metrics: optional metrics, compiled with ``loss`` (``fit`` and
            ``evaluate`` report them; :meth:`step` does not compute them).
        **settings: the arguments of :class:`MultilevelOptimizer`
            (``levels``, ``smoother``, ``steps``, ``scheme``, ``coarsening``, ...).

    Raises:
        ValueError: ``model`` is not compiled with a ``MultilevelOptimizer``
            and no ``loss`` is given, or settings come without a loss.
    """

    def __init__(self, model, loss=None, metrics=None, **settings):
        if not isinstance(model, keras.Model):
            raise ValueError(f"`model` must be a Keras model, got {type(model).__name__}.")
        if loss is None:
            if settings or metrics is not None:
                raise ValueError(
                    "MultilevelSolver compiles `model` with a new MultilevelOptimizer when given settings or "
                    "metrics, and needs the `loss` to train: pass loss=... (e.g. loss='mse')."
                )
            if not isinstance(getattr(model, "optimizer", None), MultilevelOptimizer):
                raise ValueError(
                    f"Model {model.name!r} is not compiled with a MultilevelOptimizer: pass the loss and the "
                    "multilevel settings, e.g. MultilevelSolver(model, loss='mse', levels=3), or compile it with "
                    "optimizer=kml.MultilevelOptimizer(...) first."
                )
        else:
            model.compile(optimizer=MultilevelOptimizer(**settings), loss=loss, metrics=metrics)
        self.model = model
        self.optimizer = model.optimizer

    def step(self, data):
        """One V-cycle on one batch ``data`` (``x``, ``(x, y)`` or ``(x, y, sample_weight)``).

        Eagerly, or inside a ``tf.function`` of one's own (``tf.function(solver.step)``
        traces the cycle once). The first call builds the hierarchy.

        Returns:
            A :class:`~keras_multilevel.optimizers.multilevel.StepReport`:
            the loss and prediction on the cycle's first fine minibatch,
            that minibatch, the step's work units and MLSGD's stops.
        """
        return self.optimizer.step(self.model, data)

    @property
    def hierarchy(self):
        """The levels, finest first (``None`` until the model is built and the optimizer attached)."""
        return self.optimizer.hierarchy

    @property
    def work_units(self):
        """Work units of every step so far, in fine gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10)."""
        return float(self.optimizer.work_units.numpy())

    def __repr__(self):
        levels = str(self.hierarchy) if self.hierarchy is not None else "levels not built yet (the first step builds them)"
        return f"MultilevelSolver of model {self.model.name!r}: {self.optimizer!r}\n{levels}"
