"""The transfer between two adjacent levels: three linear maps on parameters.

Between a fine level and the next coarser one a multilevel method (MG/OPT,
Gaedke-Merzhäuser et al., 2021, §3; FAS, Ponce et al., 2022, §3, §5.1-5.3)
needs

* ``restrict`` (``Pi``): a fine iterate -> a coarse iterate, with ``Pi P = I``;
* ``prolong`` (``P``): a coarse correction -> a fine correction;
* ``restrict_gradient`` (``R``): a fine gradient -> a coarse gradient.

The fourth piece, the coarse model itself, lives on the coarser
:class:`~keras_multilevel.hierarchy.Level`. Each map takes and returns a list
of tensors, one per trainable variable of the level it maps to, in the order
of ``model.trainable_variables``. Every coarsening
(:class:`~keras_multilevel.hierarchy.coarsening.Coarsening`) builds one, so
one cycle drives them all.
"""


def check_correspondence(fine_model, coarse_model):
    """Raises ``RuntimeError`` unless the two models' trainable variables pair up in order.

    A coarse clone has the same layers in the same order; variables are
    compared by their layer and own name (the last two parts of their path:
    the model's name scope may differ between a model and its clone).
    """
    for fine, coarse in zip(fine_model.trainable_variables, coarse_model.trainable_variables, strict=True):
        if fine.path.split("/")[-2:] != coarse.path.split("/")[-2:]:
            raise RuntimeError(f"Fine variable {fine.path} and coarse variable {coarse.path} do not correspond.")


class Identity:
    """A parameter that is the same on both levels (opening map, head, ...)."""

    def prolong(self, coarse):
        return coarse

    def restrict(self, fine):
        return fine

    def restrict_gradient(self, fine):
        return fine

    def __repr__(self):
        return "Identity()"


class TransferMaps:
    """The interface every transfer implements: ``restrict``, ``prolong``, ``restrict_gradient``.

    Subclasses set ``count`` (the number of trainable variables of the fine
    level; ``coarse_count`` of the coarse one, if it differs) and implement
    ``_map(direction, tensors)`` for the three directions.
    """

    count = 0
    state_variables = ()
    """Variables that define the operators, saved with the optimizer (none unless a subclass says)."""

    @property
    def coarse_count(self):
        """The number of trainable variables of the coarse level (``count`` unless a subclass says)."""
        return self.count

    def _apply(self, direction, tensors):
        expected = self.coarse_count if direction == "prolong" else self.count
        if len(tensors) != expected:
            raise ValueError(f"Expected {expected} tensors (one per trainable variable), got {len(tensors)}.")
        return self._map(direction, tensors)

    def restrict(self, fine):
        """``Pi``: restricts a fine iterate to the coarse level (``Pi P = I``)."""
        return self._apply("restrict", fine)

    def prolong(self, coarse):
        """``P``: prolongates a coarse correction to the fine level."""
        return self._apply("prolong", coarse)

    def restrict_gradient(self, fine):
        """``R = P^T``: restricts a fine gradient to the coarse level."""
        return self._apply("restrict_gradient", fine)

    def prolong_iterate(self, coarse, fine):
        """The fine iterate that continues from the coarse iterate ``coarse`` (Haber et al., 2018, Algorithm 1 line 5).

        ``P coarse``, unless the fine level has variables of its own that the
        coarse one lacks (:class:`~keras_multilevel.hierarchy.pyramid.PyramidTransfer`),
        which then come from ``fine``, the current fine iterate.
        """
        del fine  # every fine variable follows from a coarse one
        return self.prolong(coarse)

    def restrict_data(self, data):
        """The batch ``(x, y, sample_weight)`` the coarse level trains on: the fine one, unless the
        coarsening changes the inputs (resolution)."""
        return data

    def prolong_data(self, data):
        """The inverse of :meth:`restrict_data` for outputs (a coarse prediction on the fine grid)."""
        return data


class Transfer(TransferMaps):
    """Variable-wise transfer operators between a fine and a coarse level.

    Args:
        operators: one operator per trainable variable (the ``i``-th fine
            variable maps to the ``i``-th coarse one); each has ``prolong``,
            ``restrict`` and ``restrict_gradient``.
    """

    def __init__(self, operators):
        self.operators = list(operators)
        self.count = len(self.operators)

    def _map(self, direction, tensors):
        return [getattr(op, direction)(t) for op, t in zip(self.operators, tensors)]

    def __repr__(self):
        return f"Transfer({self.operators!r})"
