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
  level trains on the same ``m`` minibatches (002 eq 35, §6.1.1). Each Keras
  batch is split into ``m`` minibatches, so ``batch_size = m x`` the paper's
  minibatch size; ``m = 1`` is 000's one batch for the whole cycle.
* ``correction_scale`` ``alpha_p``: ``x <- x + alpha_p P (x_c - Pi x)`` (002 eq 4, §6.1.4).
* ``momentum_scale`` ``alpha_m``: the level optimizer's momentum is restricted
  with the weights (``m_c = Pi m``) and corrected on the way up,
  ``m <- m + alpha_m P (m_c - Pi m)`` (002 eq 36, §6.1.2). ``None`` lets every
  level keep its own optimizer state from cycle to cycle, as in 000.

Presets: ``"mgopt"`` (000 Algorithm 1: gamma 1, m 1, alpha_p 1, no momentum
transfer) and ``"fas"`` (002 Algorithm 2: gamma 1, m 2, alpha_p 1, alpha_m 1).
The stability settings of 002 §8.3 are ``tau_scale=0.125``,
``momentum_scale=0.2`` with ``learning_rate_divisor`` ``2 sqrt 2`` (an
optimizer argument).
"""

import dataclasses

import numpy as np

PRESETS = {
    "mgopt": {"tau_scale": 1.0, "tau_batches": 1, "correction_scale": 1.0, "momentum_scale": None},
    "fas": {"tau_scale": 1.0, "tau_batches": 2, "correction_scale": 1.0, "momentum_scale": 1.0},
}


@dataclasses.dataclass(frozen=True)
class CycleScheme:
    """The constants of a V-cycle's coarse-level coupling and correction (see the module docstring)."""

    name: str
    tau_scale: float
    tau_batches: int
    correction_scale: float
    momentum_scale: float | None

    @classmethod
    def create(cls, name="mgopt", **overrides):
        """The preset ``name`` with any constant given (not ``None``) in ``overrides`` replaced.

        Raises ``ValueError`` for an unknown preset or a constant out of range:
        ``tau_scale`` in ``[0, 1]``, ``tau_batches`` an integer ``>= 1``,
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
        return cls(name=name, **values)

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
