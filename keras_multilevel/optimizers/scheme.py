"""The cycle's scheme: how a coarse level is coupled to the finer one and corrects it.

One V-cycle routine (:func:`~keras_multilevel.optimizers.cycle.v_cycle`)
serves the schemes of the papers, through their hooks: MG/OPT and FAS
(:class:`~keras_multilevel.optimizers.mgopt.CoarseCorrection`), MLSGD
(:class:`~keras_multilevel.optimizers.mlsgd.MLSGD`) and RMTR
(:class:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion`).
What they do is set by these constants (a :class:`CycleScheme`):

* ``tau_scale`` ``gamma``: the coarse objective is
  ``g_c(x_c) - gamma x_c^T tau`` with the tau-correction
  ``tau = grad g_c(Pi x) - R grad g(x)`` (Ponce et al., 2022, eq 3 and §6.1.4). With
  ``gamma = 1`` the coarse gradient at ``Pi x`` equals ``R grad g(x)``: first
  order coherence, which is MG/OPT's coupling term of Gaedke-Merzhäuser et al. (2021, eq 9)
  (``delta g = -tau``). ``gamma = 0`` drops it: MLSGD without gradient
  correction (Jacob, 2024, §3).
* ``tau_batches`` ``m``: tau is averaged over ``m`` minibatches, and the coarse
  level trains on the same ``m`` minibatches (Ponce et al., 2022, eq 35, §6.1.1).
* ``fresh_batches``: whether every smoothing step of the finest level and
  every restriction draws minibatches of its own (Ponce et al., 2022, §6.1.1: "we draw the
  next m minibatches ... a new set of m minibatches are drawn when
  restricting to the next-coarser level"), or the whole cycle works on the
  same ``m`` minibatches (Gaedke-Merzhäuser et al. (2021, Algorithm 3) with ``m = 1``). Either way the
  minibatches of one cycle come from one Keras batch, split by
  :func:`minibatch_layout`: ``batch_size`` is the paper's minibatch size
  times ``MultilevelOptimizer.minibatches``.
* ``correction_scale`` ``alpha_p``: ``x <- x + alpha_p P (x_c - Pi x)`` (Ponce et al., 2022, eq 4, §6.1.4).
* ``momentum_scale`` ``alpha_m``: the level optimizer's momentum is restricted
  with the weights (``m_c = Pi m``) and corrected on the way up,
  ``m <- m + alpha_m P (m_c - Pi m)`` (Ponce et al., 2022, eq 36, §6.1.2). ``None`` lets every
  level keep its own optimizer state from cycle to cycle, as in Gaedke-Merzhäuser et al. (2021).
* ``correction_test``: accept a prolongated correction only if it does not
  raise the level's objective (the cycle's safeguard; a correction that is not
  finite is always discarded).
* ``correction_bound`` ``c``: discard a prolongated correction longer than
  ``c`` times the weights it corrects, ``||P e|| > c max(||x||, 1)``
  (:data:`CORRECTION_BOUND` by default; ``None`` bounds nothing).

The safeguards and variants of MLSGD (Jacob, 2024, §3.2-3.3, Algorithms 4-5; the
functions are in :mod:`~keras_multilevel.optimizers.mlsgd`):

* ``gradient_correction``: ``"none"`` (``gamma = 0``), ``"stochastic"``
  (tau formed on the cycle's minibatches, what MG/OPT and FAS do, Jacob, 2024, §3.3.4)
  or ``"deterministic"`` (tau formed with the full gradient over the data set
  the optimizer holds, Jacob, 2024, §3.3.2: see ``MultilevelOptimizer.use_full_batch``).
* ``step_regularization`` ``lambda``: the coarse objective gets
  ``lambda/2 ||x_c - Pi x||_c^2`` (Jacob, 2024, eq 3.2), which keeps coarse steps short.
* ``recursion_ratio`` ``eta`` and ``recursion_tolerance`` ``epsilon``: descend
  to the coarser level only if ``||P* grad H||_c >= eta ||grad H||`` (Jacob, 2024, eq 3.4)
  and ``>= epsilon`` (eq 3.5); ``0`` and ``0`` always descend.
* ``angle_threshold`` ``mu``: ``None``, or end a coarse level's phase at its
  first step whose prolongated displacement makes
  ``cos < mu`` with the negative gradient of the level above (Jacob, 2024, eq 3.3,
  Algorithm 5); the step is undone.
* ``variance_reduction``: coarse steps take the SVRG direction of Jacob (2024, §3.3.3)
  (Johnson & Zhang 2013) with the level's start point as the snapshot.

Presets: ``"mgopt"`` (Gaedke-Merzhäuser et al., 2021, Algorithm 1: gamma 1, m 1, one batch for the whole
cycle, alpha_p 1, no momentum transfer), ``"fas"`` (Ponce et al., 2022, Algorithm 2:
gamma 1, m 2, fresh minibatches, alpha_p 1, alpha_m 1), both with a stochastic
correction and none of MLSGD's safeguards, and ``"mlsgd"`` (Jacob, 2024, Algorithm 4:
no gradient correction, the variant Jacob (2024, §4.2.3) found best, which also makes
``lambda = 0`` its default (Jacob (2024, §4.1.2) uses ``lambda = 5`` only with a
correction); m 1, one batch for the whole cycle, no momentum transfer;
``eta = 0.1``, ``epsilon = 0`` and ``mu = 0``, that is a coarse step must be a
descent direction for the level above; Jacob (2024) gives no values for these three),
and ``"rmtr"`` (Kopaničáková and Krause, 2023: the recursive trust region of :mod:`~keras_multilevel.optimizers.trust_region`,
whose level steps are L-SR1 trust-region steps and whose corrections pass a
ratio test; its constants are fixed: gamma 1 (the first-order coherent coarse
model), one minibatch for the whole cycle (every ratio test compares values of
one objective), alpha_p 1 and no momentum).
The stability settings of Ponce et al. (2022, §8.3) are ``tau_scale=0.125``,
``momentum_scale=0.2`` with ``learning_rate_divisor`` ``2 sqrt 2`` (an
optimizer argument).
"""

import dataclasses

import numpy as np

GRADIENT_CORRECTIONS = ("none", "stochastic", "deterministic")

CORRECTION_BOUND = 3.0
"""The default ``correction_bound`` of the V-cycle schemes (RMTR's trust region bounds its steps itself).

Measured on the circles (benchmarks/results/depth/safeguards_k512.md: 8
levels, learning rates 0.1-1.0, divisors 1 and 1/sqrt 2, 3 seeds): 3 never
discarded a correction where the runs were healthy (divisor 1), and it let
every run with the divisor 1/sqrt 2 reach the target, which 10 did not; the
acceptance test did too, at a quarter more work per cycle."""

_STOCHASTIC_ONLY = {"gradient_correction": "stochastic", "step_regularization": 0.0, "recursion_ratio": 0.0,
                    "recursion_tolerance": 0.0, "angle_threshold": None, "variance_reduction": False}

PRESETS = {
    "mgopt": {"tau_scale": 1.0, "tau_batches": 1, "fresh_batches": False, "correction_scale": 1.0,
              "momentum_scale": None, "correction_test": False, "correction_bound": CORRECTION_BOUND, **_STOCHASTIC_ONLY},
    "fas": {"tau_scale": 1.0, "tau_batches": 2, "fresh_batches": True, "correction_scale": 1.0,
            "momentum_scale": 1.0, "correction_test": False, "correction_bound": CORRECTION_BOUND, **_STOCHASTIC_ONLY},
    "mlsgd": {"tau_scale": 0.0, "tau_batches": 1, "fresh_batches": False, "correction_scale": 1.0,
              "momentum_scale": None, "correction_test": False, "correction_bound": CORRECTION_BOUND,
              "gradient_correction": "none",
              "step_regularization": 0.0, "recursion_ratio": 0.1, "recursion_tolerance": 0.0,
              "angle_threshold": 0.0, "variance_reduction": False},
    "rmtr": {"tau_scale": 1.0, "tau_batches": 1, "fresh_batches": False, "correction_scale": 1.0,
             "momentum_scale": None, "correction_test": False, "correction_bound": None, **_STOCHASTIC_ONLY},
}


PRESET = "preset"
"""An override that keeps the preset's value (the default of the constants ``None`` switches off)."""

_SWITCHED_OFF_BY_NONE = ("momentum_scale", "angle_threshold", "correction_bound")


def _keeps_preset(key, value):
    """Whether an override leaves the preset's value: :data:`PRESET`, or ``None`` where ``None`` is no value."""
    if isinstance(value, str) and value == PRESET:
        return True
    return value is None and key not in _SWITCHED_OFF_BY_NONE


@dataclasses.dataclass(frozen=True)
class CycleScheme:
    """The constants of a V-cycle's coarse-level coupling and correction (see the module docstring)."""

    name: str
    tau_scale: float
    tau_batches: int
    fresh_batches: bool
    correction_scale: float
    momentum_scale: float | None
    correction_test: bool
    correction_bound: float | None
    gradient_correction: str
    step_regularization: float
    recursion_ratio: float
    recursion_tolerance: float
    angle_threshold: float | None
    variance_reduction: bool

    @classmethod
    def create(cls, name="mgopt", **overrides):
        """The preset ``name`` with the constants given in ``overrides`` replaced.

        :data:`PRESET` keeps the preset's value, and so does ``None`` except
        for ``momentum_scale`` and ``angle_threshold``, where ``None`` is a
        value: no momentum transfer, no angle test.

        Raises ``ValueError`` for an unknown preset or a constant out of range:
        ``tau_scale`` in ``[0, 1]``, ``tau_batches`` an integer ``>= 1``,
        ``fresh_batches`` and ``correction_test`` bools,
        ``correction_scale`` in ``(0, 1]``, ``momentum_scale`` in ``[0, 1]``,
        ``gradient_correction`` one of :data:`GRADIENT_CORRECTIONS` and
        consistent with ``tau_scale`` (``"none"`` exactly when it is 0; a
        correction given without ``tau_scale`` takes ``tau_scale = 1``),
        ``step_regularization``, ``recursion_ratio`` and
        ``recursion_tolerance`` numbers ``>= 0``, ``angle_threshold`` in
        ``[-1, 1]``, ``variance_reduction`` a bool that needs a correction.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown scheme {name!r}: choose one of {sorted(PRESETS)}.")
        given = {key: value for key, value in overrides.items() if not _keeps_preset(key, value)}
        values = {**PRESETS[name], **given}
        for key, meaning in (("step_regularization", "lambda of Jacob, 2024, eq 3.2"), ("recursion_ratio", "eta of Jacob, 2024, eq 3.4"),
                             ("recursion_tolerance", "epsilon of Jacob, 2024, eq 3.5")):
            _check_number(key, values[key], 0.0, float("inf"), meaning)
            values[key] = float(values[key])
        if values["angle_threshold"] is not None:
            _check_number("angle_threshold", values["angle_threshold"], -1.0, 1.0, "mu of Jacob, 2024, eq 3.3, a cosine")
        _check_number("tau_scale", values["tau_scale"], 0.0, 1.0, "gamma of Ponce et al., 2022, §6.1.4")
        _settle_gradient_correction(values, given)
        _check_number("correction_scale", values["correction_scale"], 0.0, 1.0, "alpha_p of Ponce et al., 2022, §6.1.4", open_low=True)
        if values["correction_bound"] is not None:
            _check_number("correction_bound", values["correction_bound"], 0.0, float("inf"),
                          "the largest correction relative to the weights", open_low=True)
            values["correction_bound"] = float(values["correction_bound"])
        if values["momentum_scale"] is not None:
            _check_number("momentum_scale", values["momentum_scale"], 0.0, 1.0, "alpha_m of Ponce et al., 2022, eq 36")
        batches = values["tau_batches"]
        if isinstance(batches, bool) or not isinstance(batches, (int, np.integer)) or batches < 1:
            raise ValueError(
                f"`tau_batches` (m of Ponce et al., 2022, eq 35) must be an integer >= 1, got {batches!r}: "
                "each batch is split into m minibatches."
            )
        values["tau_batches"] = int(batches)
        for flag in ("fresh_batches", "correction_test", "variance_reduction"):
            if not isinstance(values[flag], bool):
                raise ValueError(f"`{flag}` must be True or False, got {values[flag]!r}.")
        if values["variance_reduction"] and values["gradient_correction"] == "none":
            raise ValueError(
                "`variance_reduction=True` (Jacob, 2024, §3.3.3) corrects each coarse step with the level's gradient at "
                "its start point, which only a gradient correction computes: choose "
                "gradient_correction='deterministic' or 'stochastic'."
            )
        if name == "rmtr":
            changed = sorted(key for key, value in values.items() if value != PRESETS["rmtr"][key])
            if changed:
                raise ValueError(
                    f"scheme='rmtr' fixes {changed}: its coarse model is first-order coherent (tau_scale 1), "
                    "the whole cycle works on one minibatch (tau_batches 1, fresh_batches False) so that each "
                    "ratio test compares values of one objective, and the ratio test replaces correction_scale, "
                    "momentum_scale and correction_test; MLSGD's constants do not apply. Leave them out."
                )
        return cls(name=name, **values)

    @property
    def trust_region(self):
        """Whether the cycle is RMTR's (Kopaničáková and Krause, 2023): trust-region level steps and ratio-tested corrections."""
        return self.name == "rmtr"

    @property
    def momentum_transfer(self):
        """Whether momentum is restricted and prolongated with the weights (Ponce et al., 2022, eq 36)."""
        return self.momentum_scale is not None

    @property
    def full_gradient(self):
        """Whether tau is formed with the full gradient over the optimizer's held data set (Jacob, 2024, §3.3.2)."""
        return self.gradient_correction == "deterministic"

    @property
    def recursion_test(self):
        """Whether a cycle tests Jacob (2024, eqs 3.4-3.5) before it descends (``eta = epsilon = 0`` always descends)."""
        return self.recursion_ratio > 0 or self.recursion_tolerance > 0

    @property
    def counts_stops(self):
        """Whether a cycle can stop a descent (recursion test) or a coarse phase (angle condition)."""
        return self.recursion_test or self.angle_threshold is not None


def _settle_gradient_correction(values, given):
    """Makes ``gradient_correction`` and ``tau_scale`` agree, or raises ``ValueError`` if the given ones do not."""
    correction = values["gradient_correction"]
    if correction not in GRADIENT_CORRECTIONS:
        raise ValueError(f"`gradient_correction` must be one of {GRADIENT_CORRECTIONS}, got {correction!r}.")
    if "tau_scale" not in given and "gradient_correction" in given:
        values["tau_scale"] = 0.0 if correction == "none" else (values["tau_scale"] or 1.0)
    elif "gradient_correction" not in given and "tau_scale" in given:
        if values["tau_scale"] == 0:
            values["gradient_correction"] = "none"
        elif correction == "none":
            values["gradient_correction"] = "stochastic"
    if (values["gradient_correction"] == "none") != (values["tau_scale"] == 0):
        raise ValueError(
            f"`gradient_correction={values['gradient_correction']!r}` contradicts `tau_scale={values['tau_scale']!r}`: "
            "'none' is tau_scale=0 and a correction needs tau_scale > 0; give one of the two."
        )


def _check_number(name, value, low, high, meaning, open_low=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value)
    if ok:
        ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"`{name}` ({meaning}) must be a number in {bracket}{low:g}, {high:g}], got {value!r}.")


@dataclasses.dataclass(frozen=True)
class MinibatchLayout:
    """Which of a cycle's minibatches each level uses (indices into the split Keras batch).

    Attributes:
        count: minibatches per cycle (the Keras batch is split into this many).
        smoothing: per level, the minibatches its smoothing steps take in turn
            (step ``t``, counting the steps down then up, uses entry ``t mod len``).
        tau: per level but the coarsest, the ``m`` minibatches of its
            tau-correction, on which the next coarser level then smooths;
            with a full-gradient correction, the index ``count``: the
            optimizer's held data set (Jacob, 2024, §3.3.2).
    """

    count: int
    smoothing: tuple
    tau: tuple

    def shared(self, index):
        """Whether level ``index``'s first smoothing minibatch is also its first tau minibatch."""
        return self.smoothing[index][0] == self.tau[index][0]


def minibatch_layout(steps, tau_batches, fresh_batches, full_gradient=False):
    """The minibatches of one V-cycle (Ponce et al., 2022, §6.1.1).

    With ``full_gradient`` (the deterministic correction of Jacob, 2024, §3.3.2) every
    tau is formed on the held data set, index ``count``, and the coarse
    levels smooth on the minibatches they would have without it.

    Without ``fresh_batches`` all levels share the same ``m`` minibatches.
    With them, the finest level smooths on one minibatch per step
    (``mu_1 + mu_2`` of them, or ``mu_0`` for a single level), each
    restriction to level ``i + 1`` draws ``m`` new ones for the tau-correction,
    and level ``i + 1`` smooths on those (Ponce et al., 2022, §6.1.1). The finest level's
    first minibatch also gives the reported loss.
    """
    levels = steps.levels
    m = tau_batches
    if not fresh_batches:
        parts = tuple(range(m))
        layout = MinibatchLayout(m, (parts,) * levels, (parts,) * (levels - 1))
    else:
        own = steps.pre[0] + steps.post[0] if levels > 1 else steps.coarsest
        tau = tuple(tuple(range(own + i * m, own + (i + 1) * m)) for i in range(levels - 1))
        finest = tuple(range(own)) if own else tau[0]
        layout = MinibatchLayout(own + m * (levels - 1), (finest, *tau), tau)
    if full_gradient:
        layout = dataclasses.replace(layout, tau=((layout.count,),) * (levels - 1))
    return layout
