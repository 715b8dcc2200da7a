"""The protocol of a coarsening: how a model is made coarser, and what the hierarchy asks of it.

A coarsening builds, from one level's model, the next coarser model and the
:class:`~keras_multilevel.hierarchy.transfer.Transfer` between them
(:meth:`Coarsening.coarsen`); the :class:`~keras_multilevel.hierarchy.Hierarchy`
calls it level after level and asks it the few facts below. The library's
coarsenings are in depth (fewer residual blocks, Gaedke-Merzhäuser et al.,
2021, §2.2.1), width (fewer neurons or channels, Ponce et al., 2022, §5),
resolution (coarser input images, Haber et al. (2018)) and the pyramid of a
U-Net's grids.

A new coarsening is one new module with one subclass of :class:`Coarsening`
that sets :attr:`~Coarsening.name` and implements :meth:`~Coarsening.check`,
:meth:`~Coarsening.coarsen`, :meth:`~Coarsening.relative_cost` and
:meth:`~Coarsening.size`. Give an instance as ``MultilevelOptimizer(coarsening=...)``;
once its module is imported, its name works too (``coarsening="<name>"``, and
``.keras`` files that name it load), since subclasses with a name register
themselves in :data:`COARSENINGS`.
"""

COARSENINGS = {}
"""Every coarsening class with a ``name``, by name: what ``coarsening="<name>"`` and saved configs look up."""


class Coarsening:
    """Base class of coarsenings: the methods :class:`~keras_multilevel.hierarchy.Hierarchy` calls.

    Attributes:
        name: the name ``coarsening="<name>"`` selects and ``get_config`` saves.
        size_label: the heading of the sizes column of the hierarchy's table.
        rematch_every: ``None``, or every how many cycles the transfers are
            rebuilt from the current weights (width's matching, Ponce et al.,
            2022, §6.1.3); then the transfer implements ``rematch``.
    """

    name = None
    size_label = "size"
    rematch_every = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            COARSENINGS[cls.name] = cls

    def check(self, model, levels):
        """Raises ``ValueError``, saying what to change, unless ``model`` can be coarsened ``levels - 1`` times."""
        raise NotImplementedError(f"{type(self).__name__} must implement check(model, levels).")

    def coarsen(self, model):
        """Returns ``(coarse_model, transfer)``: the next coarser model, built (its weights are set by the
        transfer's ``restrict``), and the :class:`~keras_multilevel.hierarchy.transfer.Transfer` from
        ``model`` to it."""
        raise NotImplementedError(f"{type(self).__name__} must implement coarsen(model).")

    def refine(self, model):
        """Returns ``(fine_model, transfer)``: the next finer model, built (its weights are set by the
        transfer's ``prolong_iterate``), and the :class:`~keras_multilevel.hierarchy.transfer.Transfer`
        from it to ``model``; the inverse of :meth:`coarsen`, which
        :func:`~keras_multilevel.hierarchy.at_resolution` uses to move a network to a finer grid."""
        raise NotImplementedError(f"{type(self).__name__} cannot build a finer model than the one it is given.")

    def relative_cost(self, model, finest):
        """The cost of a gradient of ``model`` per gradient of ``finest`` (a work unit's fraction,
        Gaedke-Merzhäuser et al., 2021, eq 10)."""
        raise NotImplementedError(f"{type(self).__name__} must implement relative_cost(model, finest).")

    def size(self, model):
        """What the hierarchy's table shows of a level's size (blocks, widths, resolution...)."""
        raise NotImplementedError(f"{type(self).__name__} must implement size(model).")

    def trace_key(self, model):
        """Levels with equal, non-``None`` keys evaluate their losses with one traced function
        (:mod:`~keras_multilevel.optimizers.traces`); ``None``: the level is traced on its own."""
        return None

    def shared_transfer(self, hierarchy):
        """One transfer that maps every level of ``hierarchy`` to the next coarser one whatever its sizes,
        or ``None`` (the levels' own transfers differ). With it a V-cycle can run as one loop over its
        levels (:mod:`~keras_multilevel.optimizers.cycle_loop`)."""
        return None

    def describe(self):
        """One line for the hierarchy's table."""
        return self.name

    def get_config(self):
        """The settings that rebuild this coarsening: ``type(self)(**get_config())``."""
        return {}
