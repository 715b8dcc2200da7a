"""``MultilevelOptimizer``: the multilevel settings, as a Keras optimizer that ``model.compile`` takes.

It is configuration and Keras' view of the training state, not the
algorithm: it checks and holds the settings (``get_config`` /
``from_config``), the counters that ``History`` logs and ``.keras`` files
store (iterations, work units, discarded corrections, MLSGD's stops), and
builds, when a model is compiled with it, the
:class:`~keras_multilevel.optimizers.solver.MultilevelSolver` that holds the
levels and runs the V-cycles (Gaedke-Merzhäuser et al., 2021, Algorithm 3:
one V-cycle of Algorithm 1 per mini-batch, with any Keras optimizer as the
level optimizer, "smoother"). ``model.fit`` steps that solver once per batch
inside Keras' compiled train function (:meth:`MultilevelOptimizer.train_step`
adds Keras' loss tracker and metrics); :mod:`keras_multilevel._keras_hooks`
says how the optimizer takes over ``train_step``.
"""

import math

import keras
import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import check_levels, get_coarsening
from keras_multilevel.optimizers import loss_scale
from keras_multilevel.optimizers.coarse_to_fine import check_schedule
from keras_multilevel.optimizers.inner_product import check_inner_product
from keras_multilevel.optimizers.scheme import PRESET, CycleScheme, minibatch_layout
from keras_multilevel.optimizers.solver import MultilevelSolver, building
from keras_multilevel.optimizers.steps import CycleSteps
from keras_multilevel.optimizers.trust_region import TrustRegion


def _learning_rate_divisors(divisor, levels):
    """Per-level learning-rate divisors from ``eta`` (``eta^i``) or an explicit list (Ponce et al., 2022, §6.1.4).

    Every divisor must be finite and > 0: an infinite one would set a level's
    learning rate to 0 and a NaN one would make its loss NaN.
    """
    def positive(value):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0

    divisors = None
    if positive(divisor):
        try:
            divisors = [float(divisor) ** index for index in range(levels)]
        except OverflowError:  # eta**i beyond the largest float
            pass
    elif isinstance(divisor, (list, tuple)) and len(divisor) == levels and all(map(positive, divisor)):
        divisors = [float(value) for value in divisor]
    if divisors is None or not all(map(positive, divisors)):
        raise ValueError(
            f"`learning_rate_divisor` must be a finite number > 0 (level i divides the learning rate by "
            f"eta**i, which must be finite too) or a list of {levels} finite numbers > 0, one per level, got {divisor!r}."
        )
    return divisors


@keras.saving.register_keras_serializable(package="keras_multilevel")
class DividedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A coarse level's learning-rate schedule: the smoother's, divided by the level's divisor (Ponce et al., 2022, §6.1.4).

    Each level optimizer evaluates it at its own step count.
    """

    def __init__(self, schedule, divisor):
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule = schedule
        self.divisor = float(divisor)

    def __call__(self, step):
        return self.schedule(step) / self.divisor

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "divisor": self.divisor}


# Smoother options a V-cycle cannot honour: each level step must be one step of
# the level's own objective, and the fine weights are the cycle's result.
# Each entry: the option, whether a value of it is harmless, and why others are refused.
_UNSUPPORTED = (
    ("use_ema", lambda value: not value, "the averaged weights would never replace the cycle's fine weights"),
    ("gradient_accumulation_steps", lambda value: value in (None, 1),
     "a level step must move the weights, not accumulate gradients"),
    ("loss_scale_factor", lambda value: value in (None, 1.0), "the cycle computes its gradients from the unscaled loss"),
)


def _check_smoother_options(smoother):
    """Refuses smoother options the V-cycle would silently ignore (clipping and weight decay are honoured)."""
    for name, harmless, reason in _UNSUPPORTED:
        if not harmless(getattr(smoother, name, None)):
            raise ValueError(
                f"The smoother's `{name}` is not supported by MultilevelOptimizer: {reason}. "
                f"Create the smoother without `{name}`."
            )


_SMOOTHER_ARGUMENTS = (
    "learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
    "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps",
)


def _refuse_base_arguments(kwargs):
    """Keras' optimizer arguments belong to the smoother, which takes every step; anything else is unknown."""
    for key in kwargs:
        if key in _SMOOTHER_ARGUMENTS:
            raise ValueError(
                f"`{key}` is an argument of the level optimizer, which takes every step of the cycle: "
                f"pass it to the smoother, e.g. MultilevelOptimizer(smoother=keras.optimizers.SGD(..., {key}=...))."
            )
        raise TypeError(f"MultilevelOptimizer got an unexpected argument `{key}`.")


def _check_trust_region(scheme, smoother, trust_region, schedule, learning_rate_divisor):
    """RMTR's constants (:class:`TrustRegion`) for ``scheme="rmtr"``, ``None`` otherwise; refuses what RMTR has no use for."""
    if scheme != "rmtr":
        if trust_region is not None:
            raise ValueError(f"`trust_region` sets the constants of scheme='rmtr', not of scheme={scheme!r}: leave it out.")
        return None
    for value, what in ((smoother, "`smoother`"), (schedule, "a coarse-to-fine `schedule`")):
        if value is not None:
            raise ValueError(
                f"scheme='rmtr' takes L-SR1 trust-region steps on every level, so {what} would go unused: "
                "leave it out (set the trust region with `trust_region=kml.optimizers.TrustRegion(...)`)."
            )
    if learning_rate_divisor != 1.0:
        raise ValueError("scheme='rmtr' has no learning rate (its radii set the steps): leave `learning_rate_divisor` out.")
    return TrustRegion.create(trust_region)


def _smoother(smoother):
    """The level optimizer ``smoother`` names: a Keras optimizer, its name or its config (``None``: SGD)."""
    allowed = (
        "a single-level Keras optimizer (e.g. keras.optimizers.SGD(0.1)), the name of one ('sgd', 'adam', ...) "
        "or its config dict"
    )
    if isinstance(smoother, MultilevelOptimizer):
        raise ValueError(f"`smoother` must be {allowed}, not a MultilevelOptimizer.")
    try:
        optimizer = keras.optimizers.get("sgd" if smoother is None else smoother)
    except (ValueError, TypeError):
        optimizer = None
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"`smoother` must be {allowed}, got {smoother!r}.")
    return optimizer


def _has_schedule(optimizer):
    return isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


@keras.saving.register_keras_serializable(package="keras_multilevel")
class MultilevelOptimizer(keras.optimizers.Optimizer):
    """Trains a model by multilevel V-cycles over a hierarchy of coarser models.

    Pass it to ``model.compile``, which builds the model's
    :class:`~keras_multilevel.optimizers.solver.MultilevelSolver`
    (``optimizer.solver``); ``model.fit`` then performs one V-cycle per
    batch (:mod:`keras_multilevel.optimizers.cycle`): ``steps`` smoothing
    steps on the way down, restriction of the weights ``Pi``, the
    tau-correction built from ``R`` times the fine gradient, the coarsest
    steps, prolongated corrections ``P`` and smoothing on the way up.
    Metrics, validation, callbacks and ``History`` work as usual;
    ``History.history["work_units"]`` records the cumulative cost in fine
    gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10; Ponce et al., 2022, §8) at the end of each epoch, and
    ``History.history["discarded_corrections"]`` (V-cycles other than RMTR's)
    the cumulative count of coarse corrections the safeguard discarded (see
    ``correction_test`` and ``correction_bound``): a run whose every
    correction is discarded is one level's training at a multilevel price.

    Data-parallel training works the usual Keras way (model and optimizer
    created and compiled in a ``MirroredStrategy``'s scope): the cycle sums
    every gradient over the replicas (:mod:`~keras_multilevel.optimizers.replicas`).
    Across processes (``MultiWorkerMirroredStrategy``), where Keras 3's ``fit``
    itself fails, step a :class:`~keras_multilevel.optimizers.solver.MultilevelSolver`
    with ``strategy.run`` (see there).

    Three schemes, three coarsenings, and a coarse-to-fine schedule:

    * ``scheme="mgopt"`` with ``coarsening="depth"``: Gaedke-Merzhäuser et al. (2021) (MG/OPT over
      residual networks with half the blocks per level); ``tau_scale=0`` is
      Jacob's (2024) MLSGD without gradient correction.
    * ``scheme="fas"`` with ``coarsening="width"``: Ponce et al. (2022) (FAS over
      networks with about half the neurons or channels per level, matched by
      Heavy Edge Matching and re-matched every ``rematch_every`` cycles; pass
      ``kml.hierarchy.WidthCoarsening(...)`` to set its threshold, scaling
      and re-matching rate).
    * ``scheme="mlsgd"``: Jacob (2024, Algorithm 4) (MLSGD) with its safeguards:
      the recursion test, the angle condition with early termination, the
      step-size regularization and, with a correction, SVRG steps on the
      coarse levels. ``History.history`` adds ``mlsgd_recursion_stops`` and
      ``mlsgd_angle_stops``, the cumulative counts of descents the recursion
      test stopped and of coarse phases the angle condition ended.
    * ``coarsening="resolution"``: Haber et al. (2018, §3) (the same convolutional
      network on images of half the resolution; the coarse level trains on
      the 2x2-averaged batch), with either scheme.
    * ``coarsening="pyramid"``: a pyramid U-Net (``kml.models.unet(...,
      pyramid=True)``) without its finest grid on the 2x2-averaged batch
      (its stencils keep their physical scale); with a ``schedule`` the
      network grows a grid at each phase, starting exactly as the coarser
      prediction prolongated (:mod:`~keras_multilevel.hierarchy.pyramid`).
    * ``scheme="rmtr"``: Kopaničáková and Krause (2023) (the recursive multilevel trust region
      RMTR with L-SR1 models on every level; no smoother, no learning rate:
      see :mod:`~keras_multilevel.optimizers.trust_region`), with any
      coarsening; ``levels=1`` is a single-level L-SR1 trust-region method.
    * ``schedule=[n_{L-1}, ..., n_1]``: no V-cycles but Haber et al. (2018, Algorithm 1):
      ``n_{L-1}`` batches train the coarsest level, its weights are
      prolongated to the next level, which trains ``n_{L-2}`` batches, and
      so on; every later batch trains the finest level alone. While a coarse
      level trains, the logged loss is its own and the metrics compare its
      prediction, prolongated to the fine grid, with the fine targets; the
      model itself holds the trained level's weights prolongated to it, so
      validation, callbacks and ``predict`` see the network grown so far.

    Args:
        levels: number of levels ``L >= 1``; ``1`` is plain training with
            ``smoother`` (with work units counted).
        smoother: the level optimizer, any Keras optimizer (or its name); each
            level gets its own copy and state. Default ``"sgd"`` (Keras' ``SGD(0.01)``); none with
            ``scheme="rmtr"``. Gaedke-Merzhäuser et al. (2021) use ``SGD(0.1)``,
            Ponce et al. (2022) ``SGD(0.01, momentum=0.9)``. No one rate is the measured best
            across problems, so none is made the default: tune it as for one level (the
            repository's tables: full-batch circles best at 0.5-1 with 8 levels, the conv
            ResNet on the digits 0.1 for 4-8 levels, the zoo's U-Nets Adam 0.004). Its learning rate may be a
            ``LearningRateSchedule``: level ``i`` then follows it divided by
            its ``learning_rate_divisor``, at its own step count.
        steps: level-optimizer steps per level, finest first, in Gaedke-Merzhäuser et al.'s (2021)
            notation (``"[(1),1,1,2,2,{2}]"``, ``"[4,{4}]"``) or as a list;
            ``None`` is the set-up of Gaedke-Merzhäuser et al. (2021, §4.1). See :class:`CycleSteps`.
        scheme: ``"mgopt"``, ``"fas"``, ``"mlsgd"`` or ``"rmtr"``: the defaults
            of the constants below (see :class:`~keras_multilevel.optimizers.scheme.CycleScheme`):
            a constant left out takes the scheme's value (``None``, or
            ``"preset"`` for ``momentum_scale`` and ``angle_threshold``, where
            ``None`` switches the momentum transfer or the angle test off).
        coarsening: ``"depth"`` (Gaedke-Merzhäuser et al., 2021, §2.2.1), ``"width"`` (Ponce et al., 2022, §5),
            ``"resolution"`` (Haber et al., 2018, §3), ``"pyramid"``, or a coarsening object
            such as ``kml.hierarchy.WidthCoarsening(threshold=0.5)``.
        interpolation: depth coarsening only: ``"constant"`` (Gaedke-Merzhäuser et al., 2021) or
            ``"linear"`` (Jacob, 2024, §4.2) prolongation in time.
        regularization: Tikhonov weight ``beta``; applied through the
            gradient (like Keras' weight decay it is not in the reported loss).
            With ``inner_product="l2"`` the term is ``beta`` times the squared
            level norm (on a residual stack the time integral
            ``beta int ||theta(t)||^2 dt``, the same on every level); with
            ``"euclidean"`` it is ``beta ||theta||^2`` scaled by ``2^i`` on
            level ``i`` (Gaedke-Merzhäuser et al., 2021, §4).
        inner_product: ``"l2"`` (default): residual-stack weights are
            functions of time and every level steps with its gradient in
            ``L^2(0, T)`` (Jacob, 2024, §3.2), so training behaves the same for any
            number of blocks and the learning rate means the same on every
            level; ``"euclidean"``: Gaedke-Merzhäuser et al. (2021) literally (plain gradients, whose
            stack part shrinks like ``T / K``). See
            :mod:`~keras_multilevel.optimizers.inner_product`.
        tau_scale: ``gamma`` in ``[0, 1]``, the weight of the tau-correction
            (Ponce et al., 2022, §6.1.4; ``1`` is first-order coherent, ``0`` MLSGD).
            Default 1 (0 for ``"mlsgd"``); Ponce et al. (2022, §8.3) use 0.125 for stability.
        tau_batches: ``m``, the minibatches over which tau is averaged and
            on which the next coarser level trains (Ponce et al., 2022, eq 35). Default 1 for
            ``"mgopt"``, 2 for ``"fas"``.
        fresh_batches: each fine smoothing step and each restriction takes
            minibatches of its own (Ponce et al., 2022, §6.1.1; default for ``"fas"``), or the
            whole cycle works on the same ``m`` (``"mgopt"``). A cycle's
            minibatches are one Keras batch split in ``minibatches`` parts:
            use ``batch_size = minibatches x`` the paper's minibatch size.
        correction_scale: ``alpha_p`` in ``(0, 1]`` (Ponce et al., 2022, §6.1.4). Default 1.
        momentum_scale: ``alpha_m`` in ``[0, 1]``: restrict the smoother's
            momentum with the weights and correct it on the way up (Ponce et al., 2022, eq 36).
            Default 1 for ``"fas"``; ``None`` (``"mgopt"``, ``"mlsgd"``) keeps
            each level's optimizer state separate. Ponce et al. (2022, §8.3) use 0.2.
        correction_test: accept a coarse level's prolongated correction only
            if it does not raise the finer level's objective on the cycle's
            minibatch (MG/OPT's acceptance test; two loss evaluations per level
            and cycle, counted in the work units). Default ``False``. Either
            way a correction with a NaN or Inf is discarded.
        correction_bound: ``c > 0`` or ``None``: discard a prolongated
            correction longer than ``c`` times the weights it corrects,
            ``||P e|| > c max(||x||, 1)`` (Euclidean norms over the level's
            weights), which keeps a coarse level that diverged to large
            finite values from wrecking the fine weights, at no gradient
            evaluation. Default 3 (``None`` with ``scheme="rmtr"``, whose trust
            region bounds its steps), measured to discard nothing in healthy runs.
        gradient_correction: ``"none"`` (``tau_scale=0``), ``"stochastic"``
            (tau on the cycle's minibatches; ``"mgopt"``, ``"fas"``) or
            ``"deterministic"`` (tau with the full gradient over the data set
            given to :meth:`use_full_batch`, Jacob, 2024, §3.3.2; each gradient on it
            costs its rows per minibatch row in work units). Default
            ``"none"`` for ``"mlsgd"``.
        step_regularization: ``lambda >= 0``: coarse objectives get
            ``lambda/2 ||x_c - Pi x||_c^2`` (Jacob, 2024, eq 3.2). Default 0;
            Jacob (2024, §4.1.2) uses 5 with a gradient correction.
        recursion_ratio, recursion_tolerance: ``eta, epsilon >= 0`` of Jacob (2024,
            eqs 3.4-3.5): descend only if ``||P* grad H||_c >= eta ||grad H||``
            and ``>= epsilon``. Default 0.1 and 0 for ``"mlsgd"``, 0 and 0
            (always descend) otherwise.
        angle_threshold: ``mu`` in ``[-1, 1]`` or ``None`` (no test): a coarse
            step whose prolongated displacement makes ``cos < mu`` with the
            negative gradient of the level above is undone and ends that
            level's phase (Jacob, 2024, eq 3.3, Algorithm 5; the level optimizer's
            state, e.g. momentum, keeps the undone step). Default 0 for
            ``"mlsgd"``, ``None`` otherwise.
        variance_reduction: coarse steps take the SVRG direction
            ``g(x, xi) - g(Pi x, xi) + grad H_c(Pi x)`` (Jacob, 2024, §3.3.3), two
            gradients each. Needs a gradient correction. Default ``False``.
        learning_rate_divisor: ``eta``: level ``i`` uses the learning rate
            divided by ``eta^i`` (Ponce et al., 2022, §6.1.4), or one divisor per level, finest
            first (Ponce et al., 2022, §8.3: ``[1, eta, eta^2, eta^2, eta^2]`` with
            ``eta = 2 sqrt 2``). Default 1, the measured best: on the
            co-centric circles with 8 levels (``benchmarks/results/depth/safeguards_k512.md``:
            learning rates 0.1, 0.5 and 1, 3 seeds) divisor 1 reaches 99 % in
            10.4 work units (median) at its best rate, ``2 ** -0.5`` in 20.8
            at its own; ``2 ** -0.5`` wins only at rate 0.1, and at the
            higher rates its coarse levels diverge (the correction bound
            discards 3-20 corrections a run).
        schedule: ``None`` (a V-cycle per batch) or the coarse-to-fine
            schedule of Haber et al. (2018, Algorithm 1): batches on each coarse level,
            coarsest first (``levels - 1`` positive integers).
        trust_region: ``scheme="rmtr"`` only: its constants, a
            :class:`~keras_multilevel.optimizers.trust_region.TrustRegion` or
            a dict of them (initial and largest radius, L-SR1 memory, ratio
            thresholds, radius factors, recursion condition).
        name: the optimizer's name.

    Example::

        model.compile(optimizer=kml.MultilevelOptimizer(levels=3, scheme="fas", coarsening="width",
                                                        smoother=keras.optimizers.SGD(0.01, momentum=0.9)),
                      loss="mse")
        history = model.fit(x, y, batch_size=200 * model.optimizer.minibatches, epochs=10)
        print(model.optimizer.hierarchy)
    """

    def __init__(
        self,
        levels=2,
        smoother=None,
        steps=None,
        scheme="mgopt",
        coarsening="depth",
        interpolation="constant",
        regularization=0.0,
        tau_scale=None,
        tau_batches=None,
        fresh_batches=None,
        correction_scale=None,
        momentum_scale=PRESET,
        correction_test=None,
        correction_bound=PRESET,
        gradient_correction=None,
        step_regularization=None,
        recursion_ratio=None,
        recursion_tolerance=None,
        angle_threshold=PRESET,
        variance_reduction=None,
        learning_rate_divisor=1.0,
        schedule=None,
        inner_product="l2",
        trust_region=None,
        name="multilevel",
        **kwargs,
    ):
        _refuse_base_arguments(kwargs)
        levels = check_levels(levels)
        if schedule is not None:
            schedule = check_schedule(schedule, levels)
            if steps is not None:
                raise ValueError(
                    "`steps` sets the smoothing steps of a V-cycle; with a coarse-to-fine `schedule` "
                    "there is no V-cycle: leave `steps` out."
                )
        constants = _check_trust_region(scheme, smoother, trust_region, schedule, learning_rate_divisor)
        smoother = _smoother(smoother)
        _check_smoother_options(smoother)
        if (isinstance(regularization, bool) or not isinstance(regularization, (int, float))
                or not math.isfinite(regularization) or regularization < 0):
            raise ValueError(f"`regularization` must be a finite number >= 0, got {regularization!r}.")
        cycle_steps = CycleSteps.parse(steps, levels)
        cycle_scheme = CycleScheme.create(
            scheme,
            tau_scale=tau_scale,
            tau_batches=tau_batches,
            fresh_batches=fresh_batches,
            correction_scale=correction_scale,
            momentum_scale=momentum_scale,
            correction_test=correction_test,
            correction_bound=correction_bound,
            gradient_correction=gradient_correction,
            step_regularization=step_regularization,
            recursion_ratio=recursion_ratio,
            recursion_tolerance=recursion_tolerance,
            angle_threshold=angle_threshold,
            variance_reduction=variance_reduction,
        )
        strategy = get_coarsening(coarsening, interpolation)
        divisors = _learning_rate_divisors(learning_rate_divisor, levels)
        super().__init__(learning_rate=0.0, name=name)
        self.levels = levels
        self.smoother = smoother
        self.steps = cycle_steps
        self.scheme = cycle_scheme
        self.layout = minibatch_layout(
            cycle_steps, cycle_scheme.tau_batches, cycle_scheme.fresh_batches, cycle_scheme.full_gradient
        )
        self.coarsening = strategy
        self.regularization = float(regularization)
        self.inner_product = check_inner_product(inner_product)
        self.learning_rate_divisor = learning_rate_divisor
        self._divisors = divisors
        self.schedule = schedule
        self.trust_region = constants
        self.work_units = self.add_variable(
            shape=(), initializer="zeros", dtype="float64", name="work_units"
        )
        # Cumulative counts of MLSGD's early stops (Jacob, 2024, eqs 3.3-3.5), logged like the work units.
        self.stop_counts = {}
        if cycle_scheme.counts_stops and schedule is None:
            self.stop_counts = {
                kind: self.add_variable(shape=(), initializer="zeros", dtype="float64", name=f"mlsgd_{kind}_stops")
                for kind in ("recursion", "angle")
            }
        # Cumulative count of coarse corrections the safeguard discarded, logged like the work units.
        self.discarded_corrections = None
        if levels > 1 and schedule is None and not cycle_scheme.trust_region:
            self.discarded_corrections = self.add_variable(
                shape=(), initializer="zeros", dtype="float64", name="discarded_corrections"
            )
        self._full_batch = None
        self._loss_scaling = None  # a LossScaleOptimizer's settings, for mixed_float16 models
        self._solver = None  # built by `attach` (model.compile): the model, its levels and the cycle

    def take_loss_scaling(self, wrapper):
        """Takes over the loss scaling of the ``LossScaleOptimizer`` that wraps this optimizer.

        ``model.compile`` wraps the optimizer of a ``mixed_float16`` model in
        one; a V-cycle scales each level's loss instead, with a scale of its
        own (:mod:`~keras_multilevel.optimizers.loss_scale`). Called by
        ``compile`` before :meth:`attach`.
        """
        if self.scheme.trust_region:
            raise ValueError(
                "scheme='rmtr' cannot train a mixed_float16 model: its ratio tests compare loss values that "
                "float16 cannot resolve. Use the float32 (or float64) dtype policy."
            )
        if self.hierarchy is not None and self._loss_scaling is None:
            raise ValueError(
                "This MultilevelOptimizer has already built its levels without loss scaling; "
                "create a new one for a mixed_float16 model."
            )
        self._loss_scaling = loss_scale.settings_of(wrapper)

    @property
    def loss_scaling(self):
        """The settings of the ``LossScaleOptimizer`` taken over by :meth:`take_loss_scaling`, or ``None``."""
        return self._loss_scaling

    def level_optimizer(self, index):
        """A new copy of the smoother for level ``index``, with its own state and its learning rate divided by
        the level's divisor (Ponce et al., 2022, §6.1.4); a schedule is divided as a :class:`DividedSchedule`."""
        divisor = self._divisors[index]
        config = self.smoother.get_config()
        if divisor != 1.0:
            config["learning_rate"] = (
                DividedSchedule(self.smoother._learning_rate, divisor) if _has_schedule(self.smoother)
                else float(keras.ops.convert_to_numpy(self.smoother.learning_rate)) / divisor
            )
        return self.smoother.__class__.from_config(config)

    @property
    def minibatches(self):
        """Minibatches per V-cycle: each Keras batch is split into this many (Ponce et al., 2022, §6.1.1)."""
        return self.layout.count

    # -- the solver it builds ---------------------------------------------------

    @property
    def solver(self):
        """The :class:`~keras_multilevel.optimizers.solver.MultilevelSolver` this optimizer built for the model
        it is compiled with."""
        if self._solver is None:
            raise ValueError(
                "This MultilevelOptimizer has no solver yet: compile a model with it "
                "(`model.compile(optimizer=...)`), which builds one."
            )
        return self._solver

    @property
    def hierarchy(self):
        """The levels, finest first: the solver's (``None`` before a model is compiled with it and built)."""
        return self._solver.hierarchy if self._solver is not None else None

    @property
    def cycle_work_units(self):
        """One V-cycle's work units without early stops, once the levels are built (else ``None``)."""
        return self._solver.cycle_work_units if self._solver is not None else None

    @property
    def trust_region_levels(self):
        """``scheme="rmtr"``: each level's trust-region state (radius, L-SR1 memory), finest first; else empty."""
        trust_region = self._solver.trust_region if self._solver is not None else None
        return trust_region.levels if trust_region is not None else []

    @property
    def _smoothers(self):
        """The level optimizers, finest first. Keras' saving finds them here (their state is saved under this
        name, so ``.keras`` files of every release keep loading)."""
        return [level.smoother for level in self.hierarchy] if self.hierarchy is not None else []

    def drives(self, model):
        """Whether this optimizer is attached to ``model`` (by its ``compile``)."""
        return self._solver is not None and self._solver.model is model

    def attach(self, model):
        """Binds the optimizer to ``model`` (done by ``model.compile``): builds its solver.

        Checks that ``model`` can be coarsened into ``levels`` levels and, if
        it is built, builds the hierarchy right away, so that
        ``model.optimizer.hierarchy`` can be inspected after ``compile``.
        """
        if building():
            return
        if self._solver is not None:
            if self._solver.model is not model:
                raise ValueError(
                    f"This MultilevelOptimizer already drives model {self._solver.model.name!r}; "
                    f"create a new one for model {model.name!r}."
                )
            if self.hierarchy is not None:
                self._solver.compile_levels()  # a re-compile may change the loss or metrics
            return
        if self.levels > 1:
            self.coarsening.check(model, self.levels)
        self._solver = MultilevelSolver.for_model(model, self)

    def use_full_batch(self, x, y=None, sample_weight=None):
        """Holds the data set whose gradient is the "full gradient" of a deterministic correction (Jacob, 2024, §3.3.2).

        Every cycle then forms tau with the gradients of the whole set, fine
        and coarse, as one batch: give the training set if it is small, or a
        fixed sample of it. Data is not configuration: it is not in
        :meth:`get_config`; call this again after ``from_config``, and
        before ``fit`` (the cycle is traced with it).
        """
        if self.scheme.gradient_correction != "deterministic":
            raise ValueError(
                f"`use_full_batch` holds the data of the deterministic gradient correction, but this optimizer's "
                f"gradient_correction is {self.scheme.gradient_correction!r}: create it with "
                "gradient_correction='deterministic'."
            )
        def tensor(value, name):
            try:
                value = tf.convert_to_tensor(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"`{name}` of the full batch must be a numeric array, got {type(value).__name__}: {error}") from None
            if value.shape.rank == 0 or not (value.dtype.is_floating or value.dtype.is_integer):
                raise ValueError(
                    f"`{name}` of the full batch must be a numeric array with one row per example, "
                    f"got a {value.dtype.name} tensor of shape {value.shape}."
                )
            return value

        full = tuple(
            tf.nest.map_structure(lambda part, name=name: tensor(part, name), value) if value is not None else None
            for value, name in zip((x, y, sample_weight), ("x", "y", "sample_weight"))
        )
        rows = {int(part.shape[0]) for part in tf.nest.flatten(full) if part is not None}
        if len(rows) != 1 or 0 in rows:
            raise ValueError(f"The full batch's x, y and sample_weight must have the same number of rows > 0, got {sorted(rows)}.")
        self._full_batch = full

    @property
    def full_batch(self):
        """The ``(x, y, sample_weight)`` given to :meth:`use_full_batch`, or ``None``."""
        return self._full_batch

    # -- the Keras seam ----------------------------------------------------------

    def train_step(self, model, data):
        """What ``model.train_step(data)`` runs: the solver's :meth:`~keras_multilevel.optimizers.solver.MultilevelSolver.step`,
        then Keras' loss tracker and metrics."""
        if not self.drives(model):
            self.attach(model)  # a custom train_step of a model compiled otherwise (refused if it drives another)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._solver.build(x)
        if self._only_builds_metrics(model, x, y, sample_weight):
            return self._logs(model.get_metrics_result())
        report = self._solver.step(data)
        x, y, sample_weight = report.data
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        # Keras' own train_step updates this private tracker the same way.
        model._loss_tracker.update_state(report.loss, sample_weight=batch_size)
        return self._logs(model.compute_metrics(x, y, report.y_pred, sample_weight=sample_weight))

    def _logs(self, metrics):
        """What a train step returns: the model's metrics, the work units, the discarded corrections and
        MLSGD's stop counts."""
        logs = dict(metrics)
        logs["work_units"] = tf.identity(self.work_units.value)
        if self.discarded_corrections is not None:
            logs["discarded_corrections"] = tf.identity(self.discarded_corrections.value)
        for kind, count in self.stop_counts.items():
            logs[f"mlsgd_{kind}_stops"] = tf.identity(count.value)
        return logs

    @staticmethod
    def _only_builds_metrics(model, x, y, sample_weight):
        """Builds the model's compiled metrics if they are not, and says whether this trace is then thrown away.

        Without a distribution strategy Keras builds them in the first trace
        of its train function. A ``tf.function`` whose first trace creates
        variables traces again for every call and never runs that first
        graph (only the variables' initializers are lifted out of it): tracing
        the V-cycle there doubled its start-up cost. So the first trace
        builds the metrics and stops; the cycle is traced once, in the trace
        that runs. Metrics without variables create none: then the cycle
        is traced right away.
        """
        metrics = getattr(model, "_compile_metrics", None)
        if metrics is None or metrics.built or not tf.inside_function():
            return False
        model._symbolic_build(data_batch=(x, y, sample_weight))
        return bool(metrics.variables)

    def apply(self, grads, trainable_variables=None):
        model = self._solver.model if self._solver is not None else None
        if model is None:
            caller = "This one is not attached to a model yet (`model.compile(optimizer=...)` attaches it)"
        elif type(model).train_step is not keras.Model.train_step:
            caller = f"Model {model.name!r} ({type(model).__name__}) overrides train_step, which called it"
        else:
            caller = f"It was called directly, not by model {model.name!r}'s train_step (which runs V-cycles)"
        raise RuntimeError(
            f"MultilevelOptimizer runs whole V-cycles and cannot apply a single gradient. {caller}. "
            "Train with `model.fit`, step a `kml.MultilevelSolver(model)` from your own loop, or call "
            "`model.optimizer.train_step(model, data)` from a custom train_step."
        )

    def apply_gradients(self, grads_and_vars):
        return self.apply(None)

    @property
    def variables(self):
        """This optimizer's own variables (iterations, work units, counts), then every level optimizer's
        state, finest level first: what ``model.summary()`` counts as optimizer parameters."""
        return [*self._variables, *(variable for smoother in self._smoothers for variable in smoother.variables)]

    # -- learning rate, config -----------------------------------------------

    @property
    def learning_rate(self):
        """The level optimizers' learning rate; setting it sets every level's."""
        return (self._smoothers[0] if self._smoothers else self.smoother).learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        """Sets the finest level's learning rate; level ``i`` gets it divided by its divisor."""
        self.smoother.learning_rate = value
        for optimizer, divisor in zip(self._smoothers, self._divisors):
            optimizer.learning_rate = value if divisor == 1.0 else value / divisor

    def __repr__(self):
        settings = [f"levels={self.levels}", f"scheme={self.scheme.name!r}", f"coarsening={self.coarsening.name!r}"]
        settings.append(f"schedule={list(self.schedule)}" if self.schedule else f"steps={str(self.steps)!r}")
        if not self.scheme.trust_region:
            rate = self.smoother._learning_rate
            rate = type(rate).__name__ if _has_schedule(self.smoother) else f"{float(keras.ops.convert_to_numpy(rate)):g}"
            settings.append(f"smoother={type(self.smoother).__name__}(learning_rate={rate})")
        settings.append(f"model={self._solver.model.name!r}" if self._solver is not None else "model=None")
        return f"MultilevelOptimizer({', '.join(settings)})"

    # -- saving ----------------------------------------------------------------

    def _transfer_state(self):
        """The variables that define the transfers (a width hierarchy's matching), finest first."""
        if self.hierarchy is None:
            return []
        return [v for level in self.hierarchy[:-1] for v in level.transfer.state_variables]

    def save_own_variables(self, store):
        """Saves the optimizer's own variables and the transfers' state (the current matching).

        The level optimizers' state, which :attr:`variables` also lists, is
        saved by each level optimizer itself (Keras saves them as this
        optimizer's children).
        """
        for index, variable in enumerate(self._variables):
            store[str(index)] = variable.numpy()
        for index, variable in enumerate(self._transfer_state()):
            store[f"transfer_{index}"] = variable.numpy()

    def load_own_variables(self, store):
        """Restores what :meth:`save_own_variables` saved."""
        keys = list(store.keys())
        own = [key for key in keys if not key.startswith("transfer_")]
        if self.discarded_corrections is not None and len(own) == len(self._variables) - 1:
            # Saved before the count of discarded corrections existed (its last variable): the count starts at 0.
            self.discarded_corrections.assign(0.0)
        elif len(own) != len(self._variables):
            raise ValueError(
                f"The saved MultilevelOptimizer has {len(own)} variables, this one has {len(self._variables)} "
                f"({', '.join(v.name for v in self._variables)}): the file was saved with other settings "
                "(levels, scheme, schedule). Load it with the optimizer it was saved with."
            )
        for index in range(len(own)):
            self._variables[index].assign(store[str(index)])
        state = self._transfer_state()
        saved = [key for key in keys if key.startswith("transfer_")]
        if len(saved) != len(state):
            raise ValueError(
                f"The saved optimizer has {len(saved)} transfer variables, this hierarchy has "
                f"{len(state)}: the file was saved from a different hierarchy."
            )
        for index, variable in enumerate(state):
            variable.assign(store[f"transfer_{index}"])

    def get_config(self):
        return {
            "name": self.name,
            "levels": self.levels,
            "smoother": None if self.scheme.trust_region else keras.optimizers.serialize(self.smoother),
            "steps": str(self.steps),
            "scheme": self.scheme.name,
            "coarsening": {"name": self.coarsening.name, **self.coarsening.get_config()},
            "regularization": self.regularization,
            "tau_scale": self.scheme.tau_scale,
            "tau_batches": self.scheme.tau_batches,
            "fresh_batches": self.scheme.fresh_batches,
            "correction_scale": self.scheme.correction_scale,
            "momentum_scale": self.scheme.momentum_scale,
            "correction_test": self.scheme.correction_test,
            "correction_bound": self.scheme.correction_bound,
            "gradient_correction": self.scheme.gradient_correction,
            "step_regularization": self.scheme.step_regularization,
            "recursion_ratio": self.scheme.recursion_ratio,
            "recursion_tolerance": self.scheme.recursion_tolerance,
            "angle_threshold": self.scheme.angle_threshold,
            "variance_reduction": self.scheme.variance_reduction,
            "learning_rate_divisor": self.learning_rate_divisor,
            "schedule": list(self.schedule) if self.schedule else None,
            "inner_product": self.inner_product,
            "trust_region": self.trust_region.get_config() if self.trust_region else None,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # A copy: Keras' deserialize edits the dict it is given.
        if isinstance(config.get("smoother"), dict):
            config["smoother"] = keras.optimizers.deserialize(dict(config["smoother"]), custom_objects=custom_objects)
        if config.get("schedule"):
            config["steps"] = None  # a schedule has no V-cycle steps
        return cls(**config)
