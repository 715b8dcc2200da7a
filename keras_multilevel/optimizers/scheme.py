"""The cycle's scheme: how a coarse level is coupled to the finer one and corrects it.

One V-cycle routine (:mod:`keras_multilevel.optimizers.cycle`) serves the
schemes of the papers; they differ only in these constants:

* ``tau_scale`` ``gamma``: the coarse objective is
  ``g_c(x_c) - gamma x_c^T tau`` with the tau-correction
  ``tau = grad g_c(Pi x) - R grad g(x)`` (002 eq 3 and §6.1.4). With
  ``gamma = 1`` the coarse gradient at ``Pi x`` equals ``R grad g(x)``: first
  order coherence, which is MG/OPT's coupling term of 000 eq 9
  (``delta g = -tau``). ``gamma = 0`` drops it: MLSGD without gradient
  correction (001 §3).
* ``tau_batches`` ``m``: tau is averaged over ``m`` minibatches, and the coarse
  level trains on the same ``m`` minibatches (002 eq 35, §6.1.1).
* ``fresh_batches``: whether every smoothing step of the finest level and
  every restriction draws minibatches of its own (002 §6.1.1: "we draw the
  next m minibatches ... a new set of m minibatches are drawn when
  restricting to the next-coarser level"), or the whole cycle works on the
  same ``m`` minibatches (000 Algorithm 3 with ``m = 1``). Either way the
  minibatches of one cycle come from one Keras batch, split by
  :func:`minibatch_layout`: ``batch_size`` is the paper's minibatch size
  times ``MultilevelOptimizer.minibatches``.
* ``correction_scale`` ``alpha_p``: ``x <- x + alpha_p P (x_c - Pi x)`` (002 eq 4, §6.1.4).
* ``momentum_scale`` ``alpha_m``: the level optimizer's momentum is restricted
  with the weights (``m_c = Pi m``) and corrected on the way up,
  ``m <- m + alpha_m P (m_c - Pi m)`` (002 eq 36, §6.1.2). ``None`` lets every
  level keep its own optimizer state from cycle to cycle, as in 000.
* ``correction_test``: accept a prolongated correction only if it does not
  raise the level's objective (the cycle's safeguard; a correction that is not
  finite is always discarded).

Presets: ``"mgopt"`` (000 Algorithm 1: gamma 1, m 1, one batch for the whole
cycle, alpha_p 1, no momentum transfer), ``"fas"`` (002 Algorithm 2:
gamma 1, m 2, fresh minibatches, alpha_p 1, alpha_m 1) and ``"rmtr"`` (003:
the recursive trust region of :mod:`~keras_multilevel.optimizers.trust_region`,
whose level steps are L-SR1 trust-region steps and whose corrections pass a
ratio test; its constants are fixed: gamma 1 (the first-order coherent coarse
model), one minibatch for the whole cycle (every ratio test compares values of
one objective), alpha_p 1 and no momentum).
The stability settings of 002 §8.3 are ``tau_scale=0.125``,
``momentum_scale=0.2`` with ``learning_rate_divisor`` ``2 sqrt 2`` (an
optimizer argument).
"""

import dataclasses

import numpy as np

PRESETS = {
    "mgopt": {"tau_scale": 1.0, "tau_batches": 1, "fresh_batches": False, "correction_scale": 1.0,
              "momentum_scale": None, "correction_test": False},
    "fas": {"tau_scale": 1.0, "tau_batches": 2, "fresh_batches": True, "correction_scale": 1.0,
            "momentum_scale": 1.0, "correction_test": False},
    "rmtr": {"tau_scale": 1.0, "tau_batches": 1, "fresh_batches": False, "correction_scale": 1.0,
             "momentum_scale": None, "correction_test": False},
}


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

    @classmethod
    def create(cls, name="mgopt", **overrides):
        """The preset ``name`` with any constant given (not ``None``) in ``overrides`` replaced.

        Raises ``ValueError`` for an unknown preset or a constant out of range:
        ``tau_scale`` in ``[0, 1]``, ``tau_batches`` an integer ``>= 1``,
        ``fresh_batches`` and ``correction_test`` bools,
        ``correction_scale`` in ``(0, 1]``, ``momentum_scale`` in ``[0, 1]``.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown scheme {name!r}: choose one of {sorted(PRESETS)}.")
        values = dict(PRESETS[name])
        values.update({key: value for key, value in overrides.items() if value is not None})
        _check_number("tau_scale", values["tau_scale"], 0.0, 1.0, "gamma of 002 §6.1.4")
        _check_number("correction_scale", values["correction_scale"], 0.0, 1.0, "alpha_p of 002 §6.1.4", open_low=True)
        if values["momentum_scale"] is not None:
            _check_number("momentum_scale", values["momentum_scale"], 0.0, 1.0, "alpha_m of 002 eq 36")
        batches = values["tau_batches"]
        if isinstance(batches, bool) or not isinstance(batches, (int, np.integer)) or batches < 1:
            raise ValueError(
                f"`tau_batches` (m of 002 eq 35) must be an integer >= 1, got {batches!r}: "
                "each batch is split into m minibatches."
            )
        values["tau_batches"] = int(batches)
        for flag in ("fresh_batches", "correction_test"):
            if not isinstance(values[flag], bool):
                raise ValueError(f"`{flag}` must be True or False, got {values[flag]!r}.")
        if name == "rmtr":
            changed = sorted(key for key, value in values.items() if value != PRESETS["rmtr"][key])
            if changed:
                raise ValueError(
                    f"scheme='rmtr' fixes {changed}: its coarse model is first-order coherent (tau_scale 1), "
                    "the whole cycle works on one minibatch (tau_batches 1, fresh_batches False) so that each "
                    "ratio test compares values of one objective, and the ratio test replaces correction_scale, "
                    "momentum_scale and correction_test. Leave them out."
                )
        return cls(name=name, **values)

    @property
    def trust_region(self):
        """Whether the cycle is RMTR's (003): trust-region level steps and ratio-tested corrections."""
        return self.name == "rmtr"

    @property
    def momentum_transfer(self):
        """Whether momentum is restricted and prolongated with the weights (002 eq 36)."""
        return self.momentum_scale is not None


def _check_number(name, value, low, high, meaning, open_low=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer))
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
            tau-correction, on which the next coarser level then smooths.
    """

    count: int
    smoothing: tuple
    tau: tuple

    def shared(self, index):
        """Whether level ``index``'s first smoothing minibatch is also its first tau minibatch."""
        return self.smoothing[index][0] == self.tau[index][0]


def minibatch_layout(steps, tau_batches, fresh_batches):
    """The minibatches of one V-cycle (002 §6.1.1).

    Without ``fresh_batches`` all levels share the same ``m`` minibatches.
    With them, the finest level smooths on one minibatch per step
    (``mu_1 + mu_2`` of them, or ``mu_0`` for a single level), each
    restriction to level ``i + 1`` draws ``m`` new ones for the tau-correction,
    and level ``i + 1`` smooths on those (002 §6.1.1). The finest level's
    first minibatch also gives the reported loss.
    """
    levels = steps.levels
    m = tau_batches
    if not fresh_batches:
        parts = tuple(range(m))
        return MinibatchLayout(m, (parts,) * levels, (parts,) * (levels - 1))
    own = steps.pre[0] + steps.post[0] if levels > 1 else steps.coarsest
    tau = tuple(tuple(range(own + i * m, own + (i + 1) * m)) for i in range(levels - 1))
    finest = tuple(range(own)) if own else tau[0]
    return MinibatchLayout(own + m * (levels - 1), (finest, *tau), tau)
