"""``MultilevelOptimizer``: V-cycles behind ``model.compile`` / ``model.fit``.

Paper 000 Algorithm 3 (one V-cycle of Algorithm 1 per mini-batch) with any
Keras optimizer as the level optimizer ("smoother", Algorithm 2 when it is
plain SGD). ``model.fit`` runs one whole V-cycle per batch inside Keras'
compiled train function: see :mod:`keras_multilevel._keras_hooks` for how the
optimizer takes over ``train_step``.
"""

import threading
import weakref

import keras
import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import Hierarchy, check_levels, get_coarsening
from keras_multilevel.optimizers.cycle import v_cycle
from keras_multilevel.optimizers.objective import level_regularization
from keras_multilevel.optimizers.steps import CycleSteps, work_units


# Set while a hierarchy is being built: `keras.models.clone_model` re-compiles
# each coarse clone with a copy of this optimizer, which must not attach itself.
_building = threading.local()


def _clone_optimizer(optimizer):
    return optimizer.__class__.from_config(optimizer.get_config())


@keras.saving.register_keras_serializable(package="keras_multilevel")
class MultilevelOptimizer(keras.optimizers.Optimizer):
    """Trains a model by multilevel V-cycles over a hierarchy of coarser models.

    Pass it to ``model.compile``; ``model.fit`` then performs one V-cycle
    (000 Algorithm 1) per batch: ``steps`` smoothing steps on the way down,
    restriction of the weights ``Pi`` and of the gradient ``R``, the coupling
    term (000 eq 9), the coarsest steps, prolongated corrections ``P`` and
    smoothing on the way up. Metrics, validation, callbacks and ``History``
    work as usual; ``History.history["work_units"]`` records the cumulative
    cost in fine gradient evaluations (000 eq 10) at the end of each epoch.

    Args:
        levels: number of levels ``L >= 1``; ``1`` is plain training with
            ``smoother`` (with work units counted).
        smoother: the level optimizer, any Keras optimizer (or its name); each
            level gets its own copy and state. Paper 000 uses ``SGD(0.1)``.
        steps: level-optimizer steps per level, finest first, in the paper's
            notation (``"[(1),1,1,2,2,{2}]"``) or as a list; ``None`` is the
            set-up of 000 §4.1. See :class:`CycleSteps`.
        coupling: add the coupling term ``<delta g, theta>`` to the coarse
            objectives (MG/OPT, first-order coherent). ``False`` is MLSGD
            without gradient correction (001 §3), which did best in 001.
        coarsening: how coarser levels are built; ``"depth"`` halves every
            residual stack (000 §2.2.1).
        interpolation: ``"constant"`` (000) or ``"linear"`` (001 §4.2)
            prolongation in time.
        regularization: Tikhonov weight ``beta`` on the finest level, scaled
            by ``2^i`` on level ``i`` below it (000 §4); applied to all
            trainable weights, through the gradient (like Keras' weight decay
            it is not part of the reported loss).
        name: the optimizer's name.

    Example::

        model.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=10)
        print(model.optimizer.hierarchy)
    """

    def __init__(
        self,
        levels=2,
        smoother="sgd",
        steps=None,
        coupling=True,
        coarsening="depth",
        interpolation="constant",
        regularization=0.0,
        name="multilevel",
    ):
        levels = check_levels(levels)
        smoother = keras.optimizers.get(smoother)
        if isinstance(smoother, MultilevelOptimizer):
            raise ValueError("`smoother` must be a single-level Keras optimizer, not a MultilevelOptimizer.")
        if not isinstance(coupling, bool):
            raise ValueError(f"`coupling` must be True or False, got {coupling!r}.")
        if isinstance(regularization, bool) or not isinstance(regularization, (int, float)) or regularization < 0:
            raise ValueError(f"`regularization` must be a number >= 0, got {regularization!r}.")
        cycle_steps = CycleSteps.parse(steps, levels)
        strategy = get_coarsening(coarsening, interpolation)
        super().__init__(learning_rate=0.0, name=name)
        self.levels = levels
        self.smoother = smoother
        self.steps = cycle_steps
        self.coupling = coupling
        self.coarsening = strategy
        self.regularization = float(regularization)
        self.cycle_work_units = work_units(
            cycle_steps, [strategy.relative_cost(i) for i in range(levels)]
        )
        self.work_units = self.add_variable(
            shape=(), initializer="zeros", dtype="float64", name="work_units"
        )
        self.hierarchy = None
        # A weak reference: the model owns its optimizer, not the reverse (and
        # Keras' saving walks an optimizer's attributes).
        self._model_ref = lambda: None
        self._smoothers = []

    # -- the model this optimizer drives -----------------------------------

    def attach(self, model):
        """Binds the optimizer to ``model`` (done by ``model.compile``).

        Checks that ``model`` can be coarsened into ``levels`` levels and, if
        it is built, builds the hierarchy right away, so that
        ``model.optimizer.hierarchy`` can be inspected after ``compile``.
        """
        attached = self._model_ref()
        if getattr(_building, "active", False):
            return
        if attached is model:
            if self.hierarchy is not None:
                self._compile_levels()  # a re-compile may change the loss or metrics
            return
        if attached is not None:
            raise ValueError(
                f"This MultilevelOptimizer already drives model {attached.name!r}; "
                f"create a new one for model {model.name!r}."
            )
        if self.levels > 1:
            self.coarsening.check(model, self.levels)
        self._model_ref = weakref.ref(model)
        if model.built:
            self._build_hierarchy()

    def _build_hierarchy(self):
        _building.active = True
        try:
            self.hierarchy = Hierarchy.from_model(self._model_ref(), self.levels, coarsening=self.coarsening)
        finally:
            _building.active = False
        self._smoothers = [_clone_optimizer(self.smoother) for _ in self.hierarchy]
        for level, smoother in zip(self.hierarchy, self._smoothers):
            smoother.build(level.variables)
        self._compile_levels()

    def _compile_levels(self):
        """Compiles every coarse model with the fine model's loss and metrics and its level optimizer."""
        model = self._model_ref()
        compile_config = model.get_compile_config()
        compile_config.pop("optimizer", None)
        compile_config = keras.saving.deserialize_keras_object(compile_config)
        for level, smoother in zip(self.hierarchy[1:], self._smoothers[1:]):
            level.model.compile(optimizer=smoother, **compile_config)

    # -- one training step ---------------------------------------------------

    def train_step(self, model, data):
        """One V-cycle on one batch: what ``model.train_step(data)`` runs."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._model_ref() is not model or self.hierarchy is None:
            with tf.init_scope():
                if not model.built:  # a Sequential model without an Input
                    model.build(tf.nest.map_structure(lambda tensor: tensor.shape, x))
                self.attach(model)
                if self.hierarchy is None:
                    self._build_hierarchy()
        loss, y_pred = v_cycle(
            self.hierarchy,
            self._smoothers,
            self.steps,
            (x, y, sample_weight),
            [level_regularization(self.regularization, i) for i in range(self.levels)],
            coupling=self.coupling,
        )
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        # Keras' own train_step updates this private tracker the same way.
        model._loss_tracker.update_state(loss, sample_weight=batch_size)
        self._iterations.assign_add(1)
        self.work_units.assign_add(self.cycle_work_units)
        logs = dict(model.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
        logs["work_units"] = tf.identity(self.work_units.value)
        return logs

    def apply(self, grads, trainable_variables=None):
        raise RuntimeError(
            "MultilevelOptimizer runs whole V-cycles and cannot apply a single gradient. "
            "It drives models through Keras' standard train_step; a model whose class "
            f"overrides train_step ({type(self._model_ref()).__name__}) "
            "cannot be trained by it. Remove the custom train_step, or call "
            "`model.optimizer.train_step(model, data)` from it."
        )

    def apply_gradients(self, grads_and_vars):
        return self.apply(None)

    # -- learning rate, config -----------------------------------------------

    @property
    def learning_rate(self):
        """The level optimizers' learning rate; setting it sets every level's."""
        return (self._smoothers[0] if self._smoothers else self.smoother).learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        for optimizer in (self.smoother, *self._smoothers):
            optimizer.learning_rate = value

    def get_config(self):
        return {
            "name": self.name,
            "levels": self.levels,
            "smoother": keras.optimizers.serialize(self.smoother),
            "steps": str(self.steps),
            "coupling": self.coupling,
            "coarsening": self.coarsening.name,
            "interpolation": self.coarsening.interpolation.name,
            "regularization": self.regularization,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # A copy: Keras' deserialize edits the dict it is given.
        config["smoother"] = keras.optimizers.deserialize(dict(config["smoother"]), custom_objects=custom_objects)
        return cls(**config)
