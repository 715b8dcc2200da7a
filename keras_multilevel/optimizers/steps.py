"""Level-optimizer steps per level, in the list notation of Gaedke-Merzhäuser et al. (2021, §4).

``[(1), 1, 1, 2, 2, {2}]`` lists the steps from the finest level to the
coarsest: a plain ``n`` means ``n`` steps on the way down and ``n`` on the way
up (``mu_1 = mu_2``); ``(n)`` means ``n`` steps down and none up
(``mu_2 = 0``); ``{n}`` is the number of steps ``mu_0`` on the coarsest level
and ends the list. This module also reads ``d/u`` for ``mu_1 = d`` steps down
and ``mu_2 = u`` up, which the paper's notation cannot say.
"""

import re
from dataclasses import dataclass

from keras_multilevel.optimizers.scheme import minibatch_layout

_ENTRY = re.compile(r"^(\d+)$|^\((\d+)\)$|^\{(\d+)\}$|^(\d+)/(\d+)$")


@dataclass(frozen=True)
class CycleSteps:
    """Steps of the level optimizer on each level of a V-cycle.

    Attributes:
        pre: ``mu_1`` for each level but the coarsest, finest first.
        post: ``mu_2`` for each level but the coarsest, finest first.
        coarsest: ``mu_0``, the steps on the coarsest level (at least 1).
    """

    pre: tuple
    post: tuple
    coarsest: int

    @property
    def levels(self):
        return len(self.pre) + 1

    @classmethod
    def default(cls, levels):
        """The set-up of Gaedke-Merzhäuser et al. (2021, §4.1): one step on levels ``l > L/2``, two on the
        others, and no upward step on the finest level (``[(1),1,1,2,2,{2}]``
        for ``L = 6``, ``[{1}]`` for one level)."""
        if levels == 1:
            return cls((), (), 1)
        counts = [1 if (levels - index) > levels / 2 else 2 for index in range(levels)]
        pre = tuple(counts[:-1])
        post = (0, *counts[1:-1])
        return cls(pre, post, counts[-1])

    @classmethod
    def parse(cls, spec, levels):
        """Reads ``spec`` for a hierarchy of ``levels`` levels.

        Args:
            spec: ``None`` (the paper's default), a string in the paper's
                notation such as ``"[(1),1,2,{2}]"``, or a sequence with one
                entry per level: an int ``n`` (``mu_1 = mu_2 = n``) or a pair
                ``(mu_1, mu_2)`` for each level but the last, and an int
                ``mu_0`` for the coarsest.
            levels: the number of levels the list must describe.
        """
        if spec is None:
            return cls.default(levels)
        if isinstance(spec, CycleSteps):
            entries = [*zip(spec.pre, spec.post), spec.coarsest]
        elif isinstance(spec, str):
            entries = cls._parse_string(spec)
        else:
            try:
                entries = list(spec)
            except TypeError:
                raise ValueError(
                    f"`steps` must be None, a string like '[(1),1,2,{{2}}]' or a list, got {spec!r}."
                ) from None
        if len(entries) != levels:
            raise ValueError(
                f"`steps` {spec!r} describes {len(entries)} levels but the optimizer has "
                f"levels={levels}: give one entry per level, finest first, the coarsest last."
            )
        pre, post = [], []
        for entry in entries[:-1]:
            down, up = (entry, entry) if _is_count(entry) else _pair(entry, spec)
            pre.append(_count(down, spec, minimum=0))
            post.append(_count(up, spec, minimum=0))
        coarsest = entries[-1]
        if not _is_count(coarsest):
            raise ValueError(
                f"The last entry of `steps` {spec!r} is the number of steps on the coarsest "
                f"level and must be an integer >= 1, got {coarsest!r}."
            )
        return cls(tuple(pre), tuple(post), _count(coarsest, spec, minimum=1))

    @staticmethod
    def _parse_string(text):
        body = text.strip()
        if not (body.startswith("[") and body.endswith("]")):
            raise ValueError(f"`steps` {text!r} must be a bracketed list such as '[(1),1,2,{{2}}]'.")
        items = [item.strip() for item in body[1:-1].split(",")]
        entries = []
        for position, item in enumerate(items):
            match = _ENTRY.match(item)
            if not match:
                raise ValueError(
                    f"Cannot read entry {item!r} of `steps` {text!r}: write n, (n), d/u or {{n}}."
                )
            plain, down_only, coarsest, down, up = match.groups()
            is_last = position == len(items) - 1
            if (coarsest is not None) != is_last:
                raise ValueError(
                    f"`steps` {text!r}: exactly the last entry is the coarsest level, "
                    "written in curly brackets {n}."
                )
            if coarsest is not None:
                entries.append(int(coarsest))
            elif down_only is not None:
                entries.append((int(down_only), 0))
            elif down is not None:
                entries.append((int(down), int(up)))
            else:
                entries.append((int(plain), int(plain)))
        return entries

    def __str__(self):
        items = [f"({down})" if up == 0 else (str(down) if down == up else f"{down}/{up}")
                 for down, up in zip(self.pre, self.post)]
        return "[" + ",".join([*items, f"{{{self.coarsest}}}"]) + "]"


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(entry, spec):
    try:
        down, up = entry
    except (TypeError, ValueError):
        raise ValueError(
            f"Entry {entry!r} of `steps` {spec!r} must be an int or a pair (steps down, steps up)."
        ) from None
    return down, up


def _count(value, spec, minimum):
    if not _is_count(value) or value < minimum:
        raise ValueError(f"`steps` {spec!r}: step counts must be integers >= {minimum}, got {value!r}.")
    return value


FORWARD_COST = 1.0 / 3.0
"""Cost of a loss evaluation (a forward pass) per gradient: a backward pass costs about two forwards."""


def work_units(steps, relative_costs, layout=None, coupled=True, tested=False, restricted=False,
               variance_reduction=False, trust_region=False):
    """Cost of one V-cycle in fine gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10; Ponce et al., 2022, §8).

    Counts exactly the gradients that :func:`~keras_multilevel.optimizers.cycle.v_cycle`
    evaluates, each weighted by its level's relative cost ``c_i``. The cycle
    starts with one gradient on the finest level (it gives the reported loss
    and serves the first step); every coarse level receives one gradient from
    its parent (one of the parent's tau gradients), which serves its first
    step. A level ``i`` above the coarsest then takes ``mu_1 + mu_2`` steps and,
    for the tau-correction, evaluates its own gradient and the coarse one on
    each of its ``m`` tau minibatches; when the first of them is the
    minibatch of the received gradient and no step came before (``mu_1 = 0``),
    that gradient is reused:

        ``U_c = c_0 + sum_{i < L} ((mu_1 + mu_2 - [mu_1 > 0] + m - [mu_1 = 0, shared]) c_i + m c_{i+1}) + (mu_0 - 1) c_L``.

    With one shared minibatch (``m = 1``) this is Gaedke-Merzhäuser et al. (2021, eq 10),
    ``mu_0 c_L + sum (mu_1 + mu_2 + 1) c_i``. Without coupling
    (``coupled=False``, ``gamma = 0``) no fine gradient is needed for tau and
    one coarse gradient serves the coarse first step:
    ``(mu_1 + mu_2 - [mu_1 > 0]) c_i + c_{i+1}`` per level.

    Ponce et al.'s (2022, §8) own example (2 levels, 2 steps everywhere, ``m = 2``, ``c = 1, 1/4``)
    counts 7 work units; this cycle evaluates 6.75, because the coarse
    gradient at ``Pi x`` on the first tau minibatch also serves the first
    coarse step. (Ponce et al.'s (2022, eq 40) closed form ``6s - 10s/4^(k-1)`` does not match
    its own sums or that example, so this count follows the cycle.)

    Args:
        steps: the :class:`CycleSteps`.
        relative_costs: ``c_i`` per level, finest first.
        layout: the cycle's :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`;
            ``None`` is one minibatch shared by the whole cycle.
        coupled: whether the tau-correction is used (``gamma > 0``).
        tested: whether each coarse correction passes the acceptance test,
            two loss evaluations of the level above it, each :data:`FORWARD_COST`.
        restricted: whether the fine gradient on the tau minibatches is
            evaluated without coupling too (MLSGD's recursion test or angle
            condition, Jacob, 2024, eqs 3.3-3.5, need it): ``m - [reused]`` more ``c_i``.
        variance_reduction: whether each coarse-level step but the first
            takes SVRG's two gradients (Jacob, 2024, §3.3.3).
        trust_region: RMTR's cycle (Kopaničáková and Krause, 2023,
            :mod:`~keras_multilevel.optimizers.trust_region`): every step and
            every recursive step evaluates value and gradient at its trial
            point, and one coarse gradient at ``Pi x`` serves tau and the
            coarse level's first step:
            ``U_c = c_0 + sum_{i < L} ((mu_1 + mu_2 + 1) c_i + c_{i+1}) + mu_0 c_L``.

    This is the cost of a cycle that descends to the coarsest level and takes
    every step, on minibatches: a cycle whose recursion test or angle
    condition stops early spends less, and a gradient on a full-gradient
    correction's held data set counts its rows per minibatch row (see
    :class:`~keras_multilevel.optimizers.cycle.CycleReport`, which counts what
    a cycle spent).
    """
    if len(relative_costs) != steps.levels:
        raise ValueError(f"Need {steps.levels} relative costs, got {len(relative_costs)}.")
    if trust_region:
        total = relative_costs[0] + steps.coarsest * relative_costs[-1]
        for index, (down, up) in enumerate(zip(steps.pre, steps.post)):
            total += (down + up + 1) * relative_costs[index] + relative_costs[index + 1]
        return total
    layout = layout or minibatch_layout(steps, 1, fresh_batches=False)

    def per_step(index):
        return 2 if variance_reduction and index > 0 else 1

    total = relative_costs[0] + (steps.coarsest - 1) * per_step(steps.levels - 1) * relative_costs[-1]
    for index, (down, up) in enumerate(zip(steps.pre, steps.post)):
        cost, coarse_cost = relative_costs[index], relative_costs[index + 1]
        smoothing = down + up - (down > 0)
        m = len(layout.tau[index])
        reused = down == 0 and layout.shared(index)
        fine = m - reused if coupled or restricted else 0
        total += (smoothing * per_step(index) + fine) * cost + (m if coupled else 1) * coarse_cost
        if tested:
            total += 2 * FORWARD_COST * cost
    return total
