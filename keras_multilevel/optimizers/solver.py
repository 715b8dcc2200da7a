"""``MultilevelSolver``: a model, its hierarchy of coarser models, and one V-cycle per :meth:`~MultilevelSolver.step`.

The core of the library. PyAMG's ``MultilevelSolver`` is a list of levels and
one cycle routine; this one is a Keras model, the hierarchy of coarser models
built from it (each :class:`~keras_multilevel.hierarchy.hierarchy.Level`
holding its model, transfer, level optimizer, inner product and Tikhonov
weights) and :meth:`MultilevelSolver.step`, one V-cycle on one batch
(Gaedke-Merzhäuser et al., 2021, Algorithm 3: one cycle of Algorithm 1 per
mini-batch). It runs in any training loop::

    solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=4,
                                  smoother=keras.optimizers.SGD(0.1))
    step = tf.function(solver.step)          # or call solver.step eagerly
    for x, y in dataset:
        report = step((x, y))                # loss, y_pred, data, work_units, stops, discarded_corrections
    print(solver)                            # the levels, PyAMG style

Its settings are a :class:`~keras_multilevel.optimizers.multilevel.MultilevelOptimizer`,
the serializable configuration that builds the solver when a model is
compiled with it. ``model.fit`` steps the same solver (the optimizer's
``train_step`` adds Keras' loss tracker and metrics), and the counters
(iterations, work units, discarded corrections, MLSGD's stops) and every
level optimizer's state are the optimizer's variables and children, so the
model saves, loads and trains on with ``fit`` as any model compiled with a
``MultilevelOptimizer``; ``fit`` and the solver can take turns.

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

import collections
import threading

import keras
import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import Hierarchy
from keras_multilevel.layers.residual import shared_depth_traces
from keras_multilevel.optimizers import cycle_loop, loss_scale
from keras_multilevel.optimizers.coarse_to_fine import coarse_to_fine_step
from keras_multilevel.optimizers.cycle import minibatch, split_batch, v_cycle
from keras_multilevel.optimizers.inner_product import inner_product_weights, tikhonov_weights
from keras_multilevel.optimizers.replicas import check_distributed, refuse_decisions
from keras_multilevel.optimizers.steps import work_units
from keras_multilevel.optimizers.trust_region import RecursiveTrustRegion


StepReport = collections.namedtuple("StepReport", ["loss", "y_pred", "data", "work_units", "stops", "discarded_corrections"])
StepReport.__doc__ = """What :meth:`MultilevelSolver.step` did on one batch.

``loss`` and ``y_pred``: the finest model's loss and prediction on the
minibatch in ``data`` (``(x, y, sample_weight)``, the cycle's first fine
minibatch), before the cycle moved the weights (the loss is NaN if the
cycle left any fine weight non-finite); ``work_units``: the step's
cost in fine gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10);
``stops``: MLSGD's early stops in this step by kind (``"recursion"``,
``"angle"``; Jacob, 2024, eqs 3.3-3.5), empty for the other schemes;
``discarded_corrections``: how many coarse corrections the cycle's safeguard
discarded (0 for one level, a coarse-to-fine schedule and RMTR).
"""

# Set while a hierarchy is being built: `keras.models.clone_model` re-compiles
# each coarse clone with a copy of the optimizer, which must not build a solver of its own.
_building = threading.local()


def building():
    """Whether a hierarchy is being built in this thread (its coarse clones are being compiled)."""
    return getattr(_building, "active", False)


class MultilevelSolver:
    """Runs multilevel V-cycles on ``model``, one batch per :meth:`step`.

    A model has one solver, built by the ``MultilevelOptimizer`` it is
    compiled with: ``MultilevelSolver(model, ...)`` compiles ``model`` when
    given a loss and returns that solver.

    Args:
        model: the finest model, a Keras model that the coarsening can
            coarsen (for depth: with a residual stack).
        loss: the loss to train; with settings, ``model`` is compiled with
            it and a new :class:`~keras_multilevel.optimizers.multilevel.MultilevelOptimizer`.
            Leave it and the settings out to step ``model`` with the
            ``MultilevelOptimizer`` it was compiled with.
        metrics: optional metrics, compiled with ``loss`` (``fit`` and
            ``evaluate`` report them; :meth:`step` does not compute them).
        **settings: the arguments of ``MultilevelOptimizer``
            (``levels``, ``smoother``, ``steps``, ``scheme``, ``coarsening``, ...).

    Attributes:
        model: the finest model.
        optimizer: the ``MultilevelOptimizer``: the settings, the counters
            and, as its children, the level optimizers (what ``.keras``
            saving stores).
        hierarchy: the levels, finest first (``None`` until the model is
            built: the first step builds an unbuilt one).
        trust_region: ``scheme="rmtr"``: each level's trust-region state; else ``None``.
        cycle_work_units: one step's work units when it takes no early stop.

    Raises:
        ValueError: ``model`` is not compiled with a ``MultilevelOptimizer``
            and no ``loss`` is given, or settings come without a loss.
    """

    def __new__(cls, model, loss=None, metrics=None, **settings):
        # The configuration builds solvers, so it is imported here rather than at the top (an import cycle).
        from keras_multilevel.optimizers.multilevel import MultilevelOptimizer

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
        return model.optimizer.solver

    @classmethod
    def for_model(cls, model, optimizer):
        """The solver of ``model`` with the settings and counters of ``optimizer`` (what ``model.compile`` builds).

        Builds the levels at once if ``model`` is built, so that the
        hierarchy can be inspected after ``compile``; else the first step does.
        """
        solver = super().__new__(cls)
        solver.model = model
        solver.optimizer = optimizer
        solver.hierarchy = None
        solver.trust_region = None
        solver.cycle_work_units = None
        if model.built:
            solver.build()
        return solver

    # -- the levels ------------------------------------------------------------

    def build(self, x=None):
        """Builds the levels the first time, outside any graph being traced; ``x``: a batch, to build an unbuilt model."""
        if self.hierarchy is not None:
            return
        with tf.init_scope():
            if not self.model.built:  # a Sequential model without an Input
                self.model.build(tf.nest.map_structure(lambda tensor: tensor.shape, x))
            self._build_levels()

    def _build_levels(self):
        """The hierarchy, and on each level its optimizer, inner product and Tikhonov weights."""
        settings = self.optimizer
        _building.active = True
        try:
            hierarchy = Hierarchy.from_model(self.model, settings.levels, coarsening=settings.coarsening)
        finally:
            _building.active = False
        for index, level in enumerate(hierarchy):
            level.smoother = loss_scale.wrap(settings.level_optimizer(index), settings.loss_scaling)
            level.smoother.build(level.variables)
            level.inner_product = inner_product_weights(level.model, settings.inner_product)
            level.regularization = tikhonov_weights(settings.regularization, level.inner_product, index, settings.inner_product)
        if settings.scheme.trust_region:
            self.trust_region = RecursiveTrustRegion(
                hierarchy, settings.trust_region,
                lambda shape, dtype, name: settings.add_variable(shape, initializer="zeros", dtype=dtype, name=name),
            )
        self.cycle_work_units = work_units(
            settings.steps,
            [level.relative_cost for level in hierarchy],
            layout=settings.layout,
            coupled=settings.scheme.tau_scale > 0,
            tested=settings.scheme.correction_test,
            restricted=settings.scheme.counts_stops,
            variance_reduction=settings.scheme.variance_reduction,
            trust_region=settings.scheme.trust_region,
        )
        self.hierarchy = hierarchy
        self.compile_levels()
        settings.built = True  # every level's state exists: Keras' summary counts it

    def compile_levels(self):
        """Compiles every coarse model with the fine model's loss and metrics and its level optimizer."""
        compile_config = self.model.get_compile_config()
        compile_config.pop("optimizer", None)
        compile_config = keras.saving.deserialize_keras_object(compile_config)
        for level in self.hierarchy[1:]:
            level.model.compile(optimizer=level.smoother, **compile_config)

    # -- one step --------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert
    def step(self, data):
        """One V-cycle (or coarse-to-fine step) on one batch ``data`` (``x``, ``(x, y)`` or ``(x, y, sample_weight)``).

        Eagerly, or inside a ``tf.function`` of one's own (``tf.function(solver.step)``
        traces the cycle once). The first call builds the levels of an
        unbuilt model.

        Not converted by AutoGraph: the cycle builds its graph with explicit
        ``tf.cond`` and ``tf.while_loop``, and converting its Python (a
        recursion over the levels) was two thirds of tracing an 8-level cycle.
        Inside a ``tf.function``, a V-cycle whose set-up allows it runs as one
        while loop over its events (:mod:`~keras_multilevel.optimizers.cycle_loop`:
        Keras SGD or Adam on every level, MG/OPT or FAS, depth with constant
        interpolation), whose graph does not grow with the levels; the others
        run the unrolled :func:`~keras_multilevel.optimizers.cycle.v_cycle`.

        Returns:
            A :class:`StepReport`: the loss and prediction on the cycle's
            first fine minibatch, that minibatch, the step's work units,
            MLSGD's stops and the discarded corrections.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self.build(x)
        settings = self.optimizer
        check_distributed(
            [*settings.variables, *(v for level in self.hierarchy for v in level.model.variables)],
            tf.distribute.get_strategy(),
        )
        if self.hierarchy.rematch_every:
            due = tf.logical_and(settings.iterations > 0, settings.iterations % self.hierarchy.rematch_every == 0)
            tf.cond(due, self.hierarchy.rematch, lambda: tf.constant(False))
        stops, discarded = {}, tf.constant(0.0, tf.float64)
        if settings.schedule:
            refuse_decisions("A coarse-to-fine `schedule`", "Train it on one device, or use V-cycles (no `schedule`).")
            loss, y_pred, index = coarse_to_fine_step(self.hierarchy, settings.schedule, settings.iterations, (x, y, sample_weight))
            costs = tf.constant([level.relative_cost for level in self.hierarchy], dtype="float64")
            work = tf.gather(costs, index)
        else:
            if settings.scheme.counts_stops:
                refuse_decisions(
                    "MLSGD's recursion test and angle condition",
                    "Train on one device, or use MLSGD without them: scheme='mgopt', tau_scale=0.",
                )
            batch, layout = (x, y, sample_weight), settings.layout
            with shared_depth_traces(enabled=not self.model.jit_compile):
                if cycle_loop.unsupported(self.hierarchy, settings.scheme, self.model.jit_compile) is None:
                    report = cycle_loop.loop_cycle(self.hierarchy, settings.steps, settings.scheme, batch, layout)
                    first = minibatch(batch, layout.count, layout.smoothing[0][0])
                else:
                    minibatches = split_batch(batch, layout.count)
                    report = v_cycle(self.hierarchy, settings.steps, settings.scheme, minibatches, layout,
                                     settings.full_batch, self.trust_region)
                    first = minibatches[layout.smoothing[0][0]]
            loss, y_pred, work = report.loss, report.y_pred, report.work_units
            for kind, count in settings.stop_counts.items():
                stops[kind] = getattr(report, f"{kind}_stops")
                count.assign_add(stops[kind])
            discarded = report.discarded_corrections
            if settings.discarded_corrections is not None:
                settings.discarded_corrections.assign_add(discarded)
            # Loss and prediction are the finest level's on its first minibatch, at the start of the cycle.
            x, y, sample_weight = first
        # The logged loss is of the cycle's first minibatch; a cycle that left non-finite fine weights
        # (a NaN in a later minibatch) must still show it, or TerminateOnNaN never sees it.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in self.model.trainable_variables])
        loss = tf.where(finite, loss, tf.constant(float("nan"), dtype=loss.dtype))
        settings.iterations.assign_add(1)
        settings.work_units.assign_add(work)
        return StepReport(loss, y_pred, (x, y, sample_weight), work, stops, discarded)

    # -- what it did -----------------------------------------------------------

    @property
    def work_units(self):
        """Work units of every step so far, in fine gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10)."""
        return float(self.optimizer.work_units.numpy())

    def cycle(self):
        """How a compiled step runs its V-cycle: one line (see :mod:`~keras_multilevel.optimizers.cycle_loop`)."""
        settings = self.optimizer
        if settings.schedule:
            return "coarse to fine: one level's step per batch (schedule)"
        if self.hierarchy is None:
            return "decided when the levels are built"
        reason = cycle_loop.unsupported_set_up(self.hierarchy, settings.scheme, self.model.jit_compile)
        if reason is None:
            return "one tf.while_loop over its events when traced (eagerly or on several replicas: unrolled)"
        return f"unrolled: {reason}"

    def __repr__(self):
        levels = str(self.hierarchy) if self.hierarchy is not None else "levels not built yet (the first step builds them)"
        return f"MultilevelSolver of model {self.model.name!r}: {self.optimizer!r}\nV-cycle: {self.cycle()}\n{levels}"
