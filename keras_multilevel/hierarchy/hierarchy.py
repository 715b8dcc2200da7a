"""A multilevel hierarchy: a list of levels, finest first, in the manner of PyAMG.

Convention: ``hierarchy.levels[0]`` is the finest level (the user's model) and
``hierarchy.levels[-1]`` the coarsest. Gaedke-Merzhäuser et al. (2021) number levels the other way
(``l = 1`` coarsest, ``l = L`` finest): index ``i`` here is ``l = L - i``.
Each level holds its Keras model and the :class:`Transfer` to the next
coarser level, so one cycle routine can walk the list.
"""

import numpy as np
import tensorflow as tf

# Importing the library's coarsenings registers them in COARSENINGS.
from keras_multilevel.hierarchy import depth, pyramid, resolution, width  # noqa: F401
from keras_multilevel.hierarchy.coarsening import COARSENINGS
INTERPOLATED = ("depth", "resolution")


def get_coarsening(coarsening="depth", interpolation="constant"):
    """Returns a coarsening strategy.

    Args:
        coarsening: ``"depth"``, ``"width"``, ``"resolution"`` or
            ``"pyramid"`` (default settings), a dict ``{"name": ..., **settings}`` as ``get_config``
            writes it, or a strategy object (returned as is).
        interpolation: the prolongation of ``"depth"`` (in time) or
            ``"resolution"`` (of images), when ``coarsening`` is one of these strings.
    """
    if isinstance(coarsening, dict):
        settings = dict(coarsening)
        name = settings.pop("name", None)
    elif isinstance(coarsening, str):
        name, settings = coarsening, ({"interpolation": interpolation} if coarsening in INTERPOLATED else {})
    else:
        return coarsening
    if name not in COARSENINGS:
        raise ValueError(f"Unknown coarsening {name!r}: choose one of {sorted(COARSENINGS)}.")
    if name not in INTERPOLATED and interpolation != "constant" and isinstance(coarsening, str):
        raise ValueError(
            f"`interpolation` ({interpolation!r}) is the prolongation of depth or resolution "
            f"coarsening; {name!r} coarsening has none. Leave it out."
        )
    return COARSENINGS[name](**settings)


def check_levels(levels):
    """Raises ``ValueError`` unless ``levels`` is a positive integer."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"`levels` must be an integer >= 1, got {levels!r}.")
    return int(levels)


def restrict_level(fine, coarse):
    """Sets ``coarse``'s weights to ``Pi`` of ``fine``'s (its transfer's ``restrict``); returns them."""
    values = fine.transfer.restrict(fine.variables)
    for variable, value in zip(coarse.variables, values):
        variable.assign(value)
    return values


def prolongated_correction(transfer, coarse_values, start, scale=1.0):
    """``alpha_p P (x_c - Pi x)``: the coarse level's change since ``start`` (``Pi x``) on the fine level,
    prolonged by the fine level's ``transfer`` (Ponce et al. 2022, eq 4; ``scale`` is alpha_p, 1 in MG/OPT
    and RMTR). ``coarse_values`` may be the coarse weights or any state shaped like them (the momentum of eq 36)."""
    correction = transfer.prolong([value - begin for value, begin in zip(coarse_values, start)])
    return correction if scale == 1.0 else [scale * value for value in correction]


class Level:
    """One level: a Keras model, its cost, the transfer to the next coarser level, and its training state.

    Attributes:
        model: the level's network (``levels[0].model`` is the user's model).
        relative_cost: cost of one gradient here per fine gradient (Gaedke-Merzhäuser et al., 2021, eq 10;
            Ponce et al., 2022, §8).
        transfer: :class:`Transfer` to the next coarser level, ``None`` on the
            coarsest.
        smoother: the level optimizer that steps this level (Gaedke-Merzhäuser et al., 2021, Algorithm 2),
            set by the :class:`~keras_multilevel.optimizers.MultilevelSolver`
            that trains the hierarchy (``None`` before).
        inner_product: the weights of the level's inner product, one per
            variable (:mod:`~keras_multilevel.optimizers.inner_product`), set
            with the smoother.
        regularization: the Tikhonov weights of its variables, set with the
            smoother.
    """

    def __init__(self, model, relative_cost, transfer=None):
        self.model = model
        self.relative_cost = relative_cost
        self.transfer = transfer
        self.smoother = self.inner_product = self.regularization = None

    @property
    def variables(self):
        """The level's trainable variables, the parameters the cycle moves."""
        return self.model.trainable_variables

    @property
    def parameters(self):
        """Number of trainable scalars on this level."""
        return int(sum(np.prod(v.shape) for v in self.variables))

    def __repr__(self):
        return f"Level(model={self.model.name!r}, parameters={self.parameters})"


class Hierarchy:
    """A list of :class:`Level`, finest first, built by one coarsening.

    Build one with :meth:`from_model`; ``print(hierarchy)`` shows a table of
    levels, sizes, parameters and relative cost, and the operator complexity
    (the sum of parameters over levels per fine parameter, PyAMG's measure).
    """

    def __init__(self, levels, coarsening):
        self.levels = list(levels)
        self.coarsening = coarsening

    @classmethod
    def from_model(cls, model, levels, coarsening="depth", interpolation="constant"):
        """Coarsens ``model`` into ``levels`` levels.

        Args:
            model: a built Sequential or functional Keras model with at least
                one coarsenable layer (any built model when ``levels == 1``).
            levels: number of levels ``L >= 1`` (1 = the model alone).
            coarsening: ``"depth"`` (Gaedke-Merzhäuser et al., 2021, §2.2.1), ``"width"`` (Ponce et al., 2022, §5),
                ``"resolution"`` (Haber et al., 2018, §3), ``"pyramid"`` (a pyramid U-Net
                without its finest grid, :mod:`~keras_multilevel.hierarchy.pyramid`)
                or a coarsening object (see :func:`get_coarsening`).
            interpolation: ``"constant"`` or ``"linear"``: in time for depth
                coarsening (Gaedke-Merzhäuser et al., 2021; Jacob, 2024, §4.2), of images for resolution (Haber et al., 2018).

        The coarse models start from the restriction of the fine weights.
        """
        levels = check_levels(levels)
        strategy = get_coarsening(coarsening, interpolation)
        if levels > 1:
            strategy.check(model, levels)
        if not model.built or not model.trainable_variables:
            raise ValueError(
                f"Model {model.name!r} must be built before it is coarsened: give it a "
                "keras.Input or call it once on data."
            )
        chain = [Level(model, 1.0)]
        for _ in range(1, levels):
            coarse, chain[-1].transfer = strategy.coarsen(chain[-1].model)
            chain.append(Level(coarse, strategy.relative_cost(coarse, model)))
            restrict_level(*chain[-2:])  # the next coarsening reads these weights
        return cls(chain, strategy)

    def restrict_weights(self):
        """Sets every coarse level's weights to the restriction ``Pi`` of the finer one."""
        for fine, coarse in zip(self.levels, self.levels[1:]):
            restrict_level(fine, coarse)

    @property
    def rematch_every(self):
        """Cycles between two re-matchings of the transfers (Ponce et al., 2022, §6.1.3); ``None``: never."""
        return self.coarsening.rematch_every

    def rematch(self):
        """Rebuilds each transfer from the current weights, finest first (Ponce et al., 2022, §6.1.3).

        Every coarse level is set to the restriction of the level above it
        before that level is matched in turn. Graph-safe: the optimizer runs
        it inside its compiled train step every ``rematch_every`` cycles.
        Returns ``True`` (a tensor, for ``tf.cond``).
        """
        for fine, coarse in zip(self.levels, self.levels[1:]):
            fine.transfer.rematch(fine.variables)
            restrict_level(fine, coarse)
        return tf.constant(True)

    def __len__(self):
        return len(self.levels)

    def __getitem__(self, index):
        return self.levels[index]

    def __iter__(self):
        return iter(self.levels)

    @property
    def operator_complexity(self):
        """Sum of parameters over all levels per fine-level parameter."""
        return sum(level.parameters for level in self.levels) / self.levels[0].parameters

    def __repr__(self):
        strategy = self.coarsening
        label = strategy.size_label
        lines = [
            "MultilevelHierarchy",
            f"  coarsening:          {strategy.describe()}",
            f"  number of levels:    {len(self)}",
            f"  operator complexity: {self.operator_complexity:.3f}",
            "",
        ]
        sizes = [str(strategy.size(level.model)) for level in self.levels]
        column = max(len(label), *map(len, sizes))
        lines += [
            f"  level  {label:>{column}}  {'parameters':>12}  {'relative cost':>13}",
            "  " + "-" * (33 + column),
        ]
        for index, (level, size) in enumerate(zip(self.levels, sizes)):
            lines.append(
                f"  {index:>5}  {size:>{column}}  {level.parameters:>12,}  {level.relative_cost:>13.4f}"
            )
        lines.append("  (level 0 is the finest)")
        return "\n".join(lines)
